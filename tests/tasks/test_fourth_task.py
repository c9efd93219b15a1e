"""A fourth task added from outside the package: regression of one number per image.

Everything that differs by task is one object in the tasks registry. This test defines
a task that mediscope does not ship (predict the mean brightness of an image) with its
own format, model, LightningModule, dataset, evaluator and predictor, registers them,
and runs the config -> fit -> evaluate -> predict path through mediscope's own code
(``load_config``, ``mediscope.api.fit``, ``mediscope predict``), with no change under
``src/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from rich.console import Console
from torch import nn
from torchmetrics import MeanAbsoluteError, MetricCollection

from mediscope.api import fit, validate
from mediscope.cli.output import metrics_grid
from mediscope.config.schema import Config
from mediscope.data.datasets import ImageDataset
from mediscope.data.images import is_image_file, read_image
from mediscope.data.samples import Sample, SampleSet
from mediscope.data.task_data import DatasetOptions, TaskData
from mediscope.engine.restore import task_from_checkpoint
from mediscope.files import write_json_atomic
from mediscope.inference.predict import predict
from mediscope.registry import FORMATS, MODELS
from mediscope.tasks import TASKS, BaseTask, Summary, TaskSpec
from mediscope.tasks.spec import EvaluationInputs
from mediscope.tasks.validate import load_config

TASK = "brightness"


def read_brightness_folder(
    path: Path, *, classes: list[str] | None, task: str, root: Path | None = None
) -> SampleSet:
    """Every image under ``path``; the target is computed from the pixels."""
    images = [str(p) for p in sorted(path.rglob("*")) if is_image_file(p)]
    return SampleSet(["brightness"], [Sample(image=i) for i in images], path)


class BrightnessDataset(ImageDataset):
    """Yields ``(image, mean brightness in 0..1)``."""

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = self.locate(key)
        image = read_image(self.samples[index].image, channels=self.channels)
        target = float(image.mean()) / 255.0
        out = self.apply(epoch, index, image=image)
        return out["image"], torch.tensor(target, dtype=torch.float32)  # type: ignore[return-value]


def brightness_dataset(
    config: Config, samples: SampleSet, *, train: bool, options: DatasetOptions
) -> ImageDataset:
    return BrightnessDataset(samples.samples, **options.kwargs())


class TinyRegressor(nn.Module):
    def __init__(self, *, in_chans: int = 3, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(width, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).squeeze(1)


def tiny_regressor(*, num_classes: int, in_chans: int = 3, pretrained: bool = False) -> nn.Module:
    return TinyRegressor(in_chans=in_chans)


class BrightnessTask(BaseTask):
    epoch_metrics = ("mae",)
    main_metric = "mae"

    def configure_models(self) -> None:
        self.model = TinyRegressor(in_chans=self.config.data.channels)

    def configure_losses(self) -> None:
        self.criterion = nn.MSELoss()

    def configure_metrics(self) -> None:
        self.train_metrics = MetricCollection({"mae": MeanAbsoluteError()}, prefix="train/")
        self.val_metrics = MetricCollection({"mae": MeanAbsoluteError()}, prefix="val/")

    def metric_inputs(self, logits: torch.Tensor) -> torch.Tensor:
        return logits


@torch.inference_mode()
def evaluate_brightness(inputs: EvaluationInputs, *, out_dir: Path) -> dict[str, float]:
    loader = inputs.datamodule.loader(inputs.dataset, train=False)
    errors = [(inputs.task.model(images) - targets).abs() for images, targets in loader]
    error = torch.cat(errors)
    metrics = {"mae": float(error.mean()), "n_samples": float(len(error))}
    write_json_atomic(out_dir / f"{inputs.split}_metrics.json", metrics)
    return metrics


@torch.inference_mode()
def predict_brightness(
    config: Config, checkpoint: Path, refs: list[str], output: Path
) -> pd.DataFrame:
    task, stats = task_from_checkpoint(config, checkpoint)
    from mediscope.tasks import data_module

    datamodule = data_module(config, stats=stats)
    samples = SampleSet(task.classes, [Sample(image=r) for r in refs], Path("."))
    loader = datamodule.loader(datamodule.dataset(samples, train=False), train=False)
    values = torch.cat([task.model(images) for images, _ in loader]).numpy()
    table = pd.DataFrame({"path": refs, "brightness": np.round(values, 6)})
    table.to_csv(output, index=False)
    table.attrs["path"] = str(output)
    return table


SPEC = TaskSpec(
    name=TASK,
    module=BrightnessTask,
    data=TaskData(dataset=brightness_dataset, train_counts=lambda config, samples: None),
    default_loss="MSELoss",
    default_monitor="val/mae",
    monitor_mode="min",
    evaluator=evaluate_brightness,
    predictor=predict_brightness,
    summary=Summary(terminal=("mae",), ranked=("mae",), files=(("metrics", "val_metrics.json"),)),
)


@pytest.fixture
def brightness_task() -> Iterator[None]:
    """The task, its format and its model, registered for the test only."""
    TASKS.register(TASK, SPEC)
    FORMATS.register("brightness-folder", read_brightness_folder, tasks=(TASK,))
    MODELS.register("tiny_regressor", tiny_regressor, task=TASK)
    try:
        yield
    finally:
        TASKS.unregister(TASK)
        FORMATS.unregister("brightness-folder")
        MODELS.unregister("tiny_regressor")


def make_images(folder: Path, count: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(count):
        level = rng.integers(20, 235)
        pixels = np.clip(rng.normal(level, 10, (24, 24, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:02d}.png")
    return folder


def write_config(tmp_path: Path, data: Path) -> Path:
    path = tmp_path / "brightness.yaml"
    path.write_text(
        f"task: {TASK}\n"
        f"data: {{format: brightness-folder, path: {data}, image_size: 24, batch_size: 8,"
        " normalize: none}\n"
        "model: {name: tiny_regressor}\n"
        "optimizer: {name: Adam, lr: 0.01}\n"
        "trainer: {max_epochs: 1, accelerator: cpu}\n"
        "report: {html: false}\n"
        f"run: {{name: brightness, dir: {tmp_path / 'runs'}}}\n"
    )
    return path


def test_a_fourth_task_trains_evaluates_and_predicts(brightness_task: None, tmp_path: Path) -> None:
    data = make_images(tmp_path / "images", 24)
    config = load_config(write_config(tmp_path, data))
    # The task's defaults filled the config: its loss and its monitor, minimised.
    assert config.loss.name == "MSELoss"
    assert (config.checkpoint.monitor, config.checkpoint.mode) == ("val/mae", "min")

    result = fit(config)
    assert result.epochs_run == 1 and result.best_checkpoint is not None
    assert result.split_sizes["train"] + result.split_sizes["val"] == 24
    # fit evaluated the best checkpoint with the task's own evaluator.
    written = json.loads((result.run_dir / "val_metrics.json").read_text())
    assert written == result.val_metrics
    assert written["n_samples"] == result.split_sizes["val"] and 0 <= written["mae"] < 1
    metrics, path = validate(config, result.best_checkpoint)
    assert metrics == written and path == result.run_dir / "val_metrics.json"

    # The terminal shows the task's own metrics.
    console = Console(width=120, record=True)
    console.print(metrics_grid(metrics, SPEC.summary))
    assert f"mae {metrics['mae']:.4f}" in console.export_text()

    # predict on a run folder goes through the task's predictor.
    out = tmp_path / "pred.csv"
    table = predict(result.run_dir, inputs=[data], output=out)
    assert list(table.columns) == ["path", "brightness"] and len(table) == 24
    assert pd.read_csv(out)["brightness"].notna().all()


def test_a_monitor_the_fourth_task_does_not_log_is_refused(
    brightness_task: None, tmp_path: Path
) -> None:
    from mediscope.errors import ConfigError

    path = write_config(tmp_path, make_images(tmp_path / "images", 4))
    with pytest.raises(ConfigError, match="'val/f1_macro' is not a metric of the brightness task"):
        load_config(path, ["checkpoint.monitor=val/f1_macro"])


def test_without_registration_the_task_is_unknown(tmp_path: Path) -> None:
    from mediscope.errors import ConfigError

    path = write_config(tmp_path, tmp_path)
    with pytest.raises(ConfigError, match=r"task: input should be 'classification'"):
        load_config(path)
