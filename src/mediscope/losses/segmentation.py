"""Segmentation losses over logits ``(B, C, H, W)`` and class-index targets ``(B, H, W)``.

Every loss here skips pixels equal to ``ignore_index``. ``build_segmentation_loss`` is
the one place where the config is mapped to these constructors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mediscope.errors import ConfigError
from mediscope.losses.classification import FocalLoss
from mediscope.registry import unknown_name_hint

WeightMethod = Literal["inverse", "inverse_sqrt", "balanced"]


def _valid_and_onehot(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``(B, 1, H, W)`` mask of counted pixels and one-hot targets ``(B, C, H, W)``."""
    num_classes = logits.shape[1]
    valid = torch.ones_like(target, dtype=torch.bool)
    if ignore_index is not None:
        valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    onehot = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).to(logits.dtype)
    return valid[:, None].to(logits.dtype), onehot


class TverskyLoss(nn.Module):
    """Soft multi-class Tversky loss: ``1 - TP / (TP + alpha FP + beta FN)`` per class.

    ``alpha`` weighs false positives and ``beta`` false negatives; ``alpha = beta = 0.5``
    is the Dice loss. Each class is counted over the whole batch, then the classes are
    averaged (weighted by ``weight`` when given).

    Args:
        alpha: Weight of false positives.
        beta: Weight of false negatives.
        smooth: Added to numerator and denominator: an absent class scores 1, not NaN.
        ignore_index: Target value whose pixels are not counted.
        include_background: Count class 0 too.
        weight: Per-class weights of the class average.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.5,
        beta: float = 0.5,
        smooth: float = 1.0,
        ignore_index: int | None = None,
        include_background: bool = True,
        weight: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.alpha, self.beta, self.smooth = alpha, beta, smooth
        self.ignore_index = ignore_index
        self.include_background = include_background
        self.register_buffer(
            "weight", torch.as_tensor(weight, dtype=torch.float32) if weight is not None else None
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid, onehot = _valid_and_onehot(logits, target, self.ignore_index)
        probs = logits.softmax(dim=1) * valid
        onehot = onehot * valid
        dims = (0, 2, 3)
        tp = (probs * onehot).sum(dims)
        fp = (probs * (1 - onehot)).sum(dims)
        fn = ((1 - probs) * onehot).sum(dims)
        score = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        loss = 1 - score
        weight = self.weight if isinstance(self.weight, torch.Tensor) else None
        if not self.include_background:
            loss = loss[1:]
            weight = weight[1:] if isinstance(weight, torch.Tensor) else None
        if isinstance(weight, torch.Tensor):
            return (loss * weight).sum() / weight.sum().clamp(min=1e-12)
        return loss.mean()


class DiceLoss(TverskyLoss):
    """Soft multi-class Dice loss: ``1 - 2 TP / (2 TP + FP + FN)`` per class, averaged.

    Args:
        smooth: Added to numerator and denominator: an absent class scores 1, not NaN.
        ignore_index: Target value whose pixels are not counted.
        include_background: Count class 0 too.
        weight: Per-class weights of the class average.
    """

    def __init__(
        self,
        *,
        smooth: float = 1.0,
        ignore_index: int | None = None,
        include_background: bool = True,
        weight: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        super().__init__(
            alpha=0.5,
            beta=0.5,
            smooth=smooth,
            ignore_index=ignore_index,
            include_background=include_background,
            weight=weight,
        )


class SegmentationBCELoss(nn.Module):
    """BCE with logits on one-hot targets: each class channel an independent sigmoid.

    Args:
        pos_weight: Per-class weight of the positive pixels (as torch's ``pos_weight``).
        ignore_index: Target value whose pixels are not counted.
    """

    def __init__(
        self,
        *,
        pos_weight: Sequence[float] | torch.Tensor | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.register_buffer(
            "pos_weight",
            torch.as_tensor(pos_weight, dtype=torch.float32) if pos_weight is not None else None,
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid, onehot = _valid_and_onehot(logits, target, self.ignore_index)
        pos_weight = None
        if isinstance(self.pos_weight, torch.Tensor):
            pos_weight = self.pos_weight.view(1, -1, 1, 1)
        loss = F.binary_cross_entropy_with_logits(
            logits, onehot, pos_weight=pos_weight, reduction="none"
        )
        counted = valid.expand_as(loss)
        return (loss * counted).sum() / counted.sum().clamp(min=1)


class ComboLoss(nn.Module):
    """A weighted sum of segmentation losses.

    Args:
        terms: ``(name, weight, loss module)`` triples.
    """

    def __init__(self, terms: Sequence[tuple[str, float, nn.Module]]) -> None:
        super().__init__()
        self.names = [name for name, _, _ in terms]
        self.weights = [float(weight) for _, weight, _ in terms]
        self.losses = nn.ModuleList([loss for _, _, loss in terms])

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = logits.new_zeros(())
        for weight, loss in zip(self.weights, self.losses, strict=True):
            total = total + weight * loss(logits, target)
        return total


#: Short names in ``ComboLoss`` params and the losses they stand for.
ALIASES = {
    "ce": "CrossEntropyLoss",
    "bce": "BCEWithLogitsLoss",
    "focal": "FocalLoss",
    "dice": "DiceLoss",
    "tversky": "TverskyLoss",
}
#: The losses that fit segmentation (logits per pixel, class-index masks).
SEGMENTATION_LOSSES = (
    "CrossEntropyLoss",
    "BCEWithLogitsLoss",
    "FocalLoss",
    "DiceLoss",
    "TverskyLoss",
    "ComboLoss",
    "DiceCELoss",
)


def build_segmentation_loss(
    name: str,
    *,
    params: Mapping[str, Any],
    class_weights: torch.Tensor | None,
    ignore_index: int | None,
    num_classes: int,
) -> nn.Module:
    """Builds a segmentation loss by name.

    Class weights go to every term that takes them: CrossEntropy's ``weight``, Focal's
    ``alpha``, Dice's and Tversky's class average, BCE's ``pos_weight``.

    Args:
        name: One of :data:`SEGMENTATION_LOSSES`.
        params: The loss's keywords; for ``ComboLoss`` the terms and their weights, e.g.
            ``{"ce": 1, "dice": 3}`` or ``{"tversky": {"weight": 1, "alpha": 0.3}}``.
        class_weights: Per-class weights, or None.
        ignore_index: Mask value whose pixels are not counted.
        num_classes: Number of classes (background included).
    """
    if name == "ComboLoss":
        return _combo(params, class_weights, ignore_index)
    if name == "DiceCELoss":
        terms = {"ce": 1.0, "dice": 1.0, **params}
        return _combo(terms, class_weights, ignore_index)
    if name not in SEGMENTATION_LOSSES:
        raise ConfigError(
            f"loss '{name}' does not fit segmentation (logits per pixel, class-index masks)",
            where="loss.name",
            hint=f"valid: {', '.join(SEGMENTATION_LOSSES)}",
        )
    return _single(name, dict(params), class_weights, ignore_index, where="loss.params")


def _single(
    name: str,
    kwargs: dict[str, Any],
    class_weights: torch.Tensor | None,
    ignore_index: int | None,
    *,
    where: str,
) -> nn.Module:
    weight_key = {
        "CrossEntropyLoss": "weight",
        "FocalLoss": "alpha",
        "DiceLoss": "weight",
        "TverskyLoss": "weight",
        "BCEWithLogitsLoss": "pos_weight",
    }[name]
    if class_weights is not None:
        kwargs.setdefault(weight_key, class_weights)
    cls: Any = {
        "CrossEntropyLoss": nn.CrossEntropyLoss,
        "FocalLoss": FocalLoss,
        "DiceLoss": DiceLoss,
        "TverskyLoss": TverskyLoss,
        "BCEWithLogitsLoss": SegmentationBCELoss,
    }[name]
    ignore_kw = "ignore_index"
    if ignore_index is not None:
        kwargs.setdefault(ignore_kw, ignore_index)
    elif name == "CrossEntropyLoss":
        kwargs.setdefault(ignore_kw, -100)  # torch's own "nothing ignored"
    for key in ("weight", "alpha", "pos_weight"):
        if isinstance(kwargs.get(key), list):
            kwargs[key] = torch.tensor(kwargs[key], dtype=torch.float32)
    try:
        loss: nn.Module = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{name}: {exc}", where=where) from None
    return loss


def _combo(
    params: Mapping[str, Any], class_weights: torch.Tensor | None, ignore_index: int | None
) -> ComboLoss:
    if not params:
        raise ConfigError(
            "ComboLoss needs its terms and weights",
            where="loss.params",
            hint="e.g. params: {ce: 1, dice: 3} or {focal: 1, dice: 1}",
        )
    valid = [*ALIASES, *ALIASES.values()]
    terms = []
    for key, value in params.items():
        full = ALIASES.get(key, key)
        if full not in ALIASES.values():
            raise ConfigError(
                f"unknown ComboLoss term '{key}'",
                where=f"loss.params.{key}",
                hint=unknown_name_hint(key, valid),
            )
        kwargs = dict(value) if isinstance(value, Mapping) else {"weight": value}
        weight = kwargs.pop("weight", 1.0)
        if not isinstance(weight, int | float):
            raise ConfigError(
                f"the weight of '{key}' is not a number", where=f"loss.params.{key}"
            )
        loss = _single(full, kwargs, class_weights, ignore_index, where=f"loss.params.{key}")
        terms.append((full, float(weight), loss))
    return ComboLoss(terms)


def pixel_class_weights(counts: Sequence[int] | np.ndarray, method: str) -> torch.Tensor:
    """Class weights from per-class pixel counts, normalised to mean 1 over present classes.

    ``inverse``: 1 / frequency; ``inverse_sqrt``: 1 / sqrt(frequency); ``balanced``:
    total / (classes x count), which is ``inverse`` before normalisation. Classes with no
    pixels get 0.
    """
    values = np.asarray(counts, dtype=np.float64)
    present = values > 0
    if not present.any():
        return torch.ones(len(values))
    freq = np.where(present, values / values.sum(), 1.0)
    if method in ("inverse", "balanced"):
        raw = 1.0 / freq
    elif method == "inverse_sqrt":
        raw = 1.0 / np.sqrt(freq)
    else:
        raise ConfigError(
            f"unknown class weighting '{method}'",
            where="loss.class_weights",
            hint="valid: inverse, inverse_sqrt, balanced, or a list of numbers",
        )
    raw = np.where(present, raw, 0.0)
    raw = raw / raw[present].mean()
    return torch.tensor(raw, dtype=torch.float32)


def count_mask_pixels(
    masks: Iterable[np.ndarray], num_classes: int, ignore_index: int | None = None
) -> np.ndarray:
    """Pixels per class over ``masks`` (ignored and out-of-range values not counted)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for mask in masks:
        values = np.asarray(mask).ravel()
        if ignore_index is not None:
            values = values[values != ignore_index]
        counts += np.bincount(values[values < num_classes], minlength=num_classes)
    return counts
