"""The task object: everything that differs from one task to another, in one place.

A :class:`TaskSpec` is registered in :data:`mediscope.tasks.TASKS` under the task's name
(the config's ``task``). Code outside ``tasks/`` asks it instead of branching on the
name: the data module for datasets and collate, ``fit`` for the LightningModule and
monitors, ``validate``/``test`` for the evaluator, ``predict`` for the predictor, the
terminal and the study leaderboard for the metrics worth showing.

The evaluator and the predictor live in higher layers (they write reports and files),
so a spec names them by import path (``"package.module:function"``), resolved on first
use; a spec made elsewhere (a plugin, a test) may give the functions themselves.

Example:
    >>> from mediscope.tasks import TASKS
    >>> spec = TASKS.get("segmentation")
    >>> spec.default_monitor, spec.default_loss
    ('val/dice_mean', 'DiceCELoss')
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mediscope.data.task_data import TaskData

if TYPE_CHECKING:
    import pandas as pd

    from mediscope.config.schema import Config
    from mediscope.data.datamodule import MediscopeDataModule
    from mediscope.data.samples import SampleSet
    from mediscope.tasks.base import BaseTask


@dataclass
class EvaluationInputs:
    """What evaluating a checkpoint on a split starts from (built by
    :func:`mediscope.engine.restore.evaluation_inputs`)."""

    config: Config
    checkpoint: Path
    split: str
    task: BaseTask
    datamodule: MediscopeDataModule
    samples: SampleSet
    dataset: Any
    mean: list[float]
    std: list[float]


class Evaluator(Protocol):
    """Evaluates a checkpoint on a split (``val`` or ``test``): writes
    ``<split>_metrics.json`` and the task's plots under ``out_dir``; returns the metrics."""

    def __call__(self, inputs: EvaluationInputs, *, out_dir: Path) -> dict[str, float]: ...


class FilePredictor(Protocol):
    """Predicts image files and writes the results under ``output``; returns a table.

    It may take keyword options (``probabilities=True``: also write per-class maps).
    """

    def __call__(
        self, config: Config, checkpoint: Path, refs: list[str], output: Path, **options: Any
    ) -> pd.DataFrame: ...


@dataclass(frozen=True)
class Summary:
    """The metrics and files of a task worth showing, main ones first.

    Args:
        terminal: Flat metrics printed on the metrics line, in order.
        per_class: Rows of per-class metrics as ``(label, key prefix)``, e.g.
            ``("sensitivity", "recall/")``; ``gt/`` rows are counts.
        ranked: Flat metrics a study can rank cells by; the first is the usual one.
        ranked_more: Further flat metrics a study may rank by.
        ranked_per_class: Per-class metric kinds (``f1`` for ``f1/<class>``) to rank by.
        files: What a finished run folder holds, as ``(label, description)`` lines.
        folds: Metrics of the cross-validation summary (``cv_summary.csv``).
        report: Flat metrics ``report.html`` shows first, in order.
        interval_metric: The per-class metric of the report's interval plot.
        plots: The plots of a split in the report, as ``(file name after
            "<split>_", caption)``.
    """

    terminal: tuple[str, ...]
    per_class: tuple[tuple[str, str], ...] = ()
    ranked: tuple[str, ...] = ()
    ranked_more: tuple[str, ...] = ()
    ranked_per_class: tuple[str, ...] = ()
    files: tuple[tuple[str, str], ...] = ()
    folds: tuple[str, ...] = ()
    report: tuple[str, ...] = ()
    interval_metric: str = ""
    plots: tuple[tuple[str, str], ...] = ()

    def rankable(self, classes: list[str]) -> set[str]:
        """Every metric of the task's metrics files that a study can rank by."""
        names = set(self.ranked) | set(self.ranked_more)
        for kind in self.ranked_per_class:
            names.update(f"{kind}/{name}" for name in classes)
        return names


def resolve(ref: str | Callable[..., Any]) -> Any:
    """The object a ``"package.module:name"`` reference names (or ``ref`` itself)."""
    if not isinstance(ref, str):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class TaskSpec:
    """One task: its module, data, losses, monitors, evaluator, predictor and summary.

    Args:
        name: The config's ``task`` value.
        module: The LightningModule class (a :class:`~mediscope.tasks.base.BaseTask`).
        data: The data side (datasets, collate, class counts).
        default_loss: ``loss.name`` when the config gives none.
        default_monitor: ``checkpoint.monitor`` when the config says ``auto``.
        monitor_mode: Whether the default monitor goes up (``max``) or down.
        evaluator: The evaluator (see :class:`Evaluator`) or its import path.
        predictor: The file predictor (see :class:`FilePredictor`) or its import path.
        summary: The metrics and files worth showing.
        description: One line for ``mediscope list``.
        models_of: The task whose registered models this task builds (multi-label
            classification builds classifiers); empty: its own.
    """

    name: str
    module: type[BaseTask]
    data: TaskData
    default_loss: str
    default_monitor: str
    evaluator: str | Evaluator
    predictor: str | FilePredictor
    summary: Summary
    monitor_mode: Literal["min", "max"] = "max"
    description: str = ""
    models_of: str = ""

    def build(
        self,
        config: Config,
        classes: list[str],
        *,
        class_counts: list[int] | None = None,
        normalization: tuple[list[float], list[float]] | None = None,
    ) -> BaseTask:
        """The task's LightningModule for ``config`` and ``classes``."""
        return self.module(
            config=config,
            classes=classes,
            class_counts=class_counts,
            normalization=normalization,
        )

    def metric_names(self) -> list[str]:
        """Everything the task logs per epoch (what monitors may name)."""
        return self.module.logged_metrics()

    def evaluate(self, inputs: EvaluationInputs, *, out_dir: Path) -> dict[str, float]:
        """Runs the task's evaluator (see :class:`Evaluator`)."""
        evaluator: Evaluator = resolve(self.evaluator)
        return evaluator(inputs, out_dir=out_dir)

    def predict_files(
        self, config: Config, checkpoint: Path, refs: list[str], output: Path, **options: Any
    ) -> pd.DataFrame:
        """Runs the task's file predictor (see :class:`FilePredictor`) with the
        ``options`` it takes (a detector has no probability maps to write)."""
        predictor: FilePredictor = resolve(self.predictor)
        taken = inspect.signature(predictor).parameters
        chosen = {key: value for key, value in options.items() if key in taken}
        return predictor(config, checkpoint, refs, output, **chosen)
