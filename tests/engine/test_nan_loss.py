"""A NaN or infinite training loss stops the run: one line naming the epoch and the step,
exit code 2, and the checkpoints of the finished epochs kept as they were."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from helpers import tiny_config, tiny_detection_config, tiny_segmentation_config
from mediscope.api import fit
from mediscope.engine.checkpoints import read_checkpoint
from mediscope.errors import NonFiniteLossError
from mediscope.tasks import TASKS
from mediscope.tasks.validate import config_from_dict


def poison(
    monkeypatch: pytest.MonkeyPatch, task: str, when: Callable[[Any, int], bool], value: float
) -> list[tuple[int, int, int]]:
    """Makes ``task``'s training loss ``value`` where ``when(module, batch_idx)``; returns
    where it did (epoch, global step, batch)."""
    cls = TASKS.get(task).module
    original = cls.training_step
    hits: list[tuple[int, int, int]] = []

    def training_step(self: Any, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = original(self, batch, batch_idx)
        if when(self, batch_idx):
            hits.append((self.current_epoch, self.global_step, batch_idx))
            return loss * value if math.isnan(value) else loss + value
        return loss

    monkeypatch.setattr(cls, "training_step", training_step)
    return hits


def test_nan_in_the_second_epoch_keeps_the_first_epochs_checkpoints(
    tiny_crops: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_config: Any, cli: Any
) -> None:
    hits = poison(
        monkeypatch, "classification", lambda m, i: m.current_epoch == 1 and i == 2, math.nan
    )
    raw = tiny_config(
        tiny_crops, tmp_path / "runs", trainer={"max_epochs": 3}, checkpoint={"every_n_epochs": 1}
    )
    result = cli("fit", write_config(raw))
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    epoch, step, batch = hits[0]
    assert (epoch, batch) == (1, 2) and step > batch  # the global step counts epoch 0 too
    (run,) = (tmp_path / "runs" / "tiny").iterdir()
    last = run / "checkpoints" / "last.ckpt"
    assert lines[0] == (
        f"error: training loss is nan at epoch 1, step {step} (batch 2 of epoch 1); the last "
        f"good checkpoint is {last} (epoch 0); lower optimizer.lr (now 0.001), set "
        "trainer.gradient_clip_val or check the data for NaN values; then start again, or "
        f"from these weights with --weights {last}"
    )
    # the finished epoch's checkpoints are intact; nothing was saved from the NaN state
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["best.ckpt", "epoch=000.ckpt", "last.ckpt"]
    for name in names:
        data = read_checkpoint(run / "checkpoints" / name)
        assert data["epoch"] == 0
        assert all(
            torch.isfinite(v).all() for v in data["state_dict"].values() if v.is_floating_point()
        )
    assert "nan" not in (run / "metrics.csv").read_text().lower()


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_an_infinite_loss_in_the_first_epoch(
    tiny_crops: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: float
) -> None:
    poison(monkeypatch, "classification", lambda m, i: i == 1, value)
    cfg = config_from_dict(tiny_config(tiny_crops, tmp_path / "runs"))
    with pytest.raises(NonFiniteLossError) as caught:
        fit(cfg)
    error = caught.value
    name = "inf" if value > 0 else "-inf"
    assert str(error).startswith(
        f"training loss is {name} at epoch 0, step 1 (batch 1 of epoch 0); no epoch had "
        "finished, so there is no checkpoint (the new run folder was removed); lower "
        "optimizer.lr"
    )
    assert (error.epoch, error.step, error.batch, error.exit_code) == (0, 1, 1, 2)
    assert list((tmp_path / "runs" / "tiny").iterdir()) == []


def test_a_huge_learning_rate(
    tiny_crops: Path, tmp_path: Path, write_config: Any, cli: Any
) -> None:
    raw = tiny_config(tiny_crops, tmp_path / "runs", optimizer={"name": "SGD", "lr": 1e30})
    result = cli("fit", write_config(raw))
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert re.match(r"error: training loss is (nan|inf) at epoch 0, step \d+ \(batch", line)
    assert "lower optimizer.lr (now 1e+30)" in line


@pytest.mark.parametrize("task", ["segmentation", "detection"])
def test_every_task_stops_on_nan(
    task: str,
    tiny_lesions: Path,
    tiny_smears: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    poison(monkeypatch, task, lambda m, i: i == 1, math.nan)
    if task == "segmentation":
        raw = tiny_segmentation_config(tiny_lesions, tmp_path / "runs")
    else:
        raw = tiny_detection_config(tiny_smears, tmp_path / "runs")
    with pytest.raises(NonFiniteLossError, match=r"^training loss is nan at epoch 0, step 1 "):
        fit(config_from_dict(raw))
