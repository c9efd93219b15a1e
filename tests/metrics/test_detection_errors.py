"""Detection errors at the counting threshold: count errors, the detection confusion
matrix and TIDE's error kinds, by hand and against ``tidecv`` on random scenes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mediscope.metrics.counting import count_errors
from mediscope.metrics.detection_errors import (
    KINDS,
    analyse_detections,
    analyse_image,
    confusion_csv,
    error_intervals,
    error_report,
)

CLASSES = ["rod", "coccus"]


def _scene() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    truth = {
        "boxes": np.array(
            [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]], float
        ),
        "labels": np.array([0, 1, 0, 0]),
    }
    found = {
        "boxes": np.array(
            [
                [0, 0, 10, 10],  # d0: rod on rod 0: correct
                [0, 0, 10, 10],  # d1: again: duplicate
                [20, 20, 30, 30],  # d2: rod on the coccus: classification
                [40, 40, 44, 50],  # d3: rod, IoU 0.4 with rod 2: localisation
                [80, 80, 90, 90],  # d4: coccus on nothing: background
                [60, 60, 64, 70],  # d5: coccus, IoU 0.4 with rod 3: both
                [60, 60, 70, 70],  # d6: below the threshold, dropped
            ],
            float,
        ),
        "scores": np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.2]),
        "labels": np.array([0, 0, 0, 0, 1, 1, 0]),
    }
    return found, truth


def test_one_of_every_error_by_hand() -> None:
    found, truth = _scene()
    image = analyse_image(found, truth, 2, score_threshold=0.3)
    # rows rod, coccus, background; columns rod, coccus, missed
    assert image.confusion.tolist() == [[1, 0, 2], [1, 0, 0], [2, 2, 0]]
    assert image.kinds == {
        "correct": 1,
        "localisation": 1,
        "classification": 1,
        "duplicate": 1,
        "background": 1,
        "both": 1,
        "missed": 1,  # rod 3: the localisation error points at rod 2, nothing at rod 3
        "detections": 6,
        "objects": 4,
    }
    assert image.predicted.tolist() == [4, 2]
    assert image.true.tolist() == [3, 1]


def test_split_metrics_by_hand() -> None:
    found, truth = _scene()
    empty = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)}
    nothing = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}
    errors = analyse_detections([found, empty], [truth, nothing], CLASSES, score_threshold=0.3)
    metrics = error_report(errors)
    assert metrics["count_mae"] == 1.0  # |6 - 4| and |0 - 0|
    assert metrics["count_mre"] == 0.5  # only the first image has objects
    assert metrics["count_bias"] == 1.0
    assert metrics["count_mae/rod"] == 0.5
    assert metrics["count_mre/coccus"] == 1.0
    for kind in ("localisation", "classification", "duplicate", "background", "both"):
        assert metrics[f"error_{kind}"] == pytest.approx(1 / 6)
    assert metrics["error_missed"] == 0.25
    lines = confusion_csv(errors).splitlines()
    assert lines[0] == "true \\ predicted,rod,coccus,missed"
    assert lines[1:] == ["rod,1,0,2", "coccus,1,0,0", "background,2,2,0"]


def test_count_errors_by_hand() -> None:
    predicted = np.array([[3, 1], [0, 0], [2, 5]])
    true = np.array([[2, 1], [1, 0], [2, 0]])
    errors = count_errors(predicted, true, CLASSES)
    # totals: 4 vs 3, 0 vs 1, 7 vs 2
    assert errors["count_mae"] == pytest.approx((1 + 1 + 5) / 3)
    assert errors["count_mre"] == pytest.approx((1 / 3 + 1 + 5 / 2) / 3)
    assert errors["count_bias"] == pytest.approx((1 - 1 + 5) / 3)
    assert errors["count_mae/rod"] == pytest.approx(2 / 3)
    assert errors["count_mre/rod"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert errors["count_mre/coccus"] == 0.0  # only the first image has cocci
    assert math.isnan(count_errors(np.zeros((2, 2)), np.zeros((2, 2)), CLASSES)["count_mre"])


def _random_scene(rng: np.random.Generator, n_classes: int) -> tuple[dict, dict]:
    n = int(rng.integers(0, 8))
    xy = rng.uniform(0, 200, size=(n, 2))
    wh = rng.uniform(8, 30, size=(n, 2))
    gt = np.hstack([xy, xy + wh])
    gt_labels = rng.integers(0, n_classes, size=n)
    boxes, labels = [], []
    for box, label in zip(gt, gt_labels, strict=True):
        for _ in range(int(rng.integers(0, 3))):  # 0, 1 or 2 detections per object
            jitter = rng.normal(0, rng.choice([1.0, 6.0]), size=4)
            boxes.append(box + jitter)
            labels.append(label if rng.random() < 0.7 else rng.integers(0, n_classes))
    for _ in range(int(rng.integers(0, 3))):  # detections of nothing
        corner = rng.uniform(0, 200, size=2)
        boxes.append(np.concatenate([corner, corner + rng.uniform(8, 30, size=2)]))
        labels.append(rng.integers(0, n_classes))
    boxes_arr = np.array(boxes, float).reshape(-1, 4)
    boxes_arr[:, 2:] = np.maximum(boxes_arr[:, 2:], boxes_arr[:, :2] + 1)
    found = {
        "boxes": boxes_arr,
        "scores": rng.uniform(0, 1, size=len(boxes_arr)),
        "labels": np.array(labels, int),
    }
    return found, {"boxes": gt, "labels": gt_labels}


def test_error_kinds_against_tidecv() -> None:
    tidecv = pytest.importorskip("tidecv")
    tide_errors = pytest.importorskip("tidecv.errors.main_errors")

    rng = np.random.default_rng(7)
    threshold = 0.3
    scenes = [_random_scene(rng, 3) for _ in range(60)]
    gt, preds = tidecv.Data("gt"), tidecv.Data("preds")
    for image_id, (found, truth) in enumerate(scenes):
        gt.add_image(image_id, str(image_id))
        preds.add_image(image_id, str(image_id))
        for box, label in zip(truth["boxes"], truth["labels"], strict=True):
            gt.add_ground_truth(image_id, int(label), [*box[:2], *(box[2:] - box[:2])])
        for box, score, label in zip(found["boxes"], found["scores"], found["labels"], strict=True):
            if score >= threshold:
                preds.add_detection(
                    image_id, int(label), float(score), [*box[:2], *(box[2:] - box[:2])]
                )
    run = tidecv.TIDE().evaluate(gt, preds, mode=tidecv.TIDE.BOX, name="check")
    theirs = run.count_errors()
    errors = analyse_detections(
        [s[0] for s in scenes], [s[1] for s in scenes], ["a", "b", "c"], score_threshold=threshold
    )
    ours = dict(zip(KINDS, errors.kinds.sum(axis=0).tolist(), strict=True))
    assert ours["classification"] == theirs[tide_errors.ClassError]
    assert ours["localisation"] == theirs[tide_errors.BoxError]
    assert ours["duplicate"] == theirs[tide_errors.DuplicateError]
    assert ours["background"] == theirs[tide_errors.BackgroundError]
    assert ours["both"] == theirs[tide_errors.OtherError]
    assert ours["missed"] == theirs[tide_errors.MissedError]
    assert min(ours[k] for k in KINDS) > 0  # every kind occurs in these scenes


def test_confusion_matrix_partitions_objects_and_detections() -> None:
    rng = np.random.default_rng(1)
    scenes = [_random_scene(rng, 3) for _ in range(40)]
    errors = analyse_detections(
        [s[0] for s in scenes], [s[1] for s in scenes], ["a", "b", "c"], score_threshold=0.4
    )
    # every object once in its row, every kept detection once in its column
    assert errors.confusion[:3].sum(axis=1).tolist() == errors.true.sum(axis=0).tolist()
    assert errors.confusion[:, :3].sum(axis=0).tolist() == errors.predicted.sum(axis=0).tolist()
    assert np.trace(errors.confusion[:3, :3]) == errors.kinds[:, 0].sum()  # the correct ones
    metrics = error_report(errors)
    intervals = error_intervals(errors, resamples=200, seed=0)
    for key in ("count_mae", "count_mre", "error_background", "error_missed", "count_mae/a"):
        assert intervals[key].low <= metrics[key] <= intervals[key].high
        assert intervals[key].low < intervals[key].high


def test_count_errors_against_scikit_learn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    true = rng.integers(1, 30, size=(50, 2))  # every image has objects of both classes
    predicted = np.maximum(true + rng.integers(-4, 5, size=(50, 2)), 0)
    errors = count_errors(predicted, true, CLASSES)
    for i, name in enumerate(CLASSES):
        assert errors[f"count_mae/{name}"] == pytest.approx(
            metrics.mean_absolute_error(true[:, i], predicted[:, i])
        )
        assert errors[f"count_mre/{name}"] == pytest.approx(
            metrics.mean_absolute_percentage_error(true[:, i], predicted[:, i])
        )
    assert errors["count_mae"] == pytest.approx(
        metrics.mean_absolute_error(true.sum(axis=1), predicted.sum(axis=1))
    )
