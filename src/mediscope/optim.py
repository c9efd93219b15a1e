"""Optimizers and learning-rate schedulers by name.

Every ``torch.optim`` optimizer and every ``torch.optim.lr_scheduler`` scheduler is
registered under its class name, plus ``PolyLR``. A linear warm-up is added to any
scheduler with ``scheduler.warmup_epochs``.
"""

from __future__ import annotations

import inspect
import typing
import warnings
from typing import TYPE_CHECKING, Any

import torch
from pydantic import TypeAdapter, ValidationError
from torch.optim import lr_scheduler

from mediscope.errors import ConfigError
from mediscope.params import check_keywords
from mediscope.registry import OPTIMIZERS, SCHEDULERS

if TYPE_CHECKING:
    from mediscope.config.schema import Config


class PolyLR(lr_scheduler.LRScheduler):
    """Polynomial decay: ``lr = base_lr * (1 - t / total_iters) ** power``, floored at min_lr.

    Args:
        optimizer: The optimizer.
        total_iters: Steps (or epochs) until the end of the decay.
        power: The exponent (0.9 in MMSegmentation).
        min_lr: The floor.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_iters: int,
        power: float = 0.9,
        min_lr: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        self.total_iters = max(1, int(total_iters))
        self.power = power
        self.min_lr = min_lr
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        t = min(self.last_epoch, self.total_iters)
        factor = (1 - t / self.total_iters) ** self.power
        return [max(self.min_lr, base * factor) for base in self.base_lrs]


def _register() -> None:
    for name, cls in inspect.getmembers(torch.optim, inspect.isclass):
        if issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer:
            OPTIMIZERS.register(name, cls, description=f"torch.optim.{name}")
    # Schedulers that take Python callables or other schedulers cannot come from YAML.
    skip = {"LRScheduler", "_LRScheduler", "SequentialLR", "ChainedScheduler", "LambdaLR"}
    skip |= {"MultiplicativeLR"}
    for name, cls in inspect.getmembers(lr_scheduler, inspect.isclass):
        is_scheduler = issubclass(cls, lr_scheduler.LRScheduler) or name == "ReduceLROnPlateau"
        if is_scheduler and name not in skip and not name.startswith("_"):
            SCHEDULERS.register(name, cls, description=f"torch.optim.lr_scheduler.{name}")
    SCHEDULERS.register("PolyLR", PolyLR, description="polynomial decay (MMSeg's PolyLR)")


_register()

# Keywords mediscope passes itself, not listed among those a user may set.
_SET_BY_MEDISCOPE = ("params", "optimizer", "lr")


def build_optimizer(
    name: str,
    params: Any,
    *,
    lr: float,
    weight_decay: float = 0.0,
    extra: dict[str, Any] | None = None,
) -> torch.optim.Optimizer:
    """Builds ``torch.optim.<name>`` over ``params``."""
    cls = OPTIMIZERS.get(name)
    kwargs: dict[str, Any] = {"lr": lr, **(extra or {})}
    if weight_decay or "weight_decay" in inspect.signature(cls).parameters:
        kwargs.setdefault("weight_decay", weight_decay)
    section = "optimizer.params"
    check_keywords(cls, extra or {}, owner=name, section=section, fixed=_SET_BY_MEDISCOPE)
    _check_types(cls, extra or {}, owner=name, section=section)
    try:
        optimizer: torch.optim.Optimizer = cls(params, **kwargs)
    except (TypeError, ValueError) as exc:  # a value torch refuses
        raise ConfigError(f"{name}: {exc}", where=section) from None
    return optimizer


def _check_types(cls: Any, params: dict[str, Any], *, owner: str, section: str) -> None:
    """Checks ``params`` against the annotations of ``cls.__init__`` where they are
    plain enough to check (numbers, strings, literals); raises a ConfigError naming the
    key. torch checks few of its keywords itself, and some only when stepping."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # unresolvable annotations: nothing to check
        return
    for key, value in params.items():
        if key not in hints:
            continue
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(hints[key])
        except Exception:  # tensors and other types pydantic has no schema for
            continue
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            expected = exc.errors()[0]["msg"]
            raise ConfigError(
                f"{owner}: {expected[:1].lower()}{expected[1:]} (got {value!r})",
                where=f"{section}.{key}",
            ) from None


# Keywords that get a sensible default from the length of training when absent.
_LENGTH_KEYS = {
    "CosineAnnealingLR": "T_max",
    "PolyLR": "total_iters",
    "LinearLR": "total_iters",
    "OneCycleLR": "total_steps",
}


def scheduler_length_key(name: str) -> str | None:
    """The keyword that holds the schedule's length, if it has one (T_max, ...)."""
    return _LENGTH_KEYS.get(name)


def build_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    *,
    params: dict[str, Any],
    length: int,
    warmup: int = 0,
    warmup_start_factor: float = 0.1,
) -> Any:
    """Builds a scheduler; ``length`` is the number of epochs or steps it spans.

    A warm-up of ``warmup`` intervals ramps the learning rate linearly from
    ``warmup_start_factor`` × lr before ``name`` takes over for the rest.
    """
    cls = SCHEDULERS.get(name)
    kwargs = dict(params)
    key = scheduler_length_key(name)
    if key is not None and key not in kwargs:
        kwargs[key] = max(1, length - warmup)
    if name == "OneCycleLR":
        kwargs.setdefault("max_lr", [g["lr"] for g in optimizer.param_groups])
    if name == "ReduceLROnPlateau" and warmup:
        raise ConfigError(
            "ReduceLROnPlateau cannot follow a warm-up",
            where="scheduler.warmup_epochs",
            hint="set it to 0",
        )
    section = "scheduler.params"
    check_keywords(cls, params, owner=name, section=section, fixed=_SET_BY_MEDISCOPE)
    _check_types(cls, params, owner=name, section=section)
    try:
        main = cls(optimizer, **kwargs)
    except (TypeError, ValueError) as exc:  # a value torch refuses
        raise ConfigError(f"{name}: {exc}", where=section) from None
    if not warmup:
        return main
    ramp = lr_scheduler.LinearLR(
        optimizer, start_factor=warmup_start_factor, end_factor=1.0, total_iters=warmup
    )
    return lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def check_optimization(config: Config) -> None:
    """Builds the config's optimizer and scheduler over one dummy parameter and steps
    the scheduler twice, so that a keyword or value they refuse fails when the config
    is read, before any data is read or a run folder exists.

    Raises:
        ConfigError: naming ``optimizer.params`` or ``scheduler.params`` (with the key
            where it is known).
    """
    from mediscope.config.schema import metric_mode

    opt, sched = config.optimizer, config.scheduler
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer(
        opt.name, [weight], lr=opt.lr, weight_decay=opt.weight_decay, extra=opt.params
    )
    if sched.name is None:
        return
    params = dict(sched.params)
    if sched.name == "ReduceLROnPlateau":
        params.setdefault("mode", metric_mode(sched.monitor or "val/loss"))
    length = max(4, config.trainer.max_epochs)
    scheduler = build_scheduler(sched.name, optimizer, params=params, length=length)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "step() before optimizer.step()"
            for _ in range(2):
                if sched.name == "ReduceLROnPlateau":
                    scheduler.step(1.0)
                else:
                    scheduler.step()
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise ConfigError(
            f"{sched.name}: {exc}", where="scheduler.params", hint="check the values"
        ) from None
