"""Per-object segmentation scores: a hand-made image, the conventions, the automatic
switch, and torchmetrics' panoptic recognition quality (RQ = object F1) as reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from mediscope.metrics.objects import (
    components,
    instance_like,
    match_components,
    object_counts,
    object_intervals,
    object_report,
)

CLASSES = ["background", "cell", "debris"]


def _hand_made() -> tuple[np.ndarray, np.ndarray]:
    true = np.zeros((10, 10), int)
    pred = np.zeros((10, 10), int)
    true[0:2, 0:2] = pred[0:2, 0:2] = 1  # A: found exactly
    true[0:2, 5:7] = 1
    pred[0:1, 5:7] = 1  # C: IoU 2/4 = 0.5, not above 0.5: unmatched
    true[4:6, 4:6] = 1
    pred[4:6, 4:7] = 1  # B: IoU 4/6: matched
    pred[8:10, 0:2] = 1  # D: invented
    true[8:10, 8:10] = 2  # E: a missed debris
    return pred, true


def test_hand_made_image() -> None:
    pred, true = _hand_made()
    counts = object_counts(pred, true, num_classes=3)
    assert counts.tolist() == [[2, 4, 3], [0, 0, 1]]
    report = object_report(counts[None], CLASSES)
    assert report["object_precision"] == 0.5  # 2 of 4 predicted objects
    assert report["object_recall"] == 0.5  # 2 of 4 true objects
    assert report["object_f1"] == 0.5
    assert report["object_f1/cell"] == pytest.approx(4 / 7)
    assert report["object_f1/debris"] == 0.0
    assert report["object_count_mae"] == 0.0  # 4 objects predicted, 4 true
    assert report["object_count_mae/cell"] == 1.0
    assert report["object_count_mre/cell"] == pytest.approx(1 / 3)
    assert report["object_count_mre/debris"] == 1.0


def test_objects_are_8_connected_and_ignore_is_no_object() -> None:
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[1, 1] = True  # corner to corner: one object
    assert components(mask)[1] == 1
    assert match_components(mask, mask) == (1, 1, 1)
    true = np.zeros((6, 6), int)
    true[0:2, 0:2] = 1
    true[4:6, 4:6] = 255  # ignored
    pred = np.zeros((6, 6), int)
    pred[0:2, 0:2] = pred[4:6, 4:6] = 1
    assert object_counts(pred, true, num_classes=2, ignore_index=255).tolist() == [[1, 1, 1]]


def test_without_objects_the_scores_are_nan() -> None:
    empty = np.zeros((1, 2, 3), int)
    report = object_report(empty, CLASSES)
    assert math.isnan(report["object_precision"]) and math.isnan(report["object_f1"])
    assert report["object_count_mae"] == 0.0
    assert math.isnan(report["object_count_mre"])


def test_instance_like_switch() -> None:
    blobs = np.zeros((3, 2, 3), int)
    blobs[:, 0, 2] = [1, 1, 0]  # one lesion per image where present: not instance-like
    assert not instance_like(blobs)
    blobs[:, 1, 2] = [5, 0, 3]  # many debris per image: instance-like
    assert instance_like(blobs)


def test_intervals() -> None:
    rng = np.random.default_rng(0)
    true = rng.integers(3, 9, size=(40, 2))
    matched = np.minimum(true, rng.integers(0, 9, size=(40, 2)))
    predicted = matched + rng.integers(0, 3, size=(40, 2))
    counts = np.stack([matched, predicted, true], axis=-1)
    report = object_report(counts, CLASSES)
    intervals = object_intervals(counts, CLASSES, resamples=200, seed=0)
    for key in ("object_f1", "object_precision", "object_recall", "object_count_mae"):
        assert intervals[key].low < report[key] < intervals[key].high


def test_object_f1_equals_panoptic_recognition_quality() -> None:
    torch = pytest.importorskip("torch")
    detection = pytest.importorskip("torchmetrics.detection")
    rng = np.random.default_rng(2)
    for _ in range(6):
        true = np.zeros((64, 64), int)
        pred = np.zeros((64, 64), int)
        for k, threshold in ((1, 0.58), (2, 0.6)):
            field_ = ndimage.gaussian_filter(rng.random((64, 64)), 1.5)
            true[(field_ > threshold) & (true == 0)] = k
            moved = field_ + 0.01 * rng.standard_normal((64, 64))
            pred[(moved > threshold) & (pred == 0)] = k
        counts = object_counts(pred, true, num_classes=3)

        def panoptic(mask: np.ndarray) -> object:
            instances = np.zeros_like(mask)
            for k in (1, 2):
                labels, _ = components(mask == k)
                instances[mask == k] = labels[mask == k]
            return torch.tensor(np.stack([mask, instances], axis=-1)[None])

        metric = detection.PanopticQuality(
            things={1, 2}, stuffs={0}, return_sq_and_rq=True, return_per_class=True
        )
        result = metric(panoptic(pred), panoptic(true))
        rq = result.reshape(-1, 3)[:, 2].numpy()  # rows: things 1, 2, then stuff 0
        report = object_report(counts[None], CLASSES)
        assert report["object_f1/cell"] == pytest.approx(rq[0], abs=1e-6)
        assert report["object_f1/debris"] == pytest.approx(rq[1], abs=1e-6)
        assert counts[:, 1].sum() > 5  # the scenes do have many objects
        assert 0 < report["object_f1"] < 1  # some found, some not
