"""Temperature scaling and operating points: hand-computed cases and references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mediscope.metrics.calibration import (
    apply_temperature,
    apply_temperature_sigmoid,
    expected_calibration_error,
    fit_temperature,
)
from mediscope.metrics.operating_points import (
    choose_thresholds,
    one_hot,
    operating_point_metrics,
    roc_points,
    sensitivity_specificity,
    threshold_for_sensitivity,
    threshold_for_specificity,
    youden_threshold,
)


def _overconfident(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of 0.9 for the predicted class, right 75% of the time."""
    labels = np.r_[np.zeros(3 * n // 4, int), np.ones(n // 4, int)]
    probs = np.tile([0.9, 0.1], (n, 1))
    return labels, probs


def test_temperature_hand_computed() -> None:
    # margin log(9) between the two logits; 75% right: sigmoid(log 9 / T) = 0.75
    # so log 9 / T = log 3 and T = 2 exactly
    labels, probs = _overconfident()
    t = fit_temperature(labels, probs)
    assert t == pytest.approx(2.0, abs=1e-4)
    calibrated = apply_temperature(probs, t)
    assert calibrated[0].tolist() == pytest.approx([0.75, 0.25], abs=1e-4)
    assert expected_calibration_error(labels, probs) == pytest.approx(0.15)
    assert expected_calibration_error(labels, calibrated) == pytest.approx(0.0, abs=1e-4)


def test_temperature_keeps_the_top_class_and_sums_to_one() -> None:
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(5) * 0.3, size=50)
    for t in (0.3, 1.7, 5.0):
        out = apply_temperature(probs, t)
        assert np.allclose(out.sum(axis=1), 1.0)
        assert (out.argmax(axis=1) == probs.argmax(axis=1)).all()


def test_temperature_matches_sklearn() -> None:
    calibration = pytest.importorskip("sklearn.calibration")
    if not hasattr(calibration, "_TemperatureScaling"):
        pytest.skip("this sklearn has no temperature scaling")
    rng = np.random.default_rng(2)
    n, c = 300, 4
    labels = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) * 3
    logits[np.arange(n), labels] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    ours = fit_temperature(labels, probs)
    reference = calibration._TemperatureScaling().fit(np.log(probs), labels)
    assert ours == pytest.approx(1.0 / float(reference.beta_), rel=1e-3)


def test_multilabel_temperature_hand_computed() -> None:
    # every label predicted 0.9, true in 75% of the images: T = log 9 / log 3 = 2
    targets = np.r_[np.ones((300, 2)), np.zeros((100, 2))]
    probs = np.full((400, 2), 0.9)
    t = fit_temperature(targets, probs, multilabel=True)
    assert t == pytest.approx(2.0, abs=1e-4)
    assert apply_temperature_sigmoid(probs, t)[0, 0] == pytest.approx(0.75, abs=1e-4)


def test_roc_points_match_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200), 2)  # ties
    ours = roc_points(y, s)
    fpr, tpr, thr = metrics.roc_curve(y, s, drop_intermediate=False)
    assert np.allclose(ours.fpr, fpr)
    assert np.allclose(ours.tpr, tpr)
    assert np.allclose(ours.thresholds[1:], thr[1:])


def test_thresholds_hand_computed() -> None:
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    s = np.array([0.95, 0.8, 0.6, 0.3, 0.7, 0.4, 0.2, 0.1])
    # sensitivity >= 0.75 first at 0.6 (0.95, 0.8, 0.6 found); specificity there 3/4
    assert threshold_for_sensitivity(y, s, 0.75) == 0.6
    assert sensitivity_specificity(y, s, 0.6) == (0.75, 0.75)
    # specificity >= 1: nothing negative called positive, lowest such threshold 0.8
    assert threshold_for_specificity(y, s, 1.0) == 0.8
    assert sensitivity_specificity(y, s, 0.8) == (0.5, 1.0)
    # Youden's J: 0.8 -> 0.5, 0.6 -> 0.5, 0.3 -> 1 - 0.5 = 0.5 ... highest on ties: 0.8
    assert youden_threshold(y, s) == 0.8


def test_youden_matches_sklearn_roc() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 300)
    s = rng.random(300) + 0.4 * y
    fpr, tpr, thr = metrics.roc_curve(y, s)
    assert youden_threshold(y, s) == pytest.approx(thr[np.argmax(tpr - fpr)])
    t = threshold_for_sensitivity(y, s, 0.9)
    expected = thr[np.flatnonzero(tpr >= 0.9)[0]]
    assert t == pytest.approx(expected)
    sens, spec = sensitivity_specificity(y, s, t)
    i = np.flatnonzero(thr == expected)[0]
    assert (sens, spec) == pytest.approx((tpr[i], 1 - fpr[i]))


def test_choose_and_measure_per_class() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.4, 0.5, 0.1],
            [0.2, 0.7, 0.1],
            [0.5, 0.4, 0.1],
            [0.1, 0.1, 0.8],
            [0.1, 0.3, 0.6],
        ]
    )
    targets = one_hot(labels, 3)
    chosen = choose_thresholds(targets, probs, ["a", "b", "c"], {"sensitivity": 1.0})
    assert chosen["op_target_sensitivity"] == 1.0
    # class a: positives score 0.8, 0.4 -> threshold 0.4; negatives 0.2, 0.5, 0.1, 0.1
    assert chosen["op_threshold/a"] == 0.4
    measured = operating_point_metrics(targets, probs, ["a", "b", "c"], chosen)
    assert measured["op_sensitivity/a"] == 1.0
    assert measured["op_specificity/a"] == 0.75  # 0.5 is called positive
    assert chosen["youden_threshold/c"] == 0.6
    assert measured["youden_specificity/c"] == 1.0


def test_undefined_without_positives() -> None:
    y = np.zeros(4, int)
    s = np.array([0.1, 0.2, 0.3, 0.4])
    assert math.isnan(threshold_for_sensitivity(y, s, 0.9))
    assert math.isnan(youden_threshold(y, s))
    assert all(math.isnan(v) for v in sensitivity_specificity(y, s, float("nan")))
