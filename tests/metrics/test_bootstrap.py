"""Bootstrap confidence intervals: known cases, equality with the reference metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mediscope.metrics.bootstrap import (
    Interval,
    binary_auroc,
    bootstrap,
    classification_intervals,
    classification_metrics,
    interval_keys,
    interval_of,
    is_metric,
    percentile_interval,
    segmentation_intervals,
    without_intervals,
)
from mediscope.metrics.classification import classification_report
from mediscope.metrics.detection import detection_intervals, evaluate_detections, image_f1
from mediscope.metrics.segmentation import confusion_matrix, segmentation_report


def test_accuracy_interval_matches_the_normal_approximation() -> None:
    # a fixed prediction vector: 400 images, 320 right; the bootstrap distribution of the
    # accuracy is binomial/n, so its 95 % interval is p ± 1.96 sqrt(p(1-p)/n) to ~0.01
    n, right = 400, 320
    labels = np.zeros(n, dtype=int)
    probs = np.zeros((n, 2))
    probs[:right, 0] = 1.0
    probs[right:, 1] = 1.0
    intervals = classification_intervals(labels, probs, ["a", "b"], resamples=4000, seed=1)
    p = right / n
    half = 1.959964 * math.sqrt(p * (1 - p) / n)
    assert intervals["accuracy"].low == pytest.approx(p - half, abs=0.01)
    assert intervals["accuracy"].high == pytest.approx(p + half, abs=0.01)
    assert intervals["accuracy"].low < p < intervals["accuracy"].high


def test_interval_level_and_seed() -> None:
    values = np.random.default_rng(0).normal(size=200)
    mean = lambda idx: {"mean": float(values[idx].mean())}  # noqa: E731
    wide = bootstrap(200, mean, resamples=2000, confidence=0.99, seed=3)["mean"]
    narrow = bootstrap(200, mean, resamples=2000, confidence=0.80, seed=3)["mean"]
    assert wide.low < narrow.low < narrow.high < wide.high
    # the standard error of a mean of 200 unit normals is 1/sqrt(200)
    se = 1 / math.sqrt(200)
    assert wide.high - wide.low == pytest.approx(2 * 2.5758 * se, rel=0.15)
    again = bootstrap(200, mean, resamples=2000, confidence=0.99, seed=3)["mean"]
    assert again == wide  # seeded: reports are reproducible
    other = bootstrap(200, mean, resamples=2000, confidence=0.99, seed=4)["mean"]
    assert other != wide


def test_percentile_interval_ignores_undefined_values() -> None:
    values = np.array([0.1, 0.2, np.nan, 0.3, 0.4])
    interval = percentile_interval(values, 0.5)
    assert interval.low == pytest.approx(np.quantile([0.1, 0.2, 0.3, 0.4], 0.25))
    mostly_undefined = np.array([0.5, np.nan, np.nan, np.nan])
    assert math.isnan(percentile_interval(mostly_undefined, 0.95).low)
    assert bootstrap(0, lambda idx: {"x": 1.0}) == {}
    with pytest.raises(ValueError, match="confidence"):
        bootstrap(3, lambda idx: {"x": 1.0}, confidence=1.5)


@pytest.mark.parametrize("seed", range(6))
def test_fast_classification_metrics_equal_the_report(seed: int) -> None:
    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c", "d"]
    n = 60
    labels = rng.integers(0, 3 if seed % 2 else 4, size=n)  # sometimes a class is absent
    probs = rng.dirichlet(np.ones(4), size=n)
    probs = np.round(probs, 1)  # ties in the scores
    probs[:, 0] += 1e-9 * np.arange(n)  # argmax ties broken the same way in both
    fast = classification_metrics(labels, probs, classes)
    reference = classification_report(labels, probs, classes)
    assert fast.keys() == reference.keys()
    for key, value in reference.items():
        assert fast[key] == pytest.approx(value, abs=1e-12, nan_ok=True), key


def test_binary_auroc_with_ties_equals_sklearn() -> None:
    rng = np.random.default_rng(5)
    positives = rng.random(300) < 0.3
    scores = np.round(rng.random(300) + positives * 0.3, 1)
    assert binary_auroc(positives, scores) == pytest.approx(roc_auc_score(positives, scores))
    assert math.isnan(binary_auroc(np.zeros(5, dtype=bool), np.arange(5.0)))


def test_interval_keys_round_trip() -> None:
    intervals = {"accuracy": Interval(0.7, 0.9), "f1/G-cocci": Interval(0.5, 0.8)}
    keys = interval_keys(intervals, resamples=1000, confidence=0.95)
    assert keys["ci_low/f1/G-cocci"] == 0.5 and keys["bootstrap_resamples"] == 1000
    metrics = {"accuracy": 0.8, "f1/G-cocci": 0.6, **keys}
    assert interval_of(metrics, "f1/G-cocci") == Interval(0.5, 0.8)
    assert interval_of(metrics, "auroc_macro") is None
    assert without_intervals(metrics) == {"accuracy": 0.8, "f1/G-cocci": 0.6}
    assert interval_keys({}, resamples=10, confidence=0.9) == {}
    assert not is_metric("support/a") and not is_metric("epoch") and is_metric("dice/a")


def test_segmentation_intervals_from_per_image_confusions() -> None:
    rng = np.random.default_rng(2)
    classes = ["background", "lesion"]
    confusions = []
    for _ in range(30):
        target = np.zeros((16, 16), dtype=np.int64)
        target[4:12, 4:12] = 1
        pred = np.where(rng.random((16, 16)) < 0.15, 1 - target, target)
        confusions.append(confusion_matrix(pred, target, num_classes=2))
    stack = np.stack(confusions)
    point = segmentation_report(stack.sum(axis=0), classes)
    intervals = segmentation_intervals(stack, classes, resamples=500, seed=0)
    for key in ("dice_mean", "iou_mean", "pixel_accuracy", "dice/lesion"):
        assert intervals[key].low <= point[key] <= intervals[key].high, key
        assert intervals[key].high - intervals[key].low > 0
    fewer = segmentation_intervals(stack[:8], classes, resamples=500, seed=0)
    width = intervals["dice_mean"].high - intervals["dice_mean"].low
    assert fewer["dice_mean"].high - fewer["dice_mean"].low > width  # fewer images, wider


def _random_image(rng: np.random.Generator, n_classes: int) -> tuple[dict, dict]:
    n_gt = int(rng.integers(1, 12))
    xy = rng.uniform(0, 200, size=(n_gt, 2))
    wh = rng.uniform(8, 60, size=(n_gt, 2))
    gt = np.concatenate([xy, xy + wh], axis=1)
    noisy = gt + rng.normal(0, 6, size=gt.shape)
    extra = rng.uniform(0, 200, size=(4, 2))
    found = np.concatenate([noisy, np.concatenate([extra, extra + 30], axis=1)])
    labels = rng.integers(0, n_classes, size=n_gt)
    return (
        {
            "boxes": found,
            "scores": rng.random(len(found)),
            "labels": np.concatenate([labels, rng.integers(0, n_classes, size=4)]),
        },
        {"boxes": gt, "labels": labels},
    )


def test_detection_interval_of_one_image_is_its_own_value() -> None:
    # every resample of one image is that image: the interval collapses on the metric
    rng = np.random.default_rng(7)
    classes = ["a", "b"]
    pred, target = _random_image(rng, 2)
    report = evaluate_detections([pred], [target], classes)
    intervals = detection_intervals([pred], [target], classes, resamples=20)
    for key in ("map", "map_50", "map_75", "ap/a", "ap50/b"):
        value = report.metrics[key]
        if math.isnan(value):
            assert math.isnan(intervals[key].low)
        else:
            assert intervals[key].low == pytest.approx(value, abs=1e-12), key
            assert intervals[key].high == pytest.approx(value, abs=1e-12), key


def test_detection_intervals_cover_the_metric() -> None:
    rng = np.random.default_rng(11)
    classes = ["a", "b", "c"]
    pairs = [_random_image(rng, 3) for _ in range(40)]
    preds, targets = [p for p, _ in pairs], [t for _, t in pairs]
    report = evaluate_detections(preds, targets, classes)
    intervals = detection_intervals(preds, targets, classes, resamples=300, seed=0)
    for key in ("map", "map_50", "map_75", "ap50/a", "ap/c"):
        assert intervals[key].low < report.metrics[key] < intervals[key].high, key
    assert intervals == detection_intervals(preds, targets, classes, resamples=300, seed=0)


def test_image_f1_counts_matches_at_the_threshold() -> None:
    gt = {"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), "labels": np.array([0, 1])}
    pred = {
        "boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]]),
        "scores": np.array([0.9, 0.8, 0.2]),
        "labels": np.array([0, 0, 1]),  # the second has the wrong class
    }
    empty = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)}
    empty_gt = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}
    f1 = image_f1([pred, pred, empty], [gt, gt, empty_gt], 2, score_threshold=0.5)
    # at 0.5: tp 1, fp 1 (wrong class), fn 1 → F1 = 2 / 4
    assert f1[0] == pytest.approx(0.5)
    f1_all = image_f1([pred], [gt], 2, score_threshold=0.0)
    assert f1_all[0] == pytest.approx(2 * 1 / (2 * 1 + 2 + 1))
    assert f1[2] == 1.0
