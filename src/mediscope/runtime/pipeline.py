"""Pre- and post-processing of every model format, in NumPy.

The same functions serve eager PyTorch, TorchScript and ONNX models, so the formats can
differ only in the network: images become normalised ``(C, H, W)`` float32 arrays
(:func:`prepare`), large images are predicted by sliding window (segmentation,
:func:`sliding_window`) or in overlapping tiles (detection, :func:`tile_windows`), and a
dense detector's per-anchor boxes and scores become detections by score threshold,
top-k and per-class NMS (:func:`dense_detections`).

Example:
    >>> image = np.zeros((30, 40, 3), dtype=np.uint8)
    >>> prepare(image, size=(16, 16), mean=[0.5] * 3, std=[0.5] * 3).shape
    (3, 16, 16)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from mediscope.errors import ConfigError

#: Maps a batch ``(N, C, h, w)`` to probabilities ``(N, K, h, w)``.
MapForward = Callable[[np.ndarray], np.ndarray]
#: A window ``(y0, x0, y1, x1)``; end coordinates exclusive.
Window = tuple[int, int, int, int]

#: The smallest weight of a window pixel, relative to the centre's 1 (as in
#: :mod:`mediscope.inference.sliding_window`).
MIN_WEIGHT = 1e-3
#: Flips of test-time augmentation: the axes of ``(N, C, H, W)`` each reverses.
FLIP_AXES: dict[str, tuple[int, ...]] = {"h": (-1,), "v": (-2,), "hv": (-2, -1)}


def prepare(
    image: np.ndarray,
    *,
    size: tuple[int, int] | None,
    mean: Sequence[float],
    std: Sequence[float],
) -> np.ndarray:
    """An ``H x W x C`` uint8 image as the network's ``(C, h, w)`` float32 input.

    Resized with bilinear interpolation to ``size`` (``None`` keeps the image's size),
    then normalised as in training: ``(pixel / 255 - mean) / std`` per channel.
    """
    if image.ndim == 2:
        image = image[:, :, None]
    if size is not None and tuple(image.shape[:2]) != tuple(size):
        resized = cv2.resize(image, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
        image = resized if resized.ndim == 3 else resized[:, :, None]
    # A lookup table per channel, computed in float32 as albumentations' Normalize does
    # (``(pixel - 255 mean) * 1 / (255 std)``), so the inputs are bit-identical to training's.
    mean_px = np.asarray(mean, dtype=np.float32) * np.float32(255.0)
    denominator = np.reciprocal(np.asarray(std, dtype=np.float32) * np.float32(255.0))
    levels = np.arange(256, dtype=np.float32)
    luts = (levels[None, :] - mean_px[:, None]) * denominator[:, None]
    planes = [luts[c][image[:, :, c]] for c in range(image.shape[2])]
    return np.ascontiguousarray(np.stack(planes), dtype=np.float32)


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(K, h, w)`` maps resized to ``(K, *size)`` bilinearly (half-pixel centres)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    height, width = size
    channels = [cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) for m in maps]
    return np.stack(channels).astype(np.float32, copy=False)


def with_flips(forward: MapForward, flips: Sequence[str] = ("h", "v", "hv")) -> MapForward:
    """Averages ``forward``'s probabilities over the input and its flips (test-time
    augmentation; each flipped map is flipped back before averaging)."""

    def averaged(batch: np.ndarray) -> np.ndarray:
        total = forward(batch).astype(np.float32)
        for flip in flips:
            axes = FLIP_AXES[flip]
            flipped = np.ascontiguousarray(np.flip(batch, axis=axes))
            total = total + np.flip(forward(flipped).astype(np.float32), axis=axes)
        return total / np.float32(1 + len(flips))

    return averaged


def window_starts(length: int, window: int, overlap: float) -> list[int]:
    """Start offsets of equally spaced windows covering ``0 .. length`` (the first at 0,
    the last ending at ``length``, neighbours sharing at least ``overlap`` of a window)."""
    if length <= window:
        return [0]
    stride = max(1, int(window * (1 - overlap)))
    steps = math.ceil((length - window) / stride)
    return [round(i * (length - window) / steps) for i in range(steps + 1)]


def gaussian_weight(window: tuple[int, int], sigma_scale: float = 0.125) -> np.ndarray:
    """The ``(h, w)`` weight of a window's pixels: 1 at the centre, at least
    :data:`MIN_WEIGHT` at the border."""
    axes = []
    for side in window:
        offsets = np.arange(side, dtype=np.float32) - np.float32((side - 1) / 2)
        sigma = np.float32(side * sigma_scale)
        axes.append(np.exp(-(offsets**2) / (2 * sigma**2)).astype(np.float32))
    weight = axes[0][:, None] * axes[1][None, :]
    return np.maximum(weight / weight.max(), np.float32(MIN_WEIGHT)).astype(np.float32)


def check_window(window: tuple[int, int], overlap: float, batch_size: int) -> None:
    """Refuses a window, overlap or batch size out of range, naming the setting."""
    if len(window) != 2 or any(int(side) < 1 for side in window):
        raise ConfigError(
            f"window must be two positive sizes (height, width), got {window}",
            where="inference.window",
            hint="e.g. window: [256, 256]",
        )
    if not 0 <= overlap < 1:
        raise ConfigError(
            f"overlap must be in [0, 1), got {overlap}",
            where="inference.overlap",
            hint="0.25 or 0.5 are usual",
        )
    if batch_size < 1:
        raise ConfigError(
            f"batch size must be at least 1, got {batch_size}",
            where="inference.batch_size",
            hint="windows per forward pass, e.g. 4",
        )


def sliding_window(
    forward: MapForward,
    image: np.ndarray,
    *,
    window: tuple[int, int],
    overlap: float = 0.25,
    batch_size: int = 4,
    gaussian: bool = True,
) -> np.ndarray:
    """Predicts a ``(C, H, W)`` image window by window; blends the windows' maps.

    Every pixel's map is the weighted mean of the windows covering it (a Gaussian weight
    centred on each window, or equal weights). An image smaller than the window is padded
    with its repeated border and the result cropped back.

    Returns:
        ``(K, H, W)`` float32.
    """
    check_window(window, overlap, batch_size)
    _, height, width = image.shape
    win_h, win_w = int(window[0]), int(window[1])
    pad_h, pad_w = max(0, win_h - height), max(0, win_w - width)
    if pad_h or pad_w:
        image = np.pad(image, ((0, 0), (0, pad_h), (0, pad_w)), mode="edge")
    full_h, full_w = image.shape[-2:]
    weight = gaussian_weight((win_h, win_w)) if gaussian else np.ones((win_h, win_w), np.float32)
    positions = [
        (y, x)
        for y in window_starts(full_h, win_h, overlap)
        for x in window_starts(full_w, win_w, overlap)
    ]
    norm = np.zeros((full_h, full_w), dtype=np.float32)
    for y, x in positions:
        norm[y : y + win_h, x : x + win_w] += weight
    total: np.ndarray | None = None
    for first in range(0, len(positions), batch_size):
        chunk = positions[first : first + batch_size]
        batch = np.stack([image[:, y : y + win_h, x : x + win_w] for y, x in chunk])
        maps = np.asarray(forward(np.ascontiguousarray(batch)), dtype=np.float32)
        if maps.ndim != 4 or maps.shape[0] != len(chunk) or maps.shape[-2:] != (win_h, win_w):
            raise ValueError(
                f"the model must map {tuple(batch.shape)} to (N, K, {win_h}, {win_w}); "
                f"it returned {tuple(maps.shape)}"
            )
        if total is None:
            total = np.zeros((maps.shape[1], full_h, full_w), dtype=np.float32)
        for (y, x), tile_map in zip(chunk, maps, strict=True):
            total[:, y : y + win_h, x : x + win_w] += tile_map * weight
    assert total is not None  # there is always at least one window
    result: np.ndarray = (total / norm)[:, :height, :width]
    return result


def tile_windows(
    height: int, width: int, tile: tuple[int, int], overlap: float = 0.25
) -> list[Window]:
    """Windows ``(y0, x0, y1, x1)`` covering an image, rows first, for tiled detection.

    Along an axis shorter than the tile there is one window, as long as the image.
    """
    tile_h, tile_w = int(tile[0]), int(tile[1])
    check_window((tile_h, tile_w), overlap, 1)
    return [
        (y, x, min(y + tile_h, height), min(x + tile_w, width))
        for y in window_starts(height, tile_h, overlap)
        for x in window_starts(width, tile_w, overlap)
    ]


def _overlaps(box: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Intersection areas of one xyxy box with each of ``others``, its area and theirs."""
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = float((box[2] - box[0]) * (box[3] - box[1]))
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter, area, areas


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each of ``others`` ``(N, 4)``."""
    inter, area, areas = _overlaps(box, others)
    union = area + areas - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    iou_threshold: float,
    *,
    agnostic: bool = False,
) -> np.ndarray:
    """Non-maximum suppression: indices kept, by decreasing score.

    A box overlapping a better-scored kept box of its class by more than
    ``iou_threshold`` is dropped (as torchvision's ``batched_nms``); with ``agnostic``,
    a better-scored kept box of any class suppresses it (one box per object, whatever
    class the model hesitated between).

    Example:
        >>> boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10]], dtype=np.float32)
        >>> scores, labels = np.array([0.9, 0.8]), np.array([0, 1])
        >>> nms(boxes, scores, labels, 0.5).tolist()
        [0, 1]
        >>> nms(boxes, scores, labels, 0.5, agnostic=True).tolist()
        [0]
    """
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    suppressed = np.zeros(len(scores), dtype=bool)
    for rank, index in enumerate(order):
        if suppressed[index]:
            continue
        keep.append(int(index))
        rest = order[rank + 1 :]
        same = np.ones(len(rest), dtype=bool) if agnostic else labels[rest] == labels[index]
        rest = rest[same & ~suppressed[rest]]
        if len(rest):
            suppressed[rest[box_iou(boxes[index], boxes[rest]) > iou_threshold]] = True
    return np.asarray(keep, dtype=np.int64)


def dense_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    *,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
    pre_nms_top: int = 1000,
    agnostic: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's detections from a dense detector's outputs.

    Args:
        boxes: ``(A, 4)`` xyxy per anchor, in input pixels.
        scores: ``(A, C)`` per anchor and class.
        score_threshold: Candidates scoring this or less are dropped.
        iou_threshold: NMS threshold.
        max_detections: Boxes kept, best first.
        pre_nms_top: Candidates kept (best first) before NMS.
        agnostic: Suppress overlapping boxes across classes (see :func:`nms`).

    Returns:
        ``boxes (N, 4)``, ``scores (N,)``, ``labels (N,)``, by decreasing score.
    """
    num_classes = scores.shape[-1]
    flat = scores.reshape(-1)
    candidates = np.flatnonzero(flat > score_threshold)
    if len(candidates) > pre_nms_top:
        best = np.argsort(-flat[candidates], kind="stable")[:pre_nms_top]
        candidates = candidates[best]
    anchor = candidates // num_classes
    labels = (candidates % num_classes).astype(np.int64)
    picked_boxes = boxes[anchor].astype(np.float32)
    picked_scores = flat[candidates].astype(np.float32)
    keep = nms(picked_boxes, picked_scores, labels, iou_threshold, agnostic=agnostic)
    keep = keep[:max_detections]
    return picked_boxes[keep], picked_scores[keep], labels[keep]


#: Test-time augmentation of a detector: each flipped view keeps its boxes down to this
#: score (or the threshold asked for, when lower), so that an object a view scores just
#: under the threshold still adds its share to the views' mean.
TTA_VIEW_THRESHOLD = 0.05
#: The views of detection test-time augmentation: the image and its flips.
TTA_VIEWS = ("", *FLIP_AXES)


def flip_boxes(boxes: np.ndarray, flip: str, size: tuple[int, int]) -> np.ndarray:
    """xyxy ``boxes`` of an image of ``size`` ``(H, W)`` flipped by ``flip`` (``h``, ``v``
    or ``hv``; ``""`` keeps them). Flipping twice gives the boxes back.

    Example:
        >>> flip_boxes(np.array([[10.0, 20.0, 30.0, 25.0]]), "hv", (100, 200)).tolist()
        [[170.0, 75.0, 190.0, 80.0]]
    """
    out = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    height, width = size
    if "h" in flip:
        out[:, [0, 2]] = width - out[:, [2, 0]]
    if "v" in flip:
        out[:, [1, 3]] = height - out[:, [3, 1]]
    return out


def fuse_views(
    views: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    num_classes: int,
    *,
    iou_threshold: float,
    score_threshold: float,
    max_detections: int | None = None,
    agnostic: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's detections from several views of it (test-time augmentation), each
    view's boxes already mapped back to the image.

    Boxes are taken by decreasing score; each untaken box starts an object, which takes
    from every other view its untaken box overlapping it most, by IoU above
    ``iou_threshold``: a box of any class with ``agnostic`` (each view should then hold
    one box per object, as agnostic NMS leaves it), else of the object's class. The
    views vote on the class: every box adds its score to its class, the sums are divided
    by the number of views, and the object gets the class with the largest mean and that
    mean as its score. An object that some views miss scores lower, so one view's stray
    box drops under the threshold. Its box is the score-weighted mean of its boxes (as
    weighted boxes fusion does).

    Args:
        views: ``(boxes (N, 4), scores (N,), labels (N,))`` per view.
        num_classes: Number of classes.
        iou_threshold: Boxes of two views overlapping more are one object.
        score_threshold: Objects whose mean score is lower are dropped.
        max_detections: Objects kept, best first (None: all).
        agnostic: The views' boxes of different classes may be one object.

    Returns:
        ``boxes (M, 4)``, ``scores (M,)``, ``labels (M,)``, by decreasing score.

    Example:
        >>> box = np.array([[0.0, 0.0, 10.0, 10.0]])
        >>> views = [(box, np.array([0.8]), np.array([1])), (box + 1, np.array([0.4]),
        ...          np.array([0])), (box, np.array([0.6]), np.array([1]))]
        >>> boxes, scores, labels = fuse_views(views, 2, iou_threshold=0.5, score_threshold=0.1)
        >>> labels.tolist(), scores.round(3).tolist()
        ([1], [0.467])
    """
    count = len(views)
    boxes = np.concatenate([np.asarray(v[0], np.float64).reshape(-1, 4) for v in views])
    scores = np.concatenate([np.asarray(v[1], np.float64).reshape(-1) for v in views])
    labels = np.concatenate([np.asarray(v[2], np.int64).reshape(-1) for v in views])
    view_of = np.concatenate([np.full(len(np.reshape(v[1], -1)), i) for i, v in enumerate(views)])
    taken = np.zeros(len(scores), dtype=bool)
    out_boxes, out_scores, out_labels = [], [], []
    for seed in np.argsort(-scores, kind="stable"):
        if taken[seed]:
            continue
        taken[seed] = True
        members = [int(seed)]
        for view in range(count):
            if view == view_of[seed]:
                continue
            mine = (view_of == view) & ~taken
            rest = np.flatnonzero(mine if agnostic else mine & (labels == labels[seed]))
            if not len(rest):
                continue
            overlap = box_iou(boxes[seed], boxes[rest])
            best = int(np.argmax(overlap))
            if overlap[best] > iou_threshold:
                taken[rest[best]] = True
                members.append(int(rest[best]))
        votes = np.bincount(labels[members], weights=scores[members], minlength=num_classes)
        label = int(np.argmax(votes))
        score = float(votes[label]) / count
        if score < score_threshold:
            continue
        weights = scores[members][:, None]
        out_boxes.append((boxes[members] * weights).sum(axis=0) / weights.sum())
        out_scores.append(score)
        out_labels.append(label)
    order = np.argsort(-np.asarray(out_scores, dtype=np.float64), kind="stable")[:max_detections]
    return (
        np.asarray(out_boxes, dtype=np.float64).reshape(-1, 4)[order],
        np.asarray(out_scores, dtype=np.float64)[order],
        np.asarray(out_labels, dtype=np.int64)[order],
    )


#: One image's ``(boxes (N, 4), scores (N,), labels (N,))``.
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]


def vote_over_flips(
    detect: Callable[[str, float], Sequence[Detections]],
    size: tuple[int, int],
    num_classes: int,
    *,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int | None,
    agnostic: bool,
) -> list[Detections]:
    """Detections per image of a batch, the images and their flips voting (test-time
    augmentation of a detector; every model format and evaluation use it).

    Args:
        detect: ``detect(flip, threshold)`` gives the detections per image of the batch
            flipped by ``flip`` (one of :data:`TTA_VIEWS`), in the flipped input's pixels,
            down to ``threshold``.
        size: ``(H, W)`` of the network's input.
        num_classes: Number of classes.
        score_threshold: Objects whose mean score over the views is lower are dropped.
        iou_threshold: Boxes of two views overlapping more are one object; with
            ``agnostic`` also the threshold of each view's suppression across classes.
        max_detections: Objects kept per image, best first.
        agnostic: Each view keeps one box per object whatever its class, and the views
            vote on the class (see :func:`fuse_views`).
    """
    low = min(score_threshold, TTA_VIEW_THRESHOLD)
    views = []
    for flip in TTA_VIEWS:
        found = list(detect(flip, low))
        if agnostic:  # one box per object and view: the views vote on it
            found = [suppress_across_classes(*f, iou_threshold) for f in found]
        views.append([(flip_boxes(b, flip, size), s, k) for b, s, k in found])
    return [
        fuse_views(
            per_image,
            num_classes,
            iou_threshold=iou_threshold,
            score_threshold=score_threshold,
            max_detections=max_detections,
            agnostic=agnostic,
        )
        for per_image in zip(*views, strict=True)
    ]


def _with_area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def wbf(
    models: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    weights: Sequence[float] | None,
    image_size: tuple[int, int],
    iou_threshold: float,
    conf_type: str = "avg",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted boxes fusion (``ensemble_boxes``) of several box sets of one image.

    Boxes are divided by the image's width and height (clipped to it) for the fusion
    and multiplied back after it; boxes without area are dropped.

    Raises:
        ConfigError: when ``ensemble-boxes`` is not installed.
    """
    try:
        from ensemble_boxes import weighted_boxes_fusion
    except ImportError:
        raise ConfigError(
            "merging boxes by weighted boxes fusion needs ensemble-boxes",
            where="inference.merge",
            hint="pip install ensemble-boxes, or use merge: nms",
        ) from None

    height, width = image_size
    scale = np.array([width, height, width, height], dtype=np.float64)
    normalised = []
    for boxes, scores, labels in models:
        unit = np.clip(boxes / scale, 0.0, 1.0)
        keep = _with_area(unit)  # clipping can flatten a box lying outside the image
        normalised.append((unit[keep], scores[keep], labels[keep]))
    if not any(len(boxes) for boxes, _, _ in normalised):
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
    fused, fused_scores, fused_labels = weighted_boxes_fusion(
        [m[0].tolist() for m in normalised],
        [m[1].tolist() for m in normalised],
        [m[2].tolist() for m in normalised],
        weights=None if weights is None else list(weights),
        iou_thr=iou_threshold,
        skip_box_thr=0.0,
        conf_type=conf_type,
    )
    return (
        np.asarray(fused, dtype=np.float64).reshape(-1, 4) * scale,
        np.asarray(fused_scores, dtype=np.float64),
        np.asarray(fused_labels).astype(np.int64),
    )


#: Box sides within this many pixels of an inner tile edge are cut by it (the tile saw
#: only a part of the object).
EDGE_MARGIN = 4.0
#: ``inference.merge`` methods.
MERGE_METHODS = ("nms", "wbf", "edge")


def box_ios(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over the smaller box of one xyxy box with each of ``others`` ``(N, 4)``.

    A piece of an object cut by a tile edge lies inside the whole object's box: its
    intersection over the smaller box is 1 where its IoU is small.

    Example:
        >>> box_ios(np.array([0, 0, 10, 10]), np.array([[0, 0, 5, 10], [20, 20, 30, 30]]))
        array([1., 0.])
    """
    inter, area, areas = _overlaps(box, others)
    smaller = np.minimum(area, areas)
    with np.errstate(divide="ignore", invalid="ignore"):
        ios = np.where(smaller > 0, inter / smaller, 0.0)
    return ios


def cut_by_edge(
    boxes: np.ndarray,
    window: Window,
    image_size: tuple[int, int],
    margin: float = EDGE_MARGIN,
) -> np.ndarray:
    """Which boxes of a tile touch one of its inner edges (edges that are not the image's
    border): ``(N,)`` bool. ``boxes`` are xyxy in image pixels, ``window`` is
    ``(y0, x0, y1, x1)``.

    Example:
        >>> boxes = np.array([[100, 10, 130, 40], [150, 50, 200, 80]], dtype=float)
        >>> cut_by_edge(boxes, (0, 100, 200, 200), (400, 400)).tolist()
        [True, True]
        >>> cut_by_edge(boxes, (0, 0, 200, 300), (400, 400)).tolist()
        [False, False]
    """
    y0, x0, y1, x1 = window
    height, width = image_size
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cut = np.zeros(len(boxes), dtype=bool)
    if x0 > 0:
        cut |= boxes[:, 0] <= x0 + margin
    if y0 > 0:
        cut |= boxes[:, 1] <= y0 + margin
    if x1 < width:
        cut |= boxes[:, 2] >= x1 - margin
    if y1 < height:
        cut |= boxes[:, 3] >= y1 - margin
    return cut


def edge_merge(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    tiles: np.ndarray,
    cut: np.ndarray,
    *,
    iou_threshold: float,
    ios_threshold: float = 0.5,
    agnostic: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merges the boxes of overlapping tiles into one box per object, as SAHI's greedy
    non-maximum merging does, but only across tiles.

    Boxes are taken by decreasing score; each untaken box starts an object, which then
    takes, from every tile it has no box of yet, the same-class box that matches it best:
    a box overlapping it by IoU above ``iou_threshold`` (the object seen whole by two
    tiles), or, when that box or the object is cut by a tile edge, by intersection over
    the smaller box above ``ios_threshold`` (a piece of it). This repeats until no tile
    adds a box. Two boxes of one tile are never merged (the model's own NMS kept both),
    so touching objects stay apart.

    The object's box is its best-scored box that no tile edge cuts, and, when every tile
    saw only a piece of it, the union of the pieces; its score is its best score.

    Args:
        boxes: ``(N, 4)`` xyxy in image pixels.
        scores: ``(N,)``.
        labels: ``(N,)`` class indices.
        tiles: ``(N,)`` the tile each box comes from.
        cut: ``(N,)`` whether a tile edge cuts the box (:func:`cut_by_edge`).
        iou_threshold: Whole views of one object overlap by more than this.
        ios_threshold: A piece lies in its object's box by more than this share.
        agnostic: Boxes of any class may be one object (it keeps its best box's class);
            else only boxes of one class.

    Returns:
        ``boxes``, ``scores``, ``labels``, one per object, by decreasing score.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    tiles = np.asarray(tiles, dtype=np.int64).reshape(-1)
    cut = np.asarray(cut, dtype=bool).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    taken = np.zeros(len(boxes), dtype=bool)
    group = np.zeros_like(labels) if agnostic else labels
    by_class = {int(k): order[group[order] == k] for k in np.unique(group)}
    out_boxes, out_scores, out_labels = [], [], []
    for seed in order:
        if taken[seed]:
            continue
        taken[seed] = True
        members = [int(seed)]
        seen = {int(tiles[seed])}
        box = boxes[seed].copy()
        while True:
            rest = by_class[int(group[seed])]
            rest = rest[~taken[rest] & ~np.isin(tiles[rest], list(seen))]
            if not len(rest):
                break
            iou = box_iou(box, boxes[rest])
            ios = box_ios(box, boxes[rest])
            pieces = cut[rest] | bool(cut[members].any())
            match = (iou > iou_threshold) | (pieces & (ios > ios_threshold))
            if not match.any():
                break
            found, fit = rest[match], (iou + ios)[match]
            # the best match of every tile (one object is at most one box of a tile)
            best: dict[int, tuple[float, int]] = {}
            for index, value in zip(found.tolist(), fit.tolist(), strict=True):
                tile = int(tiles[index])
                if tile not in best or value > best[tile][0]:
                    best[tile] = (value, index)
            for _, index in best.values():
                taken[index] = True
                members.append(index)
                seen.add(int(tiles[index]))
            whole = [m for m in members if not cut[m]]
            if whole:
                box = boxes[whole[0]].copy()  # members are in decreasing score
                # pieces still grow the union below only when no tile saw it whole
            else:
                chosen = boxes[members]
                box = np.array(
                    [*chosen[:, :2].min(axis=0), *chosen[:, 2:].max(axis=0)], dtype=np.float64
                )
        out_boxes.append(box)
        out_scores.append(scores[seed])
        out_labels.append(labels[seed])
    return (
        np.asarray(out_boxes, dtype=np.float64).reshape(-1, 4),
        np.asarray(out_scores, dtype=np.float64),
        np.asarray(out_labels, dtype=np.int64),
    )


def merge_tiles(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    method: str,
    iou_threshold: float,
    image_size: tuple[int, int],
    max_detections: int | None = None,
    tiles: np.ndarray | None = None,
    windows: Sequence[Window] | None = None,
    agnostic: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merges the boxes of overlapping tiles of one image; boxes without area are
    dropped; the result is sorted by decreasing score.

    Methods: ``nms``, ``wbf`` (weighted boxes fusion) or ``edge`` (:func:`edge_merge`:
    one box per object, also for objects cut by tile edges). ``edge`` needs ``tiles``
    (each box's index in ``windows``) and ``windows``; without them every box counts as
    its own uncut tile, which merges as ``nms`` does.

    With ``agnostic``, boxes of different classes overlapping by more than
    ``iou_threshold`` are one object too: NMS keeps the best of them; WBF fuses within
    a class, then the best of the fused boxes is kept (:func:`suppress_across_classes`);
    ``edge`` merges across classes (the object keeps its best box's class).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if method == "wbf":
        boxes, scores, labels = wbf([(boxes, scores, labels)], None, image_size, iou_threshold)
        if agnostic:
            boxes, scores, labels = suppress_across_classes(boxes, scores, labels, iou_threshold)
    elif method in ("nms", "edge"):
        keep = _with_area(boxes)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        if method == "nms":
            kept = nms(boxes, scores, labels, iou_threshold, agnostic=agnostic)
            boxes, scores, labels = boxes[kept], scores[kept], labels[kept]
        else:
            if tiles is None or windows is None:
                tile_of = np.arange(len(boxes))
                cut = np.zeros(len(boxes), dtype=bool)
            else:
                tile_of = np.asarray(tiles, dtype=np.int64).reshape(-1)[keep]
                cut = np.zeros(len(boxes), dtype=bool)
                for index, window in enumerate(windows):
                    mine = tile_of == index
                    if mine.any():
                        cut[mine] = cut_by_edge(boxes[mine], window, image_size)
            if agnostic:  # one box per object within each tile first, whatever its class
                kept = nms(boxes, scores, tile_of, iou_threshold)
                boxes, scores, labels = boxes[kept], scores[kept], labels[kept]
                tile_of, cut = tile_of[kept], cut[kept]
            boxes, scores, labels = edge_merge(
                boxes, scores, labels, tile_of, cut, iou_threshold=iou_threshold,
                agnostic=agnostic,
            )  # fmt: skip
    else:
        raise ConfigError(
            f"unknown box merging method {method!r}",
            where="inference.merge",
            hint=", ".join(MERGE_METHODS),
        )
    order = np.argsort(-scores, kind="stable")[:max_detections]
    return boxes[order], scores[order], labels[order]


def suppress_across_classes(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class-agnostic NMS of one image's detections: of boxes overlapping by more than
    ``iou_threshold``, whatever their classes, the best-scored one is kept (its class
    with it). The result is sorted by decreasing score."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    scores, labels = np.asarray(scores).reshape(-1), np.asarray(labels).reshape(-1)
    kept = nms(boxes, scores, labels, iou_threshold, agnostic=True)
    return boxes[kept], scores[kept], labels[kept]
