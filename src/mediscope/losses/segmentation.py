"""Segmentation losses over logits ``(B, C, H, W)`` and class-index targets ``(B, H, W)``.

Every loss here skips pixels equal to ``ignore_index``: they add nothing to the loss
and nothing to its gradient. ``build_segmentation_loss`` is the one place where the
config is mapped to these constructors. ``pixel_class_weights`` turns per-class pixel
counts (:func:`mediscope.data.masks.count_mask_pixels`) into class weights.

Example:
    >>> import torch
    >>> loss = build_segmentation_loss(
    ...     "ComboLoss", params={"ce": 1, "dice": 3}, class_weights=None,
    ...     ignore_index=255, num_classes=3)
    >>> float(loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))) > 0
    True
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mediscope.errors import ConfigError
from mediscope.losses.classification import FocalLoss
from mediscope.registry import unknown_name_hint

WeightMethod = Literal["inverse", "inverse_sqrt", "balanced"]
Reduction = Literal["mean", "sum", "none"]
Weights = Sequence[float] | torch.Tensor | None

#: Short names accepted in ``ComboLoss`` terms, and the losses they stand for.
ALIASES = {
    "ce": "CrossEntropyLoss",
    "bce": "BCEWithLogitsLoss",
    "focal": "FocalLoss",
    "dice": "DiceLoss",
    "tversky": "TverskyLoss",
}
#: The losses that fit segmentation (logits per pixel, class-index masks).
SEGMENTATION_LOSSES = (*ALIASES.values(), "ComboLoss", "DiceCELoss")


def _weight_buffer(values: Weights) -> torch.Tensor | None:
    return torch.as_tensor(values, dtype=torch.float32).clone() if values is not None else None


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be mean, sum or none, not '{reduction}'")


def _valid_and_onehot(
    target: torch.Tensor, num_classes: int, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Counted pixels ``(B, 1, H, W)`` and one-hot targets ``(B, C, H, W)``, both float32
    and zero at ignored pixels."""
    valid = torch.ones_like(target, dtype=torch.bool)
    if ignore_index is not None:
        valid = target != ignore_index
    # Ignored pixels get class 0 so that one_hot accepts them; the mask zeroes them.
    safe = torch.where(valid, target, torch.zeros_like(target))
    mask = valid[:, None].float()
    onehot = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).float() * mask
    return mask, onehot


class TverskyLoss(nn.Module):
    """Soft multi-class Tversky loss over softmax probabilities.

    Per class c, over the whole batch (sums over B, H and W of the counted pixels):
    ``TI_c = (TP + smooth) / (TP + alpha FP + beta FN + smooth)`` with soft counts
    ``TP = sum p y``, ``FP = sum p (1 - y)``, ``FN = sum (1 - p) y``; the loss of class
    c is ``1 - TI_c``. ``alpha`` weighs false positives and ``beta`` false negatives:
    ``beta > alpha`` punishes missed object pixels more (better recall), and
    ``alpha = beta = 0.5`` is the Dice loss.

    Args:
        alpha: Weight of the false positives.
        beta: Weight of the false negatives.
        smooth: Added to numerator and denominator, so that a class absent from target
            and prediction scores 1 (loss 0), never NaN.
        ignore_index: Target value whose pixels are not counted.
        include_background: Count class 0 too; False leaves it out of the average.
        weight: Per-class weights (C numbers) of the class average.
        reduction: ``mean``: the (weighted) mean of the per-class losses; ``sum``: their
            (weighted) sum; ``none``: the per-class losses, times their weights.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.5,
        beta: float = 0.5,
        smooth: float = 1.0,
        ignore_index: int | None = None,
        include_background: bool = True,
        weight: Weights = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        if alpha < 0 or beta < 0 or smooth < 0:
            raise ValueError("alpha, beta and smooth must be >= 0")
        _check_reduction(reduction)
        self.alpha, self.beta, self.smooth = float(alpha), float(beta), float(smooth)
        self.ignore_index = ignore_index
        self.include_background = include_background
        self.reduction = reduction
        self.weight: torch.Tensor | None
        self.register_buffer("weight", _weight_buffer(weight))

    def class_scores(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Soft Tversky index per class, ``(C,)``."""
        mask, onehot = _valid_and_onehot(target, logits.shape[1], self.ignore_index)
        # float32: half-precision sums over millions of pixels would overflow.
        probs = logits.float().softmax(dim=1) * mask
        dims = (0, 2, 3)
        tp = (probs * onehot).sum(dims)
        fp = probs.sum(dims) - tp
        fn = onehot.sum(dims) - tp
        denominator = tp + self.alpha * fp + self.beta * fn + self.smooth
        return (tp + self.smooth) / denominator

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = 1 - self.class_scores(logits, target)
        weight = self.weight
        if not self.include_background:
            loss = loss[1:]
            weight = weight[1:] if weight is not None else None
        if weight is not None:
            loss = loss * weight
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        total = weight.sum() if weight is not None else loss.new_tensor(float(loss.numel()))
        return loss.sum() / total.clamp(min=1e-12)


class DiceLoss(TverskyLoss):
    """Soft multi-class Dice loss: ``1 - (TP + smooth) / (TP + (FP + FN) / 2 + smooth)``.

    That is ``1 - (2 TP + 2 smooth) / (2 TP + FP + FN + 2 smooth)``: the Dice
    coefficient with a smoothing term, exactly :class:`TverskyLoss` with
    ``alpha = beta = 0.5`` and the same ``smooth``. Softmax probabilities, each class
    counted over the whole batch (sums over B, H and W), then the mean over classes
    (weighted by ``weight`` when given).

    Args:
        smooth: Added to numerator and denominator, so that a class absent from target
            and prediction scores 1 (loss 0), never NaN.
        ignore_index: Target value whose pixels are not counted.
        include_background: Count class 0 too; False leaves it out of the average.
        weight: Per-class weights (C numbers) of the class average.
        reduction: ``mean``, ``sum`` or ``none`` (per-class losses), as in TverskyLoss.
    """

    def __init__(
        self,
        *,
        smooth: float = 1.0,
        ignore_index: int | None = None,
        include_background: bool = True,
        weight: Weights = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(
            alpha=0.5,
            beta=0.5,
            smooth=smooth,
            ignore_index=ignore_index,
            include_background=include_background,
            weight=weight,
            reduction=reduction,
        )


class SegmentationBCELoss(nn.Module):
    """BCE with logits on one-hot targets: each class channel is an independent sigmoid.

    The mean is over the counted pixels times the channels; ignored pixels add nothing.

    Args:
        pos_weight: Per-class weight of the positive pixels of each channel (torch's
            ``pos_weight``); where the class weights go by default.
        weight: Per-class weight of each channel's whole term.
        ignore_index: Target value whose pixels are not counted.
        reduction: ``mean``, ``sum`` or ``none`` (per pixel and channel, ``(B, C, H, W)``).
    """

    def __init__(
        self,
        *,
        pos_weight: Weights = None,
        weight: Weights = None,
        ignore_index: int | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        _check_reduction(reduction)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.pos_weight: torch.Tensor | None
        self.weight: torch.Tensor | None
        self.register_buffer("pos_weight", _weight_buffer(pos_weight))
        self.register_buffer("weight", _weight_buffer(weight))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mask, onehot = _valid_and_onehot(target, logits.shape[1], self.ignore_index)
        per_channel = (1, -1, 1, 1)
        pos_weight = self.pos_weight.view(per_channel) if self.pos_weight is not None else None
        loss = F.binary_cross_entropy_with_logits(
            logits.float(), onehot, pos_weight=pos_weight, reduction="none"
        )
        if self.weight is not None:
            loss = loss * self.weight.view(per_channel)
        loss = loss * mask
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return loss.sum() / (mask.sum() * logits.shape[1]).clamp(min=1)


class ComboLoss(nn.Module):
    """A weighted sum of segmentation losses, e.g. ``terms={"ce": 1, "dice": 3}``.

    A term is named by its short alias (ce, bce, focal, dice, tversky) or full name
    (CrossEntropyLoss, ...). Its value is the term's weight, or a mapping with an
    optional ``weight`` (default 1) and the term's own keywords, e.g.
    ``{"tversky": {"weight": 1, "alpha": 0.3, "beta": 0.7}}``.

    Args:
        terms: Term name → weight or ``{weight, keywords}``.
        weight: Per-class weights handed to every term that takes them (see
            :func:`build_segmentation_loss`).
        ignore_index: Target value whose pixels no term counts.
        num_classes: Checks the length of per-class lists when given.

    Raises:
        ConfigError: An unknown term, a bad weight or a bad keyword of a term.
    """

    def __init__(
        self,
        *,
        terms: Mapping[str, float | Mapping[str, Any]],
        weight: Weights = None,
        ignore_index: int | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if not terms:
            raise ConfigError(
                "ComboLoss needs its terms and their weights",
                where="loss.params",
                hint="e.g. params: {ce: 1, dice: 3} or {focal: 1, dice: 1}",
            )
        class_weights = _weight_buffer(weight)
        self.names: list[str] = []
        self.weights: list[float] = []
        losses = []
        for key, value in terms.items():
            name = _term_name(key)
            if name in self.names:
                raise ConfigError(
                    f"ComboLoss term {name} is given twice", where=f"loss.params.{key}"
                )
            term_weight, params = _term_weight_and_params(key, value)
            losses.append(
                _build_single(
                    name,
                    params,
                    class_weights=class_weights,
                    ignore_index=ignore_index,
                    num_classes=num_classes,
                    where=f"loss.params.{key}",
                )
            )
            self.names.append(name)
            self.weights.append(term_weight)
        self.losses = nn.ModuleList(losses)

    def term_values(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each term's value before weighting, by its full name (for logging)."""
        pairs = zip(self.names, self.losses, strict=True)
        return {name: loss(logits, target) for name, loss in pairs}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = logits.new_zeros((), dtype=torch.float32)
        for weight, loss in zip(self.weights, self.losses, strict=True):
            total = total + weight * loss(logits, target)
        return total


class DiceCELoss(ComboLoss):
    """Cross-entropy + Dice with equal weights: the default segmentation loss.

    Args:
        ce: Weight of the cross-entropy, or ``{weight, keywords}`` as in ComboLoss.
        dice: Weight of the Dice loss, or ``{weight, keywords}``.
        weight: Per-class weights (CE ``weight``, Dice class average).
        ignore_index: Target value whose pixels are not counted.
        num_classes: Checks the length of per-class lists when given.
    """

    def __init__(
        self,
        *,
        ce: float | Mapping[str, Any] = 1.0,
        dice: float | Mapping[str, Any] = 1.0,
        weight: Weights = None,
        ignore_index: int | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(
            terms={"ce": ce, "dice": dice},
            weight=weight,
            ignore_index=ignore_index,
            num_classes=num_classes,
        )


def _term_name(key: str) -> str:
    name = ALIASES.get(key, key)
    if name not in ALIASES.values():
        raise ConfigError(
            f"unknown ComboLoss term '{key}'",
            where="loss.params",
            hint=unknown_name_hint(key, [*ALIASES, *ALIASES.values()]),
        )
    return name


def _term_weight_and_params(key: str, value: object) -> tuple[float, dict[str, Any]]:
    params = dict(value) if isinstance(value, Mapping) else {"weight": value}
    weight = params.pop("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
        raise ConfigError(
            f"the weight of ComboLoss term '{key}' is {weight!r}, not a number >= 0",
            where=f"loss.params.{key}",
            hint=f"e.g. {key}: 1.0, or {key}: {{weight: 1.0, ...keywords}}",
        )
    return float(weight), params


# Where each single loss takes per-class weights. BCE takes them as pos_weight: the
# rare class's positive pixels count more, which is what frequency weights are for.
_WEIGHT_KEYWORD = {
    "CrossEntropyLoss": "weight",
    "FocalLoss": "alpha",
    "DiceLoss": "weight",
    "TverskyLoss": "weight",
    "BCEWithLogitsLoss": "pos_weight",
}
_SINGLE: dict[str, Any] = {
    "CrossEntropyLoss": nn.CrossEntropyLoss,
    "FocalLoss": FocalLoss,
    "DiceLoss": DiceLoss,
    "TverskyLoss": TverskyLoss,
    "BCEWithLogitsLoss": SegmentationBCELoss,
}


def _build_single(
    name: str,
    params: Mapping[str, Any],
    *,
    class_weights: torch.Tensor | None,
    ignore_index: int | None,
    num_classes: int | None,
    where: str,
) -> nn.Module:
    """One of the single losses with its keywords; class weights and ignore_index are
    defaults that the loss's own keywords override."""
    cls = _SINGLE[name]
    kwargs = dict(params)
    # Per-class numbers the loss's own keywords give win over the class weights.
    if class_weights is not None and not {"weight", "alpha", "pos_weight"} & set(kwargs):
        kwargs[_WEIGHT_KEYWORD[name]] = class_weights
    if ignore_index is not None:
        kwargs.setdefault("ignore_index", ignore_index)
    elif name == "CrossEntropyLoss":
        kwargs.setdefault("ignore_index", -100)  # torch's "nothing ignored"
    for key in ("weight", "alpha", "pos_weight"):
        if isinstance(kwargs.get(key), list | tuple):
            _check_length(name, key, kwargs[key], num_classes, where)
            kwargs[key] = torch.tensor(kwargs[key], dtype=torch.float32)
    _check_keywords(cls, name, kwargs, where)
    try:
        loss: nn.Module = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {exc}", where=where) from None
    return loss


def _check_length(
    name: str, key: str, values: Sequence[float], num_classes: int | None, where: str
) -> None:
    if num_classes is not None and len(values) != num_classes:
        raise ConfigError(
            f"{name}: {key} has {len(values)} values for {num_classes} classes",
            where=where,
            hint="give one number per class, background first",
        )


def _check_keywords(cls: Any, name: str, kwargs: Mapping[str, Any], where: str) -> None:
    accepted = list(inspect.signature(cls).parameters)
    for key in kwargs:
        if key not in accepted:
            raise ConfigError(
                f"{name} has no keyword '{key}'",
                where=where,
                hint=unknown_name_hint(key, accepted),
            )


def build_segmentation_loss(
    name: str,
    *,
    params: Mapping[str, Any],
    class_weights: torch.Tensor | None,
    ignore_index: int | None,
    num_classes: int,
) -> nn.Module:
    """Builds a segmentation loss by name: the one place that maps ``loss:`` to a module.

    Class weights go to every term that takes them: CrossEntropy's ``weight`` (its mean
    is then divided by the summed weights of the counted pixels, as torch does), Focal's
    ``alpha``, Dice's and Tversky's class average, and BCE's ``pos_weight`` (each
    channel's positive pixels). A keyword given in ``params`` wins over them.
    ``ignore_index`` reaches every term.

    Args:
        name: One of :data:`SEGMENTATION_LOSSES`.
        params: The loss's keywords; for ``ComboLoss`` its terms and their weights, e.g.
            ``{"ce": 1, "dice": 3}`` or ``{"tversky": {"weight": 1, "alpha": 0.3}}``;
            for ``DiceCELoss`` optionally ``ce`` and ``dice`` weights.
        class_weights: Per-class weights ``(num_classes,)``, or None.
        ignore_index: Mask value whose pixels are not counted, or None.
        num_classes: Number of classes, background included.

    Returns:
        A module called as ``loss(logits (B, C, H, W), target (B, H, W))``.

    Raises:
        ConfigError: A loss that does not fit segmentation, a bad keyword, a bad
            ComboLoss term or class weights of the wrong length.
    """
    if name not in SEGMENTATION_LOSSES:
        raise ConfigError(
            f"loss '{name}' does not fit segmentation (logits per pixel, class-index masks)",
            where="loss.name",
            hint=unknown_name_hint(name, list(SEGMENTATION_LOSSES)),
        )
    if class_weights is not None and len(class_weights) != num_classes:
        raise ConfigError(
            f"{len(class_weights)} class weights for {num_classes} classes",
            where="loss.class_weights",
            hint="give one weight per class, background first",
        )
    common: dict[str, Any] = {
        "weight": class_weights,
        "ignore_index": ignore_index,
        "num_classes": num_classes,
    }
    if name == "ComboLoss":
        return ComboLoss(terms=params, **common)
    if name == "DiceCELoss":
        for key in params:
            if key not in ("ce", "dice"):
                raise ConfigError(
                    f"DiceCELoss has no keyword '{key}'",
                    where="loss.params",
                    hint="valid: ce, dice (weights, or {weight, keywords}); "
                    "use ComboLoss for other terms",
                )
        return DiceCELoss(**params, **common)
    return _build_single(
        name,
        params,
        class_weights=class_weights,
        ignore_index=ignore_index,
        num_classes=num_classes,
        where="loss.params",
    )


def pixel_class_weights(counts: Sequence[int] | np.ndarray, method: WeightMethod) -> torch.Tensor:
    """Class weights from per-class pixel counts, normalised to mean 1 over present classes.

    ``inverse``: 1 / frequency; ``inverse_sqrt``: 1 / sqrt(frequency) (milder);
    ``balanced``: total / (classes x count) as in scikit-learn, which differs from
    ``inverse`` only by a constant factor and so gives the same normalised weights.
    Classes with no pixels get 0; with no pixels at all every class gets 1.

    Args:
        counts: Pixels per class (:func:`mediscope.data.masks.count_mask_pixels`).
        method: ``inverse``, ``inverse_sqrt`` or ``balanced``.

    Returns:
        A float32 tensor ``(C,)``.

    Raises:
        ConfigError: An unknown method.

    Example:
        >>> pixel_class_weights([300, 100, 0], "inverse").tolist()
        [0.5, 1.5, 0.0]
    """
    values = np.asarray(counts, dtype=np.float64)
    if (values < 0).any():
        raise ValueError(f"pixel counts must be >= 0, got {values.tolist()}")
    if method not in ("inverse", "inverse_sqrt", "balanced"):
        raise ConfigError(
            f"unknown class weighting '{method}'",
            where="loss.class_weights",
            hint=unknown_name_hint(method, ["inverse", "inverse_sqrt", "balanced"])
            + " (or a list of numbers)",
        )
    present = values > 0
    if not present.any():
        return torch.ones(len(values), dtype=torch.float32)
    freq = np.where(present, values / values.sum(), 1.0)
    if method == "inverse":
        raw = 1.0 / freq
    elif method == "inverse_sqrt":
        raw = 1.0 / np.sqrt(freq)
    else:
        raw = values.sum() / (present.sum() * np.where(present, values, 1.0))
    raw = np.where(present, raw, 0.0)
    return torch.tensor(raw / raw[present].mean(), dtype=torch.float32)
