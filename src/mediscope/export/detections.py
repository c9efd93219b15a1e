"""Boxes of one image from a detection graph's dense outputs, in NumPy.

What the eager detectors do after their network (see ``RetinaNet.detect``): keep the
(anchor, class) pairs scoring above the threshold, the best
:data:`~mediscope.runtime.info.PRE_NMS_TOP` of them, then per-class NMS, then the best
``max_detections``. Used here to measure a quantized detector against its float one.
"""

from __future__ import annotations

import numpy as np

from mediscope.runtime.info import PRE_NMS_TOP


def _iou_one(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, best score first.

    Example:
        >>> boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], float)
        >>> nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5).tolist()
        [0, 2]
    """
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        first = order[0]
        keep.append(first)
        rest = order[1:]
        order = rest[_iou_one(boxes[first], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def dense_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    *,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
) -> dict[str, np.ndarray]:
    """Detections of one image from dense ``boxes`` ``(A, 4)`` and ``scores`` ``(A, C)``.

    Returns:
        ``boxes`` ``(N, 4)``, ``scores`` ``(N,)`` and ``labels`` ``(N,)`` (0..C-1), best
        score first.

    Example:
        >>> boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10]], np.float32)
        >>> scores = np.array([[0.9, 0.1], [0.8, 0.7]], np.float32)
        >>> found = dense_detections(boxes, scores, score_threshold=0.5,
        ...                          iou_threshold=0.5, max_detections=10)
        >>> found["labels"].tolist(), found["scores"].round(2).tolist()
        ([0, 1], [0.9, 0.7])
    """
    num_classes = scores.shape[-1]
    flat = scores.reshape(-1)
    candidates = np.flatnonzero(flat > score_threshold)
    if candidates.size > PRE_NMS_TOP:
        best = np.argpartition(-flat[candidates], PRE_NMS_TOP - 1)[:PRE_NMS_TOP]
        candidates = candidates[best]
    anchor, labels = candidates // num_classes, candidates % num_classes
    chosen_boxes, chosen_scores = boxes[anchor].astype(np.float64), flat[candidates]
    kept: list[np.ndarray] = []
    for label in np.unique(labels):
        index = np.flatnonzero(labels == label)
        kept.append(index[nms(chosen_boxes[index], chosen_scores[index], iou_threshold)])
    order = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    order = order[np.argsort(-chosen_scores[order], kind="stable")][:max_detections]
    return {
        "boxes": chosen_boxes[order].reshape(-1, 4),
        "scores": chosen_scores[order].astype(np.float64),
        "labels": labels[order].astype(np.int64),
    }
