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
