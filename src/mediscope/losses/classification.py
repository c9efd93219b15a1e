"""Classification losses: FocalLoss, and adapters that let any fitting torch.nn loss
take logits ``(N, C)`` and class indices ``(N,)``."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mediscope.errors import ConfigError
from mediscope.params import check_keywords

# How a torch.nn loss sees logits and class indices: (input transform, target form).
TORCH_ADAPTERS: dict[str, tuple[str, str]] = {
    "CrossEntropyLoss": ("logits", "index"),
    "NLLLoss": ("log_softmax", "index"),
    "MultiMarginLoss": ("logits", "index"),
    "BCEWithLogitsLoss": ("logits", "onehot"),
    "BCELoss": ("sigmoid", "onehot"),
    "MultiLabelSoftMarginLoss": ("logits", "onehot"),
    "KLDivLoss": ("log_softmax", "onehot"),
    "MSELoss": ("softmax", "onehot"),
    "L1Loss": ("softmax", "onehot"),
    "SmoothL1Loss": ("softmax", "onehot"),
    "HuberLoss": ("softmax", "onehot"),
}


class FocalLoss(nn.Module):
    """Softmax focal loss: cross-entropy scaled by ``(1 - p_t) ** gamma``.

    Works for classification (logits ``(N, C)``, targets ``(N,)``) and segmentation
    (logits ``(N, C, H, W)``, targets ``(N, H, W)``); the mean is over counted targets.

    Args:
        gamma: Focusing parameter; 0 gives cross-entropy.
        alpha: Optional per-class weights (a list of C numbers) or one number for all.
        weight: Alias of a per-class ``alpha`` list (as torch losses name it).
        label_smoothing: Smoothing of the one-hot targets.
        reduction: ``mean``, ``sum`` or ``none``.
        ignore_index: Target value that is not counted (segmentation masks' void pixels).
    """

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: float | list[float] | torch.Tensor | None = None,
        weight: list[float] | torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        self.gamma = gamma
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.reduction = reduction
        per_class = alpha if alpha is not None else weight
        self.register_buffer(
            "alpha",
            torch.as_tensor(per_class, dtype=torch.float32) if per_class is not None else None,
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = torch.ones_like(target, dtype=torch.bool)
        if self.ignore_index is not None:
            valid = target != self.ignore_index
            target = torch.where(valid, target, torch.zeros_like(target))
        log_p = F.log_softmax(logits, dim=1)
        ce = F.nll_loss(log_p, target, reduction="none")
        if self.label_smoothing:
            ce = (1 - self.label_smoothing) * ce - self.label_smoothing * log_p.mean(dim=1)
        p_t = log_p.gather(1, target[:, None]).squeeze(1).exp()
        loss = (1 - p_t) ** self.gamma * ce
        alpha = self.alpha
        if isinstance(alpha, torch.Tensor):
            loss = loss * (alpha[target] if alpha.ndim else alpha)
        loss = loss * valid
        if self.reduction == "mean":
            return loss.sum() / valid.sum().clamp(min=1)
        if self.reduction == "sum":
            return loss.sum()
        return loss


class TorchLossAdapter(nn.Module):
    """Wraps a torch.nn loss so that it takes logits and class indices."""

    def __init__(self, loss: nn.Module, *, input_form: str, target_form: str) -> None:
        super().__init__()
        self.loss = loss
        self.input_form = input_form
        self.target_form = target_form

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = logits
        if self.input_form == "log_softmax":
            x = F.log_softmax(logits, dim=1)
        elif self.input_form == "softmax":
            x = F.softmax(logits, dim=1)
        elif self.input_form == "sigmoid":
            x = torch.sigmoid(logits)
        y: torch.Tensor = target
        if self.target_form == "onehot":
            y = F.one_hot(target, logits.shape[1]).to(logits.dtype)
        out: torch.Tensor = self.loss(x, y)
        return out


def build_classification_loss(
    name: str, *, params: dict[str, Any], class_weights: torch.Tensor | None = None
) -> nn.Module:
    """Builds a classification loss by name with its keywords and optional class weights."""
    from mediscope.registry import LOSSES

    cls = FocalLoss if name == "FocalLoss" else LOSSES.get(name)
    if name != "FocalLoss" and name not in TORCH_ADAPTERS:
        valid = ", ".join([*TORCH_ADAPTERS, "FocalLoss"])
        raise ConfigError(
            f"loss '{name}' does not fit classification (logits and class indices)",
            where="loss.name",
            hint=f"valid: {valid}",
        )
    check_keywords(cls, params, owner=name, section="loss.params")
    kwargs = dict(params)
    if class_weights is not None:
        key = {"FocalLoss": "alpha", "BCEWithLogitsLoss": "pos_weight"}.get(name, "weight")
        kwargs.setdefault(key, class_weights)
    try:
        loss: nn.Module = cls(**kwargs)
    except TypeError as exc:  # a value of the wrong type (a list for a tensor, ...)
        raise ConfigError(f"{name}: {exc}", where="loss.params") from None
    input_form, target_form = TORCH_ADAPTERS.get(name, ("logits", "index"))
    if input_form == "logits" and target_form == "index":
        return loss
    return TorchLossAdapter(loss, input_form=input_form, target_form=target_form)
