"""Losses by name: every ``torch.nn`` loss plus mediscope's own.

``mediscope list losses`` prints them. A task builds its loss with
``build_loss(name, task=..., **params)``, which adapts a torch.nn loss to the task's
outputs and targets (e.g. one-hot targets for BCEWithLogitsLoss).
"""

from __future__ import annotations

import inspect

from torch import nn
from torch.nn.modules import loss as _torch_losses

from mediscope.losses import classification, detection, segmentation
from mediscope.registry import LOSSES

# torch.nn losses that also fit segmentation (per-pixel logits, class-index masks).
_SEGMENTATION_TORCH = ("CrossEntropyLoss", "BCEWithLogitsLoss")


def _register_torch_losses() -> None:
    for name, cls in inspect.getmembers(_torch_losses, inspect.isclass):
        if (
            not name.startswith("_")
            and issubclass(cls, _torch_losses._Loss)
            and name.endswith("Loss")
            and cls.__module__ == (_torch_losses.__name__)
        ):
            tasks: tuple[str, ...] = ()
            if name in classification.TORCH_ADAPTERS:
                tasks = ("classification",)
            if name in _SEGMENTATION_TORCH:
                tasks = (*tasks, "segmentation")
            LOSSES.register(name, cls, description=f"torch.nn.{name}", tasks=tasks)


_register_torch_losses()
LOSSES.register(
    "FocalLoss",
    classification.FocalLoss,
    description="focal loss (gamma, alpha) over softmax",
    tasks=("classification", "segmentation"),
)
LOSSES.register(
    "DiceLoss",
    segmentation.DiceLoss,
    description="soft multi-class Dice (smooth, include_background)",
    tasks=("segmentation",),
)
LOSSES.register(
    "TverskyLoss",
    segmentation.TverskyLoss,
    description="Tversky: alpha weighs false positives, beta false negatives",
    tasks=("segmentation",),
)
LOSSES.register(
    "ComboLoss",
    segmentation.ComboLoss,
    description="weighted sum of terms, e.g. params {ce: 1, dice: 3} or {focal: 1, dice: 1}",
    tasks=("segmentation",),
)
LOSSES.register(
    "DiceCELoss",
    segmentation.DiceCELoss,
    description="cross-entropy + Dice, equal weights (the segmentation default)",
    tasks=("segmentation",),
)
LOSSES.register(
    "DetectionLoss",
    detection.DetectionLoss,
    description="assignment (maxiou/atss/tal) + focal or CE classes + objectness + "
    "SmoothL1/GIoU boxes (the detection default)",
    tasks=("detection",),
)


def loss_names(task: str | None = None) -> list[str]:
    """Registered loss names, optionally only those usable for ``task``."""
    return [e.name for e in LOSSES.entries() if task is None or task in e.tags.get("tasks", ())]


__all__ = ["loss_names", "nn"]
