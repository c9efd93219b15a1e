"""The tasks: one :class:`TaskSpec` per task in ``TASKS``, and what is built from it.

A task's spec owns its LightningModule, dataset and collate, evaluator, predictor,
default loss and monitor, and the metrics worth showing (see :mod:`.spec`). A new task
is a new spec registered here, or by its own package: ``TASKS.register(name, spec)``.

The names below are loaded on first use (:mod:`.catalog` imports torch and Lightning),
so that reading and checking a config against its schema (:mod:`.validate`) starts at
once and a mistake in it is reported before the engine is imported.

Example:
    >>> from mediscope.tasks import TASKS
    >>> TASKS.names()
    ['classification', 'segmentation', 'detection', 'multilabel']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mediscope.tasks.base import BaseTask
    from mediscope.tasks.catalog import TASKS, build_task, data_module, task_spec
    from mediscope.tasks.classification import ClassificationTask
    from mediscope.tasks.detection import DetectionTask
    from mediscope.tasks.segmentation import SegmentationTask
    from mediscope.tasks.spec import Summary, TaskSpec

#: Each public name and the module that defines it.
_WHERE = {
    "TASKS": "catalog",
    "build_task": "catalog",
    "data_module": "catalog",
    "task_spec": "catalog",
    "BaseTask": "base",
    "ClassificationTask": "classification",
    "DetectionTask": "detection",
    "SegmentationTask": "segmentation",
    "Summary": "spec",
    "TaskSpec": "spec",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value  # once loaded, a plain attribute (and monkeypatch sees it)
    return value


__all__ = [
    "TASKS",
    "BaseTask",
    "ClassificationTask",
    "DetectionTask",
    "SegmentationTask",
    "Summary",
    "TaskSpec",
    "build_task",
    "data_module",
    "task_spec",
]
