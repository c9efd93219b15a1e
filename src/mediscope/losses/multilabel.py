"""Multi-label losses: logits ``(N, L)`` against 0/1 targets ``(N, L)``, one sigmoid per
label (a label's presence says nothing about another's)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mediscope.errors import ConfigError
from mediscope.params import check_keywords


class SigmoidFocalLoss(nn.Module):
    """Focal loss of independent sigmoid outputs (Lin et al. 2017).

    ``-alpha_t (1 - p_t)^gamma log p_t`` per label, averaged; ``gamma = 0`` and
    ``alpha = None`` give the binary cross-entropy.

    Args:
        gamma: Focusing parameter (down-weights easy labels).
        alpha: Weight of the positives (``1 - alpha`` for negatives), or None for none.
        pos_weight: Optional per-label weight of the positives (a list of L numbers).
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | None = None,
        pos_weight: torch.Tensor | list[float] | None = None,
    ) -> None:
        super().__init__()
        self.gamma = float(gamma)
        self.alpha = alpha
        self.register_buffer(
            "pos_weight",
            torch.as_tensor(pos_weight, dtype=torch.float32) if pos_weight is not None else None,
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(logits.dtype)
        ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * target + (1 - p) * (1 - target)
        loss = (1 - p_t) ** self.gamma * ce
        if self.alpha is not None:
            loss = loss * (self.alpha * target + (1 - self.alpha) * (1 - target))
        if isinstance(self.pos_weight, torch.Tensor):
            loss = loss * (1 + (self.pos_weight - 1) * target)
        return loss.mean()


#: The losses a multi-label task takes.
MULTILABEL_LOSSES = ("BCEWithLogitsLoss", "FocalLoss", "MultiLabelSoftMarginLoss")


def build_multilabel_loss(
    name: str, *, params: dict[str, Any], pos_weight: torch.Tensor | None = None
) -> nn.Module:
    """Builds a multi-label loss: ``BCEWithLogitsLoss``, ``FocalLoss`` (sigmoid focal)
    or ``MultiLabelSoftMarginLoss``, with optional per-label positive weights."""
    classes: dict[str, type[nn.Module]] = {
        "BCEWithLogitsLoss": nn.BCEWithLogitsLoss,
        "FocalLoss": SigmoidFocalLoss,
        "MultiLabelSoftMarginLoss": nn.MultiLabelSoftMarginLoss,
    }
    if name not in classes:
        raise ConfigError(
            f"loss '{name}' does not fit multi-label classification (logits and 0/1 targets)",
            where="loss.name",
            hint=f"valid: {', '.join(MULTILABEL_LOSSES)}",
        )
    cls = classes[name]
    check_keywords(cls, params, owner=name, section="loss.params")
    kwargs = dict(params)
    if pos_weight is not None:
        key = "weight" if name == "MultiLabelSoftMarginLoss" else "pos_weight"
        kwargs.setdefault(key, pos_weight)
    try:
        loss = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{name}: {exc}", where="loss.params") from None
    return loss
