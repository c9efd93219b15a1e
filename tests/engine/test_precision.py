"""Mixed precision, the channels-last layout and torch.compile, one tiny epoch each."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from helpers import (
    tiny_config,
    tiny_detection_config,
    tiny_multilabel_config,
    tiny_segmentation_config,
)
from mediscope import api
from mediscope.engine.training import _compile_failed, _is_compile_error
from mediscope.errors import ConfigError
from mediscope.tasks.validate import config_from_dict

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def task_config(task: str, data: dict[str, Path], runs: Path, **trainer: Any) -> dict[str, Any]:
    trainer = {"max_epochs": 1, "test_after_fit": False, **trainer}
    if task == "classification":
        return tiny_config(data["crops"], runs, trainer=trainer)
    if task == "segmentation":
        return tiny_segmentation_config(data["lesions"], runs, trainer=trainer)
    if task == "multilabel":
        return tiny_multilabel_config(runs, trainer=trainer)
    return tiny_detection_config(data["smears"], runs, trainer=trainer)


@pytest.fixture
def datasets(tiny_crops: Path, tiny_lesions: Path, tiny_smears: Path) -> dict[str, Path]:
    return {"crops": tiny_crops, "lesions": tiny_lesions, "smears": tiny_smears}


class Seen(L.Callback):
    """What the first training batch ran with: autocast dtype, image layout."""

    def __init__(self) -> None:
        self.autocast: torch.dtype | None = None
        self.channels_last: bool | None = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx:
            return
        images = batch[0]
        self.channels_last = images.is_contiguous(memory_format=torch.channels_last)

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        if self.autocast is None:
            with trainer.precision_plugin.forward_context():
                probe = torch.ones(2, 2) @ torch.ones(2, 2)
            self.autocast = probe.dtype


def finite(result: api.FitResult) -> bool:
    """The run was evaluated, and its monitored score (its best.ckpt's) is a number."""
    score = result.best_score
    return bool(result.val_metrics) and score is not None and math.isfinite(score)


def fit_one(config: dict[str, Any], *callbacks: L.Callback) -> api.FitResult:
    return api.fit(config_from_dict(config), callbacks=list(callbacks))


@pytest.mark.parametrize("task", ["classification", "segmentation", "detection", "multilabel"])
def test_bf16_mixed_on_cpu_trains_each_task(
    task: str, datasets: dict[str, Path], tmp_path: Path
) -> None:
    seen = Seen()
    config = task_config(task, datasets, tmp_path, accelerator="cpu", precision="bf16-mixed")
    result = fit_one(config, seen)
    assert seen.autocast == torch.bfloat16  # the steps ran under bf16 autocast
    assert result.best_checkpoint is not None
    assert finite(result)
    weights = torch.load(result.best_checkpoint, weights_only=True)["state_dict"]
    # the weights stay float32: mixed precision computes in bf16, keeps fp32 masters
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float32}


@GPU
@pytest.mark.parametrize("task", ["classification", "segmentation", "detection", "multilabel"])
def test_16_mixed_on_gpu_trains_each_task(
    task: str, datasets: dict[str, Path], tmp_path: Path
) -> None:
    seen = Seen()
    config = task_config(task, datasets, tmp_path, accelerator="gpu", precision="16-mixed")
    result = fit_one(config, seen)
    assert seen.autocast == torch.float16
    assert finite(result)


def test_channels_last_trains_in_that_layout(datasets: dict[str, Path], tmp_path: Path) -> None:
    seen = Seen()
    config = task_config("classification", datasets, tmp_path, accelerator="cpu")
    config["model"]["channels_last"] = True
    result = fit_one(config, seen)
    assert seen.channels_last is True
    assert finite(result)


@pytest.mark.slow
def test_compile_trains_one_epoch(datasets: dict[str, Path], tmp_path: Path) -> None:
    config = task_config("classification", datasets, tmp_path, accelerator="cpu", compile=True)
    result = fit_one(config)
    assert finite(result)
    # the checkpoint holds the plain network's weight names (no _orig_mod prefix)
    assert result.best_checkpoint is not None
    weights = torch.load(result.best_checkpoint, weights_only=True)["state_dict"]
    assert not any("_orig_mod" in key for key in weights)


def test_compile_without_a_compiler_is_one_clear_error(
    datasets: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shutil.which", lambda name, *a, **k: None)
    config = task_config("classification", datasets, tmp_path, accelerator="cpu", compile=True)
    with pytest.raises(ConfigError, match="C\\+\\+ compiler") as info:
        fit_one(config)
    assert "trainer.compile: false" in str(info.value)
    assert not (tmp_path / "tiny").exists()  # nothing written


def test_a_compile_failure_becomes_a_config_error() -> None:
    class BackendCompilerFailed(Exception):
        pass

    BackendCompilerFailed.__module__ = "torch._dynamo.exc"
    failure = BackendCompilerFailed("backend='inductor' raised:\nCppCompileError: ...")
    assert _is_compile_error(failure) and not _is_compile_error(RuntimeError("x"))
    error = _compile_failed(failure)
    assert str(error).count("\n") == 0 and "backend='inductor' raised" in str(error)
    assert error.where == "trainer.compile"
