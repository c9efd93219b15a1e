"""Segmentation metrics from a confusion matrix: per-class and mean IoU and Dice, pixel
accuracy; per-image Dice and IoU.

Conventions: the mean over classes counts the classes present in the target or the
prediction (a class absent from both says nothing about the model). Pixels equal to
``ignore_index`` are not counted anywhere.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric


def confusion_matrix(
    pred: np.ndarray, target: np.ndarray, *, num_classes: int, ignore_index: int | None = None
) -> np.ndarray:
    """``(K, K)`` counts: rows are the true class, columns the predicted one."""
    pred = np.asarray(pred).ravel().astype(np.int64)
    target = np.asarray(target).ravel().astype(np.int64)
    keep = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        keep &= target != ignore_index
    index = target[keep] * num_classes + pred[keep]
    return np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def _scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class IoU, Dice (NaN for classes absent from target and prediction), presence."""
    confusion = confusion.astype(np.float64)
    tp = np.diag(confusion)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    present = (tp + fp + fn) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(present, tp / (tp + fp + fn), np.nan)
        dice = np.where(present, 2 * tp / (2 * tp + fp + fn), np.nan)
    return iou, dice, present


def segmentation_report(confusion: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Flat metrics of a confusion matrix.

    Keys: ``dice_mean``, ``iou_mean``, ``pixel_accuracy``, ``dice/<class>``,
    ``iou/<class>`` (NaN, written as null, for a class absent from target and prediction).
    """
    iou, dice, present = _scores(confusion)
    total = confusion.sum()
    metrics = {
        "dice_mean": float(np.nanmean(dice)) if present.any() else float("nan"),
        "iou_mean": float(np.nanmean(iou)) if present.any() else float("nan"),
        "pixel_accuracy": float(np.trace(confusion) / total) if total else float("nan"),
    }
    for i, name in enumerate(classes):
        metrics[f"dice/{name}"] = float(dice[i])
    for i, name in enumerate(classes):
        metrics[f"iou/{name}"] = float(iou[i])
    return metrics


def per_sample_scores(
    pred: np.ndarray, target: np.ndarray, *, num_classes: int, ignore_index: int | None = None
) -> dict[str, float]:
    """Dice and IoU of one image: the mean over foreground classes (1..K-1) present in
    the target or the prediction, and per class.

    An image where neither target nor prediction has any foreground scores 1 (nothing to
    find, nothing found). Per-class values of classes absent from both are NaN.
    """
    confusion = confusion_matrix(pred, target, num_classes=num_classes, ignore_index=ignore_index)
    iou, dice, present = _scores(confusion)
    foreground = present[1:] if num_classes > 1 else present
    if not foreground.any():
        mean_dice = mean_iou = 1.0
    else:
        mean_dice = float(np.nanmean(dice[1:] if num_classes > 1 else dice))
        mean_iou = float(np.nanmean(iou[1:] if num_classes > 1 else iou))
    scores = {"dice": mean_dice, "iou": mean_iou}
    for i in range(1, num_classes):
        scores[f"dice/{i}"] = float(dice[i])
        scores[f"iou/{i}"] = float(iou[i])
    return scores


class SegmentationEpochMetrics(Metric):
    """Mean Dice, mean IoU and pixel accuracy over an epoch, from a confusion matrix.

    Fed with predicted class indices ``(B, H, W)`` and targets ``(B, H, W)``; one
    ``bincount`` per batch, so it is cheap enough for every training step.
    """

    full_state_update = False
    confusion: torch.Tensor

    def __init__(self, num_classes: int, *, ignore_index: int | None = None, prefix: str = ""):
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.prefix = prefix
        self.add_state(
            "confusion",
            default=torch.zeros(num_classes, num_classes, dtype=torch.long),
            dist_reduce_fx="sum",
        )

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        n = self.num_classes
        preds, target = preds.reshape(-1).long(), target.reshape(-1).long()
        keep = (target >= 0) & (target < n)
        if self.ignore_index is not None:
            keep &= target != self.ignore_index
        index = target[keep] * n + preds[keep]
        self.confusion += torch.bincount(index, minlength=n * n).reshape(n, n)

    def compute(self) -> dict[str, torch.Tensor]:
        confusion = self.confusion.detach().cpu().numpy()
        report = segmentation_report(confusion, [str(i) for i in range(self.num_classes)])
        return {
            f"{self.prefix}{key}": torch.tensor(report[key], dtype=torch.float32)
            for key in ("dice_mean", "iou_mean", "pixel_accuracy")
        }
