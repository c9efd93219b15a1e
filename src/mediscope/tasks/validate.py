"""Validating a config against the registries and its task: one place, one function.

The config layer checks a config against the schema only. :func:`validate` checks what
needs the registries: the task, the model, loss, optimizer, scheduler and format names,
optimizer and scheduler keywords, and the metrics that monitors name; and it fills the
task's defaults (loss, monitor and mode) so the resolved config says what runs. ``fit``,
``compare`` and ``check`` call it, and :func:`load_config` reads and validates at once.

Example:
    >>> from mediscope.tasks.validate import config_from_dict
    >>> config = config_from_dict(
    ...     {"task": "segmentation", "data": {"format": "masks", "path": "x"},
    ...      "model": {"name": "unet"}}
    ... )
    >>> config.loss.name, config.checkpoint.monitor
    ('DiceCELoss', 'val/dice_mean')
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mediscope.config.loader import (
    ConfigSource,
    KeyPath,
    locate,
    parse_config_dict,
    parse_config_text,
    parse_dataset_dict,
    read_config,
    read_dataset_config,
)
from mediscope.config.schema import Config, DatasetConfig, metric_mode
from mediscope.errors import ConfigError, MediscopeError
from mediscope.registry import (
    FORMATS,
    LOSSES,
    OPTIMIZERS,
    SCHEDULERS,
    did_you_mean,
    unknown_name_hint,
)

if TYPE_CHECKING:
    from mediscope.tasks.spec import TaskSpec

C = TypeVar("C", bound=DatasetConfig)


def validate(config: C) -> C:
    """Checks ``config`` against the registries and its task and fills the task defaults.

    A :class:`~mediscope.config.schema.DatasetConfig` (what the dataset doctor reads:
    task, seed, data) gets the checks of its task and data format; a whole
    :class:`~mediscope.config.schema.Config` those of its model, loss, optimizer,
    scheduler and monitors too. Idempotent: validating a validated config changes
    nothing.

    Returns:
        ``config`` itself, with ``loss.name``, the monitors and their modes resolved.

    Raises:
        ConfigError: naming the file and line (or ``--set``) of the key, and the fix.
    """
    source = config._source or ConfigSource(None, {}, [])
    spec = _spec(config, source)
    _check_data(config, spec, source)
    if isinstance(config, Config):
        _fill_defaults(config, spec)
        _check_names(config, source)
        _check_trainer(config, source)
        _check_monitors(config, spec)
    return config


def load_dataset_config(path: str | Path, overrides: Iterable[str] = ()) -> DatasetConfig:
    """Like :func:`load_config` for a config that may lack its ``model`` section (the
    dataset doctor's input); a config with a model is a whole, validated Config."""
    return validate(read_dataset_config(path, overrides))


def dataset_config_from_dict(
    raw: dict[str, Any], source: ConfigSource | None = None
) -> DatasetConfig:
    """Like :func:`load_dataset_config`, from a plain dict."""
    return validate(parse_dataset_dict(raw, source))


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Reads, overrides and validates a YAML config.

    Args:
        path: The YAML file.
        overrides: ``key.path=value`` strings; values are parsed as YAML (numbers,
            booleans, ``[lists]``); a bare ``a,b`` becomes a list.

    Returns:
        The validated config, with task-dependent defaults filled in.

    Raises:
        ConfigError: naming the file, line, key, bad value and valid choices.
    """
    return validate(read_config(path, overrides))


def config_from_text(
    text: str, *, path: Path | None = None, overrides: Iterable[str] = ()
) -> Config:
    """Like :func:`load_config`, from YAML text."""
    return validate(parse_config_text(text, path=path, overrides=overrides))


def config_from_dict(raw: dict[str, Any], source: ConfigSource | None = None) -> Config:
    """Like :func:`load_config`, from a plain dict."""
    return validate(parse_config_dict(raw, source))


def _where(source: ConfigSource, keys: KeyPath) -> str:
    return f"{source.where(keys)}: {'.'.join(map(str, keys))}"


def _spec(config: DatasetConfig, source: ConfigSource) -> TaskSpec:
    # The task modules (torch, Lightning) fill the registries the other checks read.
    from mediscope.tasks.catalog import TASKS

    if config.task in TASKS:
        return TASKS.get(config.task)
    names = TASKS.names()
    quoted = [f"'{name}'" for name in names]
    expected = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    guess = did_you_mean(config.task, names)
    raise ConfigError(
        f"input should be {expected} (got {config.task!r})",
        where=_where(source, ("task",)),
        hint=f"did you mean '{guess}'?" if guess else None,
    )


def _check_data(config: DatasetConfig, spec: TaskSpec, source: ConfigSource) -> None:
    """The data format's name, and a sampler the task can draw with."""
    name = config.data.format
    if name not in FORMATS:
        raise ConfigError(
            f"unknown {FORMATS.kind} '{name}'",
            where=_where(source, ("data", "format")),
            hint=unknown_name_hint(name, FORMATS.names()),
        )
    if config.data.sampler == "weighted" and not spec.data.one_label_per_image:
        raise ConfigError(
            "weighted draws classes of whole images (classification); use loss.class_weights",
            where=_where(source, ("data", "sampler")),
        )


def _fill_defaults(config: Config, spec: TaskSpec) -> None:
    if config.loss.name is None:
        config.loss.name = spec.default_loss
    checkpoint = config.checkpoint
    if checkpoint.monitor == "auto":
        checkpoint.monitor = spec.default_monitor
    if checkpoint.mode == "auto":
        checkpoint.mode = (
            spec.monitor_mode
            if checkpoint.monitor == spec.default_monitor
            else metric_mode(checkpoint.monitor)
        )
    stop = config.trainer.early_stopping
    if stop is not None:
        if stop.monitor == "auto":
            stop.monitor = checkpoint.monitor
        if stop.mode == "auto":
            stop.mode = metric_mode(stop.monitor)


def _check_names(config: Config, source: ConfigSource) -> None:
    """Model, loss, optimizer and scheduler names against the registries."""
    from mediscope.models import model_names_hint, resolve_model
    from mediscope.optim import check_optimization
    from mediscope.tasks.catalog import TASKS

    checks: list[tuple[KeyPath, str | None, Any]] = [
        (("loss", "name"), config.loss.name, LOSSES),
        (("optimizer", "name"), config.optimizer.name, OPTIMIZERS),
        (("scheduler", "name"), config.scheduler.name, SCHEDULERS),
    ]
    for keys, name, registry in checks:
        if name is not None and name not in registry:
            raise ConfigError(
                f"unknown {registry.kind} '{name}'",
                where=_where(source, keys),
                hint=unknown_name_hint(name, registry.names()),
            )
    family = TASKS.get(config.task).models_of if config.task in TASKS else config.task
    try:
        resolve_model(config.model.name, task=family or config.task)
    except MediscopeError as exc:
        raise ConfigError(
            exc.message,
            where=_where(source, ("model", "name")),
            hint=exc.hint or model_names_hint(config.model.name, family or config.task),
        ) from None
    try:
        check_optimization(config)  # keywords torch would refuse only once training runs
    except ConfigError as exc:
        raise locate(exc, config) from None


def _accelerator_names() -> list[str]:
    """The ``trainer.accelerator`` values Lightning knows: auto, gpu and its registry's."""
    from lightning.pytorch.accelerators import AcceleratorRegistry

    return ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())]


def _strategy_names() -> list[str]:
    """The ``trainer.strategy`` values Lightning knows: auto and its registry's."""
    from lightning.pytorch.strategies import StrategyRegistry

    return ["auto", *StrategyRegistry.available_strategies()]


def _check_trainer(config: Config, source: ConfigSource) -> None:
    """The accelerator and strategy names against Lightning's registries (whether the
    accelerator's device is there is checked when training starts)."""
    trainer = config.trainer
    checks: list[tuple[KeyPath, str, str, list[str]]] = [
        (("trainer", "accelerator"), "accelerator", trainer.accelerator, _accelerator_names()),
        # Lightning compares strategy names in lower case.
        (("trainer", "strategy"), "strategy", trainer.strategy.lower(), _strategy_names()),
    ]
    for keys, kind, name, names in checks:
        if name not in names:
            raise ConfigError(
                f"unknown {kind} '{name}'",
                where=_where(source, keys),
                hint=unknown_name_hint(name, names),
            )


def _check_monitors(config: Config, spec: TaskSpec) -> None:
    """The metrics that ``checkpoint``, early stopping and the scheduler monitor."""
    names = spec.metric_names()
    monitors: dict[KeyPath, str] = {("checkpoint", "monitor"): config.checkpoint.monitor}
    if config.trainer.early_stopping is not None:
        key = ("trainer", "early_stopping", "monitor")
        monitors[key] = config.trainer.early_stopping.monitor
    if config.scheduler.monitor:
        monitors[("scheduler", "monitor")] = config.scheduler.monitor
    for keys, value in monitors.items():
        if value not in names:
            raise ConfigError(
                f"'{value}' is not a metric of the {config.task} task",
                where=".".join(map(str, keys)),
                hint=unknown_name_hint(value, names),
            )


__all__ = [
    "config_from_dict",
    "config_from_text",
    "dataset_config_from_dict",
    "load_config",
    "load_dataset_config",
    "validate",
]
