"""The F1-optimal score threshold for counts."""

from __future__ import annotations

import numpy as np
import pytest

from mediscope.metrics.counting import best_f1_threshold


def det(boxes: list[list[float]], scores: list[float], labels: list[int]) -> dict:
    return {"boxes": np.array(boxes, float), "scores": np.array(scores), "labels": np.array(labels)}


def test_threshold_drops_the_low_false_positives() -> None:
    truth = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), "labels": np.array([0, 1])}]
    found = [
        det(
            [[0, 0, 10, 10], [20, 20, 30, 31], [50, 50, 60, 60], [70, 70, 80, 80]],
            [0.9, 0.8, 0.3, 0.2],
            [0, 1, 0, 1],
        )
    ]
    threshold, f1 = best_f1_threshold(found, truth)
    assert threshold == pytest.approx(0.8) and f1 == pytest.approx(1.0)


def test_wrong_class_and_duplicates_do_not_count() -> None:
    truth = [{"boxes": np.array([[0, 0, 10, 10]]), "labels": np.array([0])}]
    found = [det([[0, 0, 10, 10], [0, 0, 10, 10], [1, 0, 10, 10]], [0.9, 0.7, 0.6], [1, 0, 0])]
    threshold, f1 = best_f1_threshold(found, truth)
    # at 0.7: one hit (the class-0 box), one false (the class-1 box): F1 = 2/(2+1+0)
    assert threshold == pytest.approx(0.7) and f1 == pytest.approx(2 / 3)


def test_brute_force_agrees_on_random_cases() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        corners = rng.uniform(0, 100, size=(8, 2))
        gt = np.concatenate([corners, corners + 12], axis=1)
        truth = {"boxes": gt, "labels": rng.integers(0, 2, 8)}
        noisy = gt[rng.integers(0, 8, 12)] + rng.normal(0, 3, size=(12, 4))
        scores = rng.uniform(0, 1, 12).round(2).tolist()
        found = det(noisy.tolist(), scores, rng.integers(0, 2, 12).tolist())
        threshold, f1 = best_f1_threshold([found], [truth])
        best = max(f1_keeping(found, truth, t) for t in np.unique(found["scores"]))
        assert f1 == pytest.approx(best)
        assert f1_keeping(found, truth, threshold) == pytest.approx(f1)


def f1_keeping(found: dict, truth: dict, threshold: float) -> float:
    """F1 of the detections scoring at least ``threshold``, matched independently."""
    from mediscope.metrics.detection import box_iou

    keep = found["scores"] >= threshold
    boxes, scores, labels = found["boxes"][keep], found["scores"][keep], found["labels"][keep]
    overlap = box_iou(boxes, truth["boxes"])
    taken = np.zeros(len(truth["boxes"]), bool)
    tp = 0
    for i in np.argsort(-scores, kind="stable"):
        free = (truth["labels"] == labels[i]) & ~taken & (overlap[i] >= 0.5)
        if free.any():
            taken[int(np.argmax(np.where(free, overlap[i], -1.0)))] = True
            tp += 1
    fp, fn = len(scores) - tp, len(truth["boxes"]) - tp
    return 2 * tp / max(2 * tp + fp + fn, 1)


def test_empty_cases() -> None:
    nothing = det([], [], [])
    assert best_f1_threshold([nothing], [{"boxes": np.zeros((0, 4)), "labels": []}]) == (1.0, 1.0)
    missed = {"boxes": np.array([[0, 0, 5, 5]]), "labels": np.array([0])}
    assert best_f1_threshold([nothing], [missed]) == (1.0, 0.0)
