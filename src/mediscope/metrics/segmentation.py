"""Segmentation metrics from a confusion matrix: per-class and mean IoU (Jaccard) and
Dice, pixel accuracy; per-image Dice and IoU; a cheap per-epoch torchmetrics metric.

Conventions:
    * The confusion matrix has the true class in rows and the predicted one in columns.
    * Pixels equal to ``ignore_index`` (and target values outside ``0..K-1``) are not
      counted anywhere.
    * The headline means (``dice_mean``, ``iou_mean``) are over the foreground classes
      (1..K-1), as nnU-Net reports them: the background, usually most of the pixels,
      would lift every score towards 1. ``dice_mean_with_background`` and
      ``iou_mean_with_background`` include it. With a single class (K = 1) that class
      is the foreground.
    * Means count the classes present in the target or the prediction. A class absent
      from both says nothing about the model; its per-class value is NaN (written as
      null in JSON).

Example:
    >>> import numpy as np
    >>> cm = confusion_matrix(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [0, 1]]),
    ...                       num_classes=2)
    >>> cm.tolist()
    [[1, 1], [0, 2]]
    >>> report = segmentation_report(cm, ["bg", "fg"])
    >>> round(report["dice/fg"], 3), round(report["dice_mean"], 3)
    (0.8, 0.8)
    >>> round(report["dice_mean_with_background"], 3)
    0.733
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric

#: The keys ``SegmentationEpochMetrics`` logs (after its prefix).
EPOCH_KEYS = ("dice_mean", "iou_mean", "pixel_accuracy")


def _as_numpy(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def confusion_matrix(
    pred: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    *,
    num_classes: int,
    ignore_index: int | None = None,
) -> np.ndarray:
    """Counts ``(K, K)`` of class indices of any shape (one image or a batch).

    Args:
        pred: Predicted classes, e.g. ``logits.argmax(1)``; numpy or torch.
        target: True classes, the same shape.
        num_classes: K, background included.
        ignore_index: Target value whose pixels are not counted.

    Returns:
        int64 counts, rows the true class, columns the predicted one.
    """
    pred = _as_numpy(pred).ravel().astype(np.int64)
    target = _as_numpy(target).ravel().astype(np.int64)
    if pred.shape != target.shape:
        raise ValueError(f"prediction has {pred.size} pixels, target {target.size}")
    keep = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        keep &= target != ignore_index
    if keep.any() and not (pred[keep].min() >= 0 and pred[keep].max() < num_classes):
        raise ValueError(f"predicted classes outside 0..{num_classes - 1}")
    index = target[keep] * num_classes + pred[keep]
    return np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


class ConfusionAccumulator:
    """Sums confusion matrices over batches or images (numpy arrays or torch tensors).

    Args:
        num_classes: K, background included.
        ignore_index: Target value whose pixels are not counted.
    """

    def __init__(self, num_classes: int, *, ignore_index: int | None = None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> None:
        """Adds the pixels of ``pred`` against ``target`` (any equal shapes)."""
        self.matrix += confusion_matrix(
            pred, target, num_classes=self.num_classes, ignore_index=self.ignore_index
        )

    def report(self, classes: list[str]) -> dict[str, float]:
        """:func:`segmentation_report` of the pixels so far."""
        return segmentation_report(self.matrix, classes)


def class_scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class IoU and Dice, and which classes are present.

    ``IoU = TP / (TP + FP + FN)``, ``Dice = 2 TP / (2 TP + FP + FN)``; both NaN for a
    class absent from target and prediction (``present`` False).
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    present = (tp + fp + fn) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(present, tp / (tp + fp + fn), np.nan)
        dice = np.where(present, 2 * tp / (2 * tp + fp + fn), np.nan)
    return iou, dice, present


def _mean(values: np.ndarray, present: np.ndarray) -> float:
    return float(values[present].mean()) if present.any() else float("nan")


def segmentation_report(confusion: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Flat metrics of a confusion matrix.

    Args:
        confusion: ``(K, K)`` counts, rows the true class (:func:`confusion_matrix`).
        classes: The K class names, background first.

    Returns:
        ``dice_mean``, ``iou_mean`` (over the foreground classes present in target or
        prediction; 1.0 when neither has any foreground: nothing to find, nothing
        found), ``pixel_accuracy`` (correct / counted
        pixels), ``dice_mean_with_background`` and ``iou_mean_with_background`` (over
        every class present, background included), then ``dice/<class>`` and
        ``iou/<class>`` for every class (NaN for a class absent from both). All NaN
        when no pixel was counted.
    """
    if len(classes) != len(confusion):
        raise ValueError(f"{len(classes)} class names for a {len(confusion)}-class matrix")
    iou, dice, present = class_scores(confusion)
    total = confusion.sum()
    first = 1 if len(classes) > 1 else 0  # a single class is the foreground
    foreground = present[first:]
    empty = 1.0 if total and not foreground.any() else float("nan")
    metrics = {
        "dice_mean": _mean(dice[first:], foreground) if foreground.any() else empty,
        "iou_mean": _mean(iou[first:], foreground) if foreground.any() else empty,
        "pixel_accuracy": float(np.trace(confusion) / total) if total else float("nan"),
        "dice_mean_with_background": _mean(dice, present),
        "iou_mean_with_background": _mean(iou, present),
    }
    metrics.update({f"dice/{name}": float(dice[i]) for i, name in enumerate(classes)})
    metrics.update({f"iou/{name}": float(iou[i]) for i, name in enumerate(classes)})
    return metrics


def per_sample_scores(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    num_classes: int,
    ignore_index: int | None = None,
    classes: Sequence[str] | None = None,
) -> dict[str, float]:
    """Dice and IoU of one image, for ``per_sample.csv`` and the best / worst galleries.

    ``dice`` and ``iou`` are the means over the foreground classes (1..K-1) present in
    the target or the prediction; background is left out, since it would lift every
    image with a small object towards 1. An image where neither target nor prediction
    has any foreground scores 1.0 for both (nothing to find, nothing found: an empty
    match). With a single class (K = 1) that class counts as foreground.

    Args:
        pred: Predicted classes ``(H, W)``.
        target: True classes ``(H, W)``.
        num_classes: K, background included.
        ignore_index: Target value whose pixels are not counted.
        classes: Names for the per-class keys; class indices when None.

    Returns:
        ``dice``, ``iou``, then ``dice/<class>`` and ``iou/<class>`` for each
        foreground class (NaN for a class absent from both).
    """
    confusion = confusion_matrix(pred, target, num_classes=num_classes, ignore_index=ignore_index)
    iou, dice, present = class_scores(confusion)
    first = 1 if num_classes > 1 else 0
    foreground = present[first:]
    scores = {
        "dice": _mean(dice[first:], foreground) if foreground.any() else 1.0,
        "iou": _mean(iou[first:], foreground) if foreground.any() else 1.0,
    }
    names = list(classes) if classes is not None else [str(i) for i in range(num_classes)]
    for i in range(first, num_classes):
        scores[f"dice/{names[i]}"] = float(dice[i])
        scores[f"iou/{names[i]}"] = float(iou[i])
    return scores


class SegmentationEpochMetrics(Metric):
    """Mean Dice, mean IoU and pixel accuracy over an epoch, from a confusion matrix.

    Fed with predicted classes ``(B, H, W)`` (``logits.argmax(1)``) and targets
    ``(B, H, W)``; one ``bincount`` per batch on the batch's device, so it is cheap
    enough for every training step. The state is summed across processes.

    Args:
        num_classes: K, background included.
        ignore_index: Target value whose pixels are not counted.
        prefix: Put before every key, e.g. ``"val/"``.
    """

    full_state_update = False
    confusion: torch.Tensor

    def __init__(
        self, num_classes: int, *, ignore_index: int | None = None, prefix: str = ""
    ) -> None:
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
        """Adds a batch of predicted classes against its targets."""
        n = self.num_classes
        preds, target = preds.reshape(-1).long(), target.reshape(-1).long()
        keep = (target >= 0) & (target < n)
        if self.ignore_index is not None:
            keep &= target != self.ignore_index
        index = target[keep] * n + preds[keep]
        self.confusion += torch.bincount(index, minlength=n * n).reshape(n, n)

    def compute(self) -> dict[str, torch.Tensor]:
        """``{prefix}dice_mean``, ``{prefix}iou_mean``, ``{prefix}pixel_accuracy``."""
        confusion = self.confusion.detach().cpu().numpy()
        report = segmentation_report(confusion, [str(i) for i in range(self.num_classes)])
        return {
            f"{self.prefix}{key}": torch.tensor(report[key], dtype=torch.float32)
            for key in EPOCH_KEYS
        }
