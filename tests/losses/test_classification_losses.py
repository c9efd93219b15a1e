"""Classification losses: FocalLoss by hand, adapters for torch.nn losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mediscope.errors import ConfigError
from mediscope.losses.classification import FocalLoss, build_classification_loss

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
TARGET = torch.tensor([0, 2])


def test_focal_with_gamma_zero_is_cross_entropy() -> None:
    assert FocalLoss(gamma=0.0)(LOGITS, TARGET) == pytest.approx(
        F.cross_entropy(LOGITS, TARGET).item()
    )


def test_focal_by_hand() -> None:
    probs = LOGITS.softmax(dim=1)
    p0, p1 = probs[0, 0].item(), probs[1, 2].item()
    alpha = [0.25, 1.0, 0.5]
    expected = (
        alpha[0] * (1 - p0) ** 2 * -math.log(p0) + alpha[2] * (1 - p1) ** 2 * -math.log(p1)
    ) / 2
    assert FocalLoss(gamma=2.0, alpha=alpha)(LOGITS, TARGET).item() == pytest.approx(expected)


def test_torch_losses_are_adapted_to_logits_and_indices() -> None:
    bce = build_classification_loss("BCEWithLogitsLoss", params={})
    onehot = F.one_hot(TARGET, 3).float()
    assert bce(LOGITS, TARGET).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(LOGITS, onehot).item()
    )
    nll = build_classification_loss("NLLLoss", params={})
    assert nll(LOGITS, TARGET).item() == pytest.approx(F.cross_entropy(LOGITS, TARGET).item())
    ce = build_classification_loss("CrossEntropyLoss", params={"label_smoothing": 0.1})
    assert ce(LOGITS, TARGET).item() == pytest.approx(
        F.cross_entropy(LOGITS, TARGET, label_smoothing=0.1).item()
    )


def test_class_weights_and_bad_losses() -> None:
    weights = torch.tensor([1.0, 2.0, 3.0])
    ce = build_classification_loss("CrossEntropyLoss", params={}, class_weights=weights)
    assert ce(LOGITS, TARGET).item() == pytest.approx(
        F.cross_entropy(LOGITS, TARGET, weight=weights).item()
    )
    with pytest.raises(ConfigError, match="does not fit classification"):
        build_classification_loss("TripletMarginLoss", params={})
    with pytest.raises(
        ConfigError,
        match="loss.params.gamma: CrossEntropyLoss takes no keyword 'gamma'; valid: weight, ",
    ):
        build_classification_loss("CrossEntropyLoss", params={"gamma": 2})
