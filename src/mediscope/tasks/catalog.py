"""The task registry: ``TASKS`` with the four built-in specs, and what is built from a
config through it (the LightningModule, the data module).

Imported on first use of :mod:`mediscope.tasks`' names; it loads torch and Lightning.
"""

from __future__ import annotations

from typing import Any

from mediscope.config.schema import Config
from mediscope.data.datamodule import MediscopeDataModule
from mediscope.errors import ConfigError
from mediscope.models import input_normalization
from mediscope.registry import Registry
from mediscope.tasks import classification, detection, multilabel, segmentation
from mediscope.tasks.base import BaseTask
from mediscope.tasks.spec import TaskSpec

TASKS: Registry[TaskSpec] = Registry("task")
for _spec in (classification.SPEC, segmentation.SPEC, detection.SPEC, multilabel.SPEC):
    TASKS.register(_spec.name, _spec, description=_spec.description)


def task_spec(config: Config) -> TaskSpec:
    """The spec of ``config.task``.

    Raises:
        ConfigError: the task is not registered.
    """
    if config.task not in TASKS:
        raise ConfigError(
            f"task '{config.task}' is not available in this version",
            where="task",
            hint=f"available: {', '.join(TASKS.names())}",
        )
    return TASKS.get(config.task)


def build_task(
    config: Config,
    classes: list[str],
    *,
    class_counts: list[int] | None = None,
    normalization: tuple[list[float], list[float]] | None = None,
) -> BaseTask:
    """The LightningModule of ``config.task`` for ``config`` and ``classes``."""
    return task_spec(config).build(
        config, classes, class_counts=class_counts, normalization=normalization
    )


def data_module(config: Config, **kwargs: Any) -> MediscopeDataModule:
    """The data module of ``config`` with its task's data side.

    Args:
        config: A validated config.
        **kwargs: ``split_file``, ``reuse_split``, ``stats`` of
            :class:`~mediscope.data.datamodule.MediscopeDataModule`.
    """
    return MediscopeDataModule(
        config,
        task_spec(config).data,
        auto_normalize=input_normalization(config.model.name, config.model.params),
        **kwargs,
    )
