"""Segmentation metrics: confusion matrix, IoU and Dice by hand, absent classes,
ignore_index, per-image scores and the per-epoch metric."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mediscope.metrics.segmentation import (
    ConfusionAccumulator,
    SegmentationEpochMetrics,
    confusion_matrix,
    per_sample_scores,
    segmentation_report,
)

TARGET = np.array([[0, 0, 1], [1, 2, 2]])
PRED = np.array([[0, 1, 1], [1, 2, 0]])
# Rows true class, columns predicted:
#   true 0: predicted 0, 1 -> [1, 1, 0]
#   true 1: predicted 1, 1 -> [0, 2, 0]
#   true 2: predicted 2, 0 -> [1, 0, 1]
CONFUSION = [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_confusion_matrix_by_hand() -> None:
    cm = confusion_matrix(PRED, TARGET, num_classes=3)
    assert cm.tolist() == CONFUSION
    as_tensors = confusion_matrix(torch.from_numpy(PRED), torch.from_numpy(TARGET), num_classes=3)
    assert as_tensors.tolist() == CONFUSION
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(PRED + 1, TARGET, num_classes=3)


def test_report_iou_and_dice_by_hand() -> None:
    report = segmentation_report(np.array(CONFUSION), ["bg", "a", "b"])
    # class bg: TP 1, FP 1 (a true b), FN 1 -> IoU 1/3, Dice 2/4
    # class a:  TP 2, FP 1, FN 0          -> IoU 2/3, Dice 4/5
    # class b:  TP 1, FP 0, FN 1          -> IoU 1/2, Dice 2/3
    assert report["iou/bg"] == pytest.approx(1 / 3)
    assert report["iou/a"] == pytest.approx(2 / 3)
    assert report["iou/b"] == pytest.approx(1 / 2)
    assert report["dice/bg"] == pytest.approx(1 / 2)
    assert report["dice/a"] == pytest.approx(4 / 5)
    assert report["dice/b"] == pytest.approx(2 / 3)
    # the headline means leave the background out (as nnU-Net); the other keys keep it
    assert report["iou_mean"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert report["dice_mean"] == pytest.approx((4 / 5 + 2 / 3) / 2)
    assert report["iou_mean_with_background"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert report["dice_mean_with_background"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert report["pixel_accuracy"] == pytest.approx(4 / 6)
    assert list(report)[:5] == [
        "dice_mean",
        "iou_mean",
        "pixel_accuracy",
        "dice_mean_with_background",
        "iou_mean_with_background",
    ]


def test_headline_dice_is_the_foreground_mean() -> None:
    # a small lesion: the background is nearly perfect, the lesion half found
    target = np.zeros((20, 20), dtype=np.int64)
    target[:2, :2] = 1
    pred = np.zeros_like(target)
    pred[:1, :2] = 1
    report = segmentation_report(confusion_matrix(pred, target, num_classes=2), ["bg", "lesion"])
    assert report["dice_mean"] == pytest.approx(report["dice/lesion"]) == pytest.approx(2 / 3)
    assert report["dice_mean_with_background"] > 0.8 > report["dice_mean"]
    # one class only: it is the foreground
    single = segmentation_report(np.array([[5]]), ["cell"])
    assert single["dice_mean"] == single["dice_mean_with_background"] == 1.0
    # no foreground in target nor prediction: nothing to find, nothing found
    blank = segmentation_report(confusion_matrix(pred * 0, target * 0, num_classes=2), ["b", "f"])
    assert blank["dice_mean"] == blank["iou_mean"] == 1.0


def test_absent_class_is_nan_and_left_out_of_the_means() -> None:
    cm = confusion_matrix(PRED, TARGET, num_classes=4)
    report = segmentation_report(cm, ["bg", "a", "b", "never"])
    assert math.isnan(report["dice/never"]) and math.isnan(report["iou/never"])
    assert report["iou_mean"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert report["iou_mean_with_background"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    # A class only predicted is present: it counts, with Dice 0.
    only_predicted = segmentation_report(
        confusion_matrix(np.array([0, 3]), np.array([0, 0]), num_classes=4), list("wxyz")
    )
    assert only_predicted["dice/z"] == 0.0
    assert only_predicted["dice_mean"] == 0.0
    assert only_predicted["dice_mean_with_background"] == pytest.approx((2 / 3 + 0.0) / 2)
    empty = segmentation_report(np.zeros((2, 2), dtype=np.int64), ["bg", "fg"])
    assert math.isnan(empty["dice_mean"]) and math.isnan(empty["pixel_accuracy"])


def test_ignored_pixels_are_not_counted() -> None:
    target = TARGET.copy()
    target[1, 2] = 255  # the mistaken class-b pixel
    cm = confusion_matrix(PRED, target, num_classes=3, ignore_index=255)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]
    assert segmentation_report(cm, ["bg", "a", "b"])["iou/b"] == 1.0


def test_accumulator_sums_batches() -> None:
    total = ConfusionAccumulator(3, ignore_index=255)
    total.update(PRED[:1], TARGET[:1])
    total.update(torch.from_numpy(PRED[1:]), torch.from_numpy(TARGET[1:]))
    assert total.matrix.tolist() == CONFUSION
    assert total.report(["bg", "a", "b"])["pixel_accuracy"] == pytest.approx(4 / 6)


def test_per_sample_scores() -> None:
    # Foreground classes a (IoU 2/3, Dice 4/5) and b (IoU 1/2, Dice 2/3); bg left out.
    scores = per_sample_scores(PRED, TARGET, num_classes=3, classes=["bg", "a", "b"])
    assert scores["dice"] == pytest.approx((4 / 5 + 2 / 3) / 2)
    assert scores["iou"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert scores["dice/a"] == pytest.approx(4 / 5) and "dice/bg" not in scores
    # Empty match: no foreground in target nor prediction.
    blank = np.zeros((4, 4), dtype=np.int64)
    empty = per_sample_scores(blank, blank, num_classes=2)
    assert empty["dice"] == 1.0 and empty["iou"] == 1.0 and math.isnan(empty["dice/1"])
    # Foreground missed entirely, or predicted where there is none: 0.
    lesion = blank.copy()
    lesion[1:3, 1:3] = 1
    assert per_sample_scores(blank, lesion, num_classes=2)["dice"] == 0.0
    assert per_sample_scores(lesion, blank, num_classes=2)["iou"] == 0.0
    # Half the lesion found: TP 2, FN 2 -> Dice 4/6, IoU 2/4.
    half = blank.copy()
    half[1:3, 1] = 1
    scores = per_sample_scores(half, lesion, num_classes=2)
    assert scores["dice"] == pytest.approx(2 / 3) and scores["iou"] == pytest.approx(1 / 2)
    # A class absent from both is left out of the mean; ignored pixels are not counted.
    wrong = lesion.copy()
    wrong[0, 0] = 1
    target = lesion.copy()
    target[0, 0] = 255
    scores = per_sample_scores(wrong, target, num_classes=3, ignore_index=255)
    assert scores["dice"] == 1.0 and math.isnan(scores["dice/2"])


def test_epoch_metric_over_two_batches_equals_the_report_of_both() -> None:
    generator = torch.Generator().manual_seed(0)
    preds = torch.randint(0, 3, (4, 8, 8), generator=generator)
    target = torch.randint(0, 3, (4, 8, 8), generator=generator)
    target[0, :3] = 255
    metric = SegmentationEpochMetrics(3, ignore_index=255, prefix="val/")
    metric.update(preds[:2], target[:2])
    metric.update(preds[2:], target[2:])
    values = metric.compute()
    assert set(values) == {"val/dice_mean", "val/iou_mean", "val/pixel_accuracy"}
    assert all(isinstance(v, torch.Tensor) for v in values.values())
    cm = confusion_matrix(preds.numpy(), target.numpy(), num_classes=3, ignore_index=255)
    report = segmentation_report(cm, ["0", "1", "2"])
    for key in ("dice_mean", "iou_mean", "pixel_accuracy"):
        assert values[f"val/{key}"].item() == pytest.approx(report[key], abs=1e-6)
    assert int(metric.confusion.sum()) == 4 * 64 - 3 * 8
    metric.reset()
    metric.update(preds[:1], preds[:1])
    assert metric.compute()["val/pixel_accuracy"].item() == 1.0
