"""Evaluating a checkpoint on the validation or test split: ``validate`` and ``test``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mediscope.config.schema import Config
from mediscope.data.datamodule import MediscopeDataModule
from mediscope.engine.checkpoints import read_checkpoint
from mediscope.engine.restore import (
    evaluation_inputs,
    predict_probs,
    split_samples,
    task_from_checkpoint,
)
from mediscope.engine.run_dir import run_dir_of
from mediscope.engine.trainer import quiet_lightning
from mediscope.metrics.classification import classification_report
from mediscope.tasks import task_spec


@dataclass
class Evaluation:
    """Predictions of a checkpoint on one split, and their metrics."""

    metrics: dict[str, float]
    labels: np.ndarray
    probs: np.ndarray
    paths: list[str]
    classes: list[str]


def write_run_report(config: Config, run_dir: Path) -> Path | None:
    """Writes ``report.html`` in ``run_dir`` unless ``report.html`` is off in the config."""
    if not config.report.html or not (run_dir / "config.yaml").is_file():
        return None
    from mediscope.reports.html import write_report

    return write_report(run_dir)


def evaluate_and_write(
    config: Config,
    checkpoint: Path,
    *,
    split: str,
    out_dir: Path,
    datamodule: MediscopeDataModule | None = None,
) -> dict[str, float]:
    """Evaluates ``checkpoint`` on a split and writes ``<split>_metrics.json`` and plots.

    The task's evaluator (see :class:`mediscope.tasks.spec.Evaluator`) does the work.
    """
    inputs = evaluation_inputs(config, checkpoint, split=split, datamodule=datamodule)
    return task_spec(config).evaluate(inputs, out_dir=out_dir)


def evaluate_checkpoint(
    config: Config,
    checkpoint: Path,
    *,
    split: str,
    datamodule: MediscopeDataModule | None = None,
) -> Evaluation:
    """Predictions and metrics of ``checkpoint`` on the ``val`` or ``test`` split."""
    quiet_lightning()
    task, stats = task_from_checkpoint(config, checkpoint)
    classes = task.classes
    datamodule, samples = split_samples(
        config, checkpoint, classes, split=split, stats=stats, datamodule=datamodule
    )
    loader = datamodule.loader(datamodule.dataset(samples, train=False), train=False)
    labels, probs = predict_probs(task, loader)
    metrics = classification_report(labels, probs, classes)
    metrics["epoch"] = float(read_checkpoint(checkpoint).get("epoch", -1))
    return Evaluation(metrics, labels, probs, samples.ids(), classes)


def _output_dir(checkpoint: Path) -> Path:
    return run_dir_of(checkpoint) or checkpoint.resolve().parent


def test(config: Config, checkpoint: str | Path) -> tuple[dict[str, float], Path]:
    """Evaluates ``checkpoint`` on the test data; writes ``test_metrics.json`` and plots.

    The test data is ``data.test_path``, or the rows the data marks as test.

    Returns:
        The metrics and the path of the JSON file (in the checkpoint's run folder).
    """
    path = Path(checkpoint)
    out = _output_dir(path)
    metrics = evaluate_and_write(config, path, split="test", out_dir=out)
    write_run_report(config, out)
    return metrics, out / "test_metrics.json"


def validate(config: Config, checkpoint: str | Path) -> tuple[dict[str, float], Path]:
    """Evaluates ``checkpoint`` on the run's validation split; writes ``val_metrics.json``."""
    path = Path(checkpoint)
    out = _output_dir(path)
    metrics = evaluate_and_write(config, path, split="val", out_dir=out)
    write_run_report(config, out)
    return metrics, out / "val_metrics.json"
