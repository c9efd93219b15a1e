"""The score threshold a detector's counts are read at: the one with the best F1.

mAP ranks boxes and needs no threshold, but a count of bacteria on a smear does: too
low and every faint duplicate counts, too high and real objects are missed. The
threshold that maximises F1 at IoU 0.5 on the validation split (all classes pooled,
a detection counting only for the object of its own class) balances the two; ``fit``
stores it in ``val_metrics.json`` and prediction uses it under
``inference.score_threshold: auto``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mediscope.metrics.detection import box_iou

#: IoU at which a detection finds an object for counting.
COUNT_IOU = 0.5


def best_f1_threshold(
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    *,
    iou: float = COUNT_IOU,
) -> tuple[float, float]:
    """The score threshold with the highest F1, and that F1.

    Each image's detections are matched greedily by score to unmatched objects of their
    class with IoU >= ``iou``. Keeping the detections scoring at least ``t`` gives
    ``TP(t)`` and ``FP(t)``; F1 is ``2 TP / (2 TP + FP + FN)`` with ``FN = objects - TP``.

    Returns:
        ``(threshold, f1)``; ``(1.0, 0.0)`` when nothing is found, and ``(1.0, 1.0)``
        when there are neither objects nor detections.
    """
    scores, hits = [], []
    objects = 0
    for found, truth in zip(predictions, targets, strict=True):
        boxes = np.asarray(found["boxes"], np.float64).reshape(-1, 4)
        score = np.asarray(found["scores"], np.float64).reshape(-1)
        labels = np.asarray(found["labels"]).reshape(-1)
        gt_boxes = np.asarray(truth["boxes"], np.float64).reshape(-1, 4)
        gt_labels = np.asarray(truth["labels"]).reshape(-1)
        objects += len(gt_boxes)
        overlap = box_iou(boxes, gt_boxes)
        taken = np.zeros(len(gt_boxes), bool)
        for i in np.argsort(-score, kind="stable"):
            candidates = (gt_labels == labels[i]) & ~taken & (overlap[i] >= iou)
            hit = bool(candidates.any())
            if hit:
                taken[int(np.argmax(np.where(candidates, overlap[i], -1.0)))] = True
            scores.append(score[i])
            hits.append(hit)
    if not scores:
        return 1.0, 1.0 if objects == 0 else 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    ranked, true = np.asarray(scores)[order], np.asarray(hits)[order]
    tp = np.cumsum(true)
    fp = np.cumsum(~true)
    f1 = 2 * tp / np.maximum(2 * tp + fp + (objects - tp), 1)
    # a threshold keeps every detection at or above it: only the last of equal scores
    last = np.append(ranked[1:] != ranked[:-1], True)
    f1 = np.where(last, f1, -1.0)
    best = int(np.argmax(f1))
    return float(ranked[best]), float(f1[best])


def count_errors(
    predicted: np.ndarray, true: np.ndarray, classes: Sequence[str]
) -> dict[str, float]:
    """Count errors per image, per class and for all classes together.

    With ``e = predicted - true`` the error of an image's count:

    * ``count_mae``: mean over images of ``|e|`` (objects per image);
    * ``count_mre``: mean over the images with at least one true object of
      ``|e| / true`` (a share: 0.1 is 10 % off); images without objects have no
      relative error and are left out;
    * ``count_bias``: mean of ``e`` (positive: the model over-counts).

    The overall values count every object whatever its class (the total on a slide);
    ``count_mae/<c>`` and ``count_mre/<c>`` those of class ``c`` alone.

    Args:
        predicted: ``(N, C)`` predicted objects per image and class.
        true: ``(N, C)`` true objects.
        classes: The C class names.

    Returns:
        The flat metrics; NaN without images (or, for ``count_mre``, without objects).

    Example:
        >>> errors = count_errors(np.array([[3, 0], [1, 1]]), np.array([[2, 0], [2, 0]]),
        ...                       ["rod", "coccus"])
        >>> errors["count_mae"], errors["count_mre"], errors["count_mae/coccus"]
        (0.5, 0.25, 0.5)
    """
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1, len(classes))
    true = np.asarray(true, dtype=np.float64).reshape(-1, len(classes))
    if predicted.shape != true.shape:
        raise ValueError(f"predicted counts {predicted.shape} and true {true.shape} differ")

    def mae(p: np.ndarray, t: np.ndarray) -> float:
        return float(np.abs(p - t).mean()) if p.size else float("nan")

    def mre(p: np.ndarray, t: np.ndarray) -> float:
        some = t > 0
        return float((np.abs(p - t)[some] / t[some]).mean()) if some.any() else float("nan")

    total_p, total_t = predicted.sum(axis=1), true.sum(axis=1)
    out = {
        "count_mae": mae(total_p, total_t),
        "count_mre": mre(total_p, total_t),
        "count_bias": float((total_p - total_t).mean()) if len(total_p) else float("nan"),
    }
    for i, name in enumerate(classes):
        out[f"count_mae/{name}"] = mae(predicted[:, i], true[:, i])
    for i, name in enumerate(classes):
        out[f"count_mre/{name}"] = mre(predicted[:, i], true[:, i])
    return out
