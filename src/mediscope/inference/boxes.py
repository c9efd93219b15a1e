"""Merging detected boxes: per-class NMS or weighted boxes fusion (WBF), model ensembles,
and the tiles of a large image.

* **NMS** (torchvision's ``batched_nms``) keeps the best-scored box of every group of
  same-class boxes overlapping by more than the IoU threshold and drops the others.
* **WBF** (``ensemble_boxes.weighted_boxes_fusion``) replaces every such group by one box
  whose corners are the score-weighted mean of the group's corners. With ``conf_type``
  ``"avg"`` the fused score is the group's mean score times
  ``min(models, boxes in the group) / models`` (weights counted as models), so a box only
  one model of two found keeps half its score.

WBF works on coordinates in [0, 1]: boxes are divided by the image's width and height
(clipped to the image) and multiplied back after fusion. Boxes without area are dropped
by both methods.

Example:
    >>> boxes = np.array([[10, 10, 50, 50], [12, 11, 52, 50], [100, 100, 140, 150]])
    >>> merged = merge_detections(boxes, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]))
    >>> merged["scores"].tolist()
    [0.9, 0.7]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torchvision.ops import batched_nms

from mediscope.errors import ConfigError
from mediscope.runtime.pipeline import suppress_across_classes, wbf, window_starts

METHODS = ("nms", "wbf")
CONF_TYPES = ("avg", "max", "box_and_model_avg", "absent_model_aware_avg")

Window = tuple[int, int, int, int]


def _check(method: str, iou_threshold: float, score_threshold: float, conf_type: str) -> None:
    if method not in METHODS:
        raise ConfigError(
            f"unknown box merging method {method!r}", where="inference.merge", hint="nms or wbf"
        )
    if not 0 < iou_threshold <= 1:
        raise ConfigError(
            f"IoU threshold must be in (0, 1], got {iou_threshold}",
            where="inference.iou_threshold",
            hint="0.5 for NMS and 0.55 for WBF are usual",
        )
    if not 0 <= score_threshold <= 1:
        raise ConfigError(
            f"score threshold must be in [0, 1], got {score_threshold}",
            where="inference.score_threshold",
        )
    if conf_type not in CONF_TYPES:
        raise ConfigError(
            f"unknown WBF confidence type {conf_type!r}",
            where="conf_type",
            hint=", ".join(CONF_TYPES),
        )


def _numpy(
    boxes: Any, scores: Any, labels: Any, where: str = "detections"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def convert(values: Any, dtype: Any) -> np.ndarray:
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        return np.asarray(values, dtype=dtype)

    boxes_np = convert(boxes, np.float64).reshape(-1, 4)
    scores_np = convert(scores, np.float64).reshape(-1)
    labels_np = convert(labels, np.int64).reshape(-1)
    if not len(boxes_np) == len(scores_np) == len(labels_np):
        raise ValueError(
            f"{where}: {len(boxes_np)} boxes, {len(scores_np)} scores, {len(labels_np)} labels"
        )
    return boxes_np, scores_np, labels_np


def _output(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, like: Any) -> dict[str, Any]:
    """Boxes sorted by decreasing score, as tensors on ``like``'s device when ``like`` is
    a tensor, else as NumPy arrays."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores, labels = boxes[order], scores[order], labels[order].astype(np.int64)
    if isinstance(like, torch.Tensor):
        dtype = like.dtype if like.is_floating_point() else torch.float32
        return {
            "boxes": torch.as_tensor(boxes, dtype=dtype, device=like.device),
            "scores": torch.as_tensor(scores, dtype=dtype, device=like.device),
            "labels": torch.as_tensor(labels, dtype=torch.long, device=like.device),
        }
    return {"boxes": boxes, "scores": scores, "labels": labels}


def _with_area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def _nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    iou_threshold: float,
    agnostic: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    groups = torch.zeros(len(labels), dtype=torch.int64) if agnostic else torch.from_numpy(labels)
    keep = batched_nms(
        torch.from_numpy(boxes), torch.from_numpy(scores), groups, iou_threshold
    ).numpy()
    return boxes[keep], scores[keep], labels[keep]


def merge_detections(
    boxes: Any,
    scores: Any,
    labels: Any,
    *,
    method: str = "nms",
    iou_threshold: float = 0.5,
    score_threshold: float = 0.0,
    image_size: tuple[int, int] | None = None,
    max_detections: int | None = None,
    conf_type: str = "avg",
    agnostic: bool = False,
) -> dict[str, Any]:
    """Merges overlapping boxes of the same class, e.g. of overlapping tiles or TTA.

    Args:
        boxes: ``(N, 4)`` xyxy pixels (NumPy array or tensor).
        scores: ``(N,)`` scores.
        labels: ``(N,)`` class indices.
        method: ``"nms"`` (keep the best box of a group) or ``"wbf"`` (average the group).
        iou_threshold: Same-class boxes overlapping by more than this are one object.
        score_threshold: Boxes scoring less are dropped first.
        image_size: ``(height, width)`` of the image; required by WBF.
        max_detections: Keep at most this many boxes (the best scores); None keeps all.
        conf_type: WBF's fused score: ``"avg"``, ``"max"``, ``"box_and_model_avg"`` or
            ``"absent_model_aware_avg"`` (see ``ensemble_boxes``).
        agnostic: Boxes of different classes overlapping by more than ``iou_threshold``
            are one object too (class-agnostic NMS; after WBF, which fuses within a
            class, the best of the fused boxes is kept).

    Returns:
        ``boxes``, ``scores``, ``labels`` sorted by decreasing score: tensors (on the
        input's device) when ``boxes`` is a tensor, else NumPy arrays.

    Raises:
        ConfigError: An unknown method or confidence type, thresholds out of range.
        ValueError: Inputs of different lengths, or WBF without ``image_size``.
    """
    return fuse_models(
        [{"boxes": boxes, "scores": scores, "labels": labels}],
        method=method,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        image_size=image_size,
        max_detections=max_detections,
        conf_type=conf_type,
        agnostic=agnostic,
    )


def fuse_models(
    detections: Sequence[Mapping[str, Any]],
    *,
    weights: Sequence[float] | None = None,
    method: str = "wbf",
    iou_threshold: float = 0.55,
    score_threshold: float = 0.0,
    image_size: tuple[int, int] | None = None,
    max_detections: int | None = None,
    conf_type: str = "avg",
    agnostic: bool = False,
) -> dict[str, Any]:
    """Fuses the detections of several models on one image into one set.

    WBF is ``ensemble_boxes``' ensemble fusion with model weights. NMS runs on all models'
    boxes together, each score multiplied by its model's weight divided by the largest
    weight (equal weights leave the scores as they are).

    Args:
        detections: Per model, ``boxes`` ``(N, 4)`` xyxy pixels, ``scores``, ``labels``.
        weights: One positive weight per model; None weighs them equally.
        method: ``"wbf"`` or ``"nms"``.
        iou_threshold: Same-class boxes overlapping by more than this are one object.
        score_threshold: Boxes scoring less (before weighting) are dropped first.
        image_size: ``(height, width)`` of the image; required by WBF.
        max_detections: Keep at most this many boxes; None keeps all.
        conf_type: WBF's fused score (see :func:`merge_detections`).
        agnostic: Suppress overlapping boxes across classes too (see
            :func:`merge_detections`).

    Returns:
        ``boxes``, ``scores``, ``labels`` sorted by decreasing score, tensors when the
        first model's boxes are a tensor, else NumPy arrays.

    Raises:
        ConfigError: An unknown method or confidence type, thresholds out of range.
        ValueError: No models, weights that do not fit, or WBF without ``image_size``.
    """
    _check(method, iou_threshold, score_threshold, conf_type)
    if not detections:
        raise ValueError("no detections to fuse")
    if weights is not None:
        weights = [float(w) for w in weights]
        if len(weights) != len(detections) or min(weights) <= 0:
            raise ValueError(f"need {len(detections)} positive weights, got {weights}")
    if max_detections is not None and max_detections < 1:
        raise ValueError(f"max_detections must be at least 1, got {max_detections}")
    models = []
    for index, item in enumerate(detections):
        boxes, scores, labels = _numpy(
            item["boxes"], item["scores"], item["labels"], where=f"model {index}"
        )
        keep = (scores >= score_threshold) & _with_area(boxes)
        models.append((boxes[keep], scores[keep], labels[keep]))
    if method == "wbf":
        if image_size is None:
            raise ValueError("WBF needs the image size (height, width)")
        height, width = (int(side) for side in image_size)
        if height < 1 or width < 1:
            raise ValueError(f"image size must be positive, got {image_size}")
        boxes, scores, labels = wbf(models, weights, (height, width), iou_threshold, conf_type)
        if agnostic:
            boxes, scores, labels = suppress_across_classes(boxes, scores, labels, iou_threshold)
    else:
        factors = [1.0] * len(models) if weights is None else [w / max(weights) for w in weights]
        boxes = np.concatenate([m[0] for m in models])
        scores = np.concatenate([m[1] * f for m, f in zip(models, factors, strict=True)])
        labels = np.concatenate([m[2] for m in models])
        boxes, scores, labels = _nms(boxes, scores, labels, iou_threshold, agnostic)
    out = _output(boxes, scores, labels, detections[0]["boxes"])
    if max_detections is not None:
        out = {key: value[:max_detections] for key, value in out.items()}
    return out


def tile_windows(
    height: int, width: int, tile: int | tuple[int, int], overlap: float = 0.25
) -> list[Window]:
    """Windows ``(y0, x0, y1, x1)`` covering an image, for tiled detection.

    Windows are equally spaced along each axis, the first at the top-left corner and the
    last flush with the bottom or right border, neighbours sharing at least ``overlap`` of
    a tile (:func:`mediscope.runtime.pipeline.window_starts`). Along an axis
    shorter than the tile there is one window, as long as the image. Rows come first:
    windows are ordered top to bottom, then left to right.

    Args:
        height: Image height in pixels.
        width: Image width in pixels.
        tile: Tile side, or (height, width).
        overlap: Share of a tile shared with the next one, in [0, 1).

    Returns:
        The windows; end coordinates are exclusive (``image[y0:y1, x0:x1]``).

    Raises:
        ConfigError: A tile below 1 pixel or an overlap out of range.
        ValueError: An image without pixels.
    """
    tile_h, tile_w = (tile, tile) if isinstance(tile, int) else (int(tile[0]), int(tile[1]))
    if tile_h < 1 or tile_w < 1:
        raise ConfigError(
            f"tile must be positive sizes (height, width), got {tile}",
            where="inference.window",
            hint="e.g. window: [640, 640]",
        )
    if not 0 <= overlap < 1:
        raise ConfigError(
            f"overlap must be in [0, 1), got {overlap}",
            where="inference.overlap",
            hint="0.2 to 0.3 lets an object cut by one tile lie whole in the next",
        )
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {(height, width)}")
    return [
        (y, x, min(y + tile_h, height), min(x + tile_w, width))
        for y in window_starts(height, tile_h, overlap)
        for x in window_starts(width, tile_w, overlap)
    ]
