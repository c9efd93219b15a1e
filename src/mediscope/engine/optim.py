"""Optimizers and learning-rate schedulers by name.

Every ``torch.optim`` optimizer and every ``torch.optim.lr_scheduler`` scheduler is
registered under its class name, plus ``PolyLR``. A linear warm-up is added to any
scheduler with ``scheduler.warmup_epochs``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch.optim import lr_scheduler

from mediscope.errors import ConfigError
from mediscope.registry import OPTIMIZERS, SCHEDULERS


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
    try:
        optimizer: torch.optim.Optimizer = cls(params, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {exc}", where="optimizer.params") from None
    return optimizer


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
    try:
        main = cls(optimizer, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {exc}", where="scheduler.params") from None
    if not warmup:
        return main
    ramp = lr_scheduler.LinearLR(
        optimizer, start_factor=warmup_start_factor, end_factor=1.0, total_iters=warmup
    )
    return lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
