"""Multi-label metrics and losses: hand-computed cases and sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mediscope.losses.multilabel import SigmoidFocalLoss, build_multilabel_loss
from mediscope.metrics.multilabel import (
    average_precision,
    binary_ece,
    f1_thresholds,
    multilabel_report,
)

CLASSES = ["a", "b", "c"]


def test_report_hand_computed() -> None:
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
    probs = np.array([[0.9, 0.2, 0.1], [0.6, 0.4, 0.2], [0.3, 0.8, 0.3], [0.1, 0.7, 0.4]])
    m = multilabel_report(targets, probs, CLASSES)
    # a: called 0.9, 0.6 -> tp 2, fp 0; b: called 0.8, 0.7 -> tp 1, fp 1, fn 1
    assert m["f1/a"] == 1.0 and m["f1/b"] == 0.5
    assert math.isnan(m["f1/c"]) and m["support/c"] == 0  # no positives: left out
    assert m["f1_macro"] == 0.75
    assert m["f1_micro"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert m["exact_match"] == 0.5  # images 1 and 3 all right
    assert m["specificity/b"] == 0.5 and m["recall/b"] == 0.5
    assert m["auroc/a"] == 1.0 and m["auroc/b"] == 0.75
    assert m["auroc_macro"] == pytest.approx(0.875)
    # with a chosen threshold for b at 0.75, b is right on every image
    m2 = multilabel_report(targets, probs, CLASSES, {"threshold/b": 0.75})
    assert m2["f1/b"] == pytest.approx(2 / 3) and m2["precision/b"] == 1.0


def test_report_matches_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, (120, 4))
    probs = np.clip(0.35 * targets + rng.random((120, 4)) * 0.7, 0, 1)
    names = list("wxyz")
    m = multilabel_report(targets, probs, names)
    called = probs >= 0.5
    assert m["f1_macro"] == pytest.approx(metrics.f1_score(targets, called, average="macro"))
    assert m["f1_micro"] == pytest.approx(metrics.f1_score(targets, called, average="micro"))
    assert m["exact_match"] == pytest.approx(metrics.accuracy_score(targets, called))
    assert m["auroc_macro"] == pytest.approx(metrics.roc_auc_score(targets, probs))
    assert m["ap_macro"] == pytest.approx(metrics.average_precision_score(targets, probs))
    for c, name in enumerate(names):
        assert m[f"ap/{name}"] == pytest.approx(
            metrics.average_precision_score(targets[:, c], probs[:, c])
        )


def test_average_precision_with_ties_matches_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200), 1)
    assert average_precision(y, s) == pytest.approx(metrics.average_precision_score(y, s))


def test_f1_thresholds_maximise_f1() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    targets = rng.integers(0, 2, (150, 2))
    probs = np.clip(0.3 * targets + rng.random((150, 2)) * 0.7, 0, 1)
    chosen = f1_thresholds(targets, probs, ["p", "q"])
    for c, name in enumerate(["p", "q"]):
        best = max(
            metrics.f1_score(targets[:, c], probs[:, c] >= t) for t in np.unique(probs[:, c])
        )
        at = metrics.f1_score(targets[:, c], probs[:, c] >= chosen[f"threshold/{name}"])
        assert at == pytest.approx(best)


def test_binary_ece_hand_computed() -> None:
    # all at 0.9, 3 of 4 positive: gap 0.15; two bins 0.2 (1 of 2) and 0.8 (2 of 2)
    assert binary_ece(np.array([1, 1, 1, 0]), np.full(4, 0.9)) == pytest.approx(0.15)
    t = np.array([1, 0, 1, 1])
    p = np.array([0.2, 0.2, 0.8, 0.8])
    assert binary_ece(t, p) == pytest.approx(0.5 * 0.3 + 0.5 * 0.2)


def test_sigmoid_focal_loss() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert SigmoidFocalLoss(gamma=0.0)(logits, target).item() == pytest.approx(bce.item())
    p = torch.sigmoid(logits)
    p_t = torch.where(target > 0, p, 1 - p)
    by_hand = (-((1 - p_t) ** 2) * torch.log(p_t)).mean()
    assert SigmoidFocalLoss(gamma=2.0)(logits, target).item() == pytest.approx(by_hand.item())
    loss = build_multilabel_loss("BCEWithLogitsLoss", params={})
    assert loss(logits, target).item() == pytest.approx(bce.item())


def test_unknown_loss_is_a_config_error() -> None:
    from mediscope.errors import ConfigError

    with pytest.raises(ConfigError, match="multi-label"):
        build_multilabel_loss("CrossEntropyLoss", params={})
