"""Detection metrics: COCO-style mean average precision and recall, written in NumPy.

:func:`evaluate_detections` reproduces ``pycocotools``' ``COCOeval`` for boxes (same
matching, same 101-point interpolated precision, same means) without needing pycocotools
at run time; :class:`DetectionMAP` accumulates batches for per-epoch validation.

Conventions:
    * Boxes are ``(N, 4)`` ``x1, y1, x2, y2`` in pixels; labels are class indices
      ``0..C-1`` (no background class); a box's area is ``(x2 - x1) * (y2 - y1)``.
    * Detections of an image and class are matched greedily, highest score first, each to
      the unmatched ground-truth box of highest IoU at or above the threshold (ties go to
      the later box, as in COCOeval). Only the ``max_detections`` best-scored detections
      of each image *and class* take part (COCO's ``maxDets``).
    * For the small / medium / large means, ground-truth boxes outside the area range are
      ignored (a detection matched to one counts neither as true nor false positive), and
      so are unmatched detections outside the range.
    * A class without any ground-truth box (in the area range) has no AP or recall: COCO
      stores -1, here it is NaN (null in JSON), and it is left out of the means. Means are
      NaN when no class has ground truth.
    * Crowd regions are not supported (no box is ever a crowd).

Example:
    >>> import numpy as np
    >>> truth = [{"boxes": np.array([[10, 10, 50, 50]]), "labels": np.array([0])}]
    >>> found = [{"boxes": np.array([[12, 10, 50, 52]]), "scores": np.array([0.9]),
    ...           "labels": np.array([0])}]
    >>> round(evaluate_detections(found, truth, ["cell"]).metrics["map_50"], 6)
    1.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

#: COCO's area ranges in square pixels: (lower, upper), both inclusive.
COCO_AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e10),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e10),
}

#: COCO's IoU thresholds 0.50, 0.55, ..., 0.95.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)

#: COCO's recall points 0, 0.01, ..., 1 at which the precision envelope is read.
RECALL_POINTS = np.linspace(0.0, 1.0, 101)

#: The keys :class:`DetectionMAP` logs (after its prefix).
EPOCH_KEYS = ("map", "map_50", "map_75")

Array = np.ndarray | torch.Tensor


@dataclass
class PRCurve:
    """Precision against recall of one class at IoU 0.5, over all its detections.

    One point per detection, in decreasing score order (all images together).

    Attributes:
        recall: True positives so far / ground-truth boxes.
        precision: The interpolated precision: the best precision at this recall or
            beyond (the envelope whose 101-point mean is the AP).
        scores: The detection scores, i.e. the score threshold of each point.
    """

    recall: np.ndarray
    precision: np.ndarray
    scores: np.ndarray


@dataclass
class DetectionReport:
    """What :func:`evaluate_detections` found.

    Attributes:
        metrics: Flat metrics (see :func:`evaluate_detections`).
        classes: The class names.
        curves: Class name to its :class:`PRCurve` at IoU 0.5; classes without ground
            truth are left out.
        precision: ``(T, R, K, A, M)`` interpolated precision as in ``COCOeval.eval``:
            IoU thresholds, recall points, classes, area ranges, detection limits; -1
            where a class has no ground truth.
        recall: ``(T, K, A, M)`` recall, -1 likewise.
        iou_thresholds: The T IoU thresholds of the arrays.
        area_ranges: The A area range names, in the arrays' order.
        max_detections: The M detection limits, in the arrays' order.
    """

    metrics: dict[str, float]
    classes: list[str]
    curves: dict[str, PRCurve] = field(default_factory=dict)
    precision: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0, 0, 0)))
    recall: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0, 0)))
    iou_thresholds: np.ndarray = field(default_factory=lambda: COCO_IOU_THRESHOLDS.copy())
    area_ranges: list[str] = field(default_factory=lambda: list(COCO_AREA_RANGES))
    max_detections: list[int] = field(default_factory=lambda: [1, 10, 100])


def _as_numpy(values: Any, dtype: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


def _image(item: Mapping[str, Any], index: int, kind: str, *, scores: bool) -> dict[str, Any]:
    """One image's boxes, labels (and scores) as NumPy arrays, checked."""
    try:
        boxes = _as_numpy(item["boxes"], np.float64).reshape(-1, 4)
        labels = _as_numpy(item["labels"], np.int64).reshape(-1)
        out = {"boxes": boxes, "labels": labels}
        if scores:
            out["scores"] = _as_numpy(item["scores"], np.float64).reshape(-1)
    except KeyError as exc:
        raise ValueError(f"{kind} of image {index} has no {exc.args[0]!r}") from None
    except ValueError:
        raise ValueError(
            f"{kind} of image {index}: boxes must be (N, 4), scores and labels numbers"
        ) from None
    if any(len(v) != len(boxes) for v in out.values()):
        sizes = {k: len(v) for k, v in out.items()}
        raise ValueError(f"{kind} of image {index}: different lengths {sizes}")
    return out


def box_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """``(N, M)`` IoU of xyxy boxes; 0 where boxes do not overlap or have no area."""
    boxes1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    boxes2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    width = np.minimum(boxes1[:, None, 2], boxes2[None, :, 2]) - np.maximum(
        boxes1[:, None, 0], boxes2[None, :, 0]
    )
    height = np.minimum(boxes1[:, None, 3], boxes2[None, :, 3]) - np.maximum(
        boxes1[:, None, 1], boxes2[None, :, 1]
    )
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)
    union = _area(boxes1)[:, None] + _area(boxes2)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


@dataclass
class _Matches:
    """The detections of one class over all images, in COCO's concatenation order."""

    scores: list[np.ndarray] = field(default_factory=list)  # (D,) per image and class
    ranks: list[np.ndarray] = field(default_factory=list)  # rank within image and class
    matched: list[np.ndarray] = field(default_factory=list)  # (A, T, D) bool
    ignored: list[np.ndarray] = field(default_factory=list)  # (A, T, D) bool
    counted_gt: np.ndarray | None = None  # (A,) non-ignored ground-truth boxes


def _match_image_class(
    dt_boxes: np.ndarray,
    gt_boxes: np.ndarray,
    thresholds: np.ndarray,
    ranges: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COCOeval's ``evaluateImg`` for all area ranges and thresholds at once.

    Args:
        dt_boxes: ``(D, 4)`` detections sorted by decreasing score, already cut to the
            detection limit.
        gt_boxes: ``(G, 4)`` ground truth in its original order.
        thresholds: ``(T,)`` IoU thresholds (capped below 1 as COCO does).
        ranges: ``(A, 2)`` area ranges.

    Returns:
        ``matched`` and ``ignored`` ``(A, T, D)`` for the detections, and the number of
        non-ignored ground-truth boxes per area range ``(A,)``.
    """
    n_areas, n_thr, n_dt, n_gt = len(ranges), len(thresholds), len(dt_boxes), len(gt_boxes)
    gt_area = _area(gt_boxes)
    gt_ignored = (gt_area[None, :] < ranges[:, :1]) | (gt_area[None, :] > ranges[:, 1:])  # (A, G)
    matched = np.zeros((n_areas, n_thr, n_dt), dtype=bool)
    ignored = np.zeros((n_areas, n_thr, n_dt), dtype=bool)
    if n_dt and n_gt:
        ious = box_iou(dt_boxes, gt_boxes)
        taken = np.zeros((n_areas, n_thr, n_gt), dtype=bool)
        over: np.ndarray = ious[:, None, :] >= thresholds[None, :, None]  # (D, T, G)
        close = np.asarray(over.any(axis=1))  # (D, G): ground truth a detection can match at all
        n_close = close.sum(axis=1)
        for d in np.flatnonzero(n_close):
            if n_close[d] == 1:
                # the usual case, one candidate: if it is still free everywhere, it is
                # matched at every threshold its IoU reaches, whatever the area range
                g = int(close[d].argmax())
                if not taken[:, :, g].any():
                    reached = over[d, :, g]
                    taken[:, reached, g] = True
                    matched[:, reached, d] = True
                    ignored[:, reached, d] = gt_ignored[:, g, None]
                    continue
            row = ious[d]
            eligible = over[d][None] & ~taken  # (A, T, G)
            regular = eligible & ~gt_ignored[:, None, :]
            # a regular (non-ignored) box is preferred; ignored ones only when none fits
            candidates = np.where(regular.any(axis=-1, keepdims=True), regular, eligible)
            found = candidates.any(axis=-1)
            if not found.any():
                continue
            values = np.where(candidates, row, -1.0)
            best = n_gt - 1 - values[..., ::-1].argmax(axis=-1)  # the last of equal IoUs
            a_idx, t_idx = np.nonzero(found)
            g_idx = best[a_idx, t_idx]
            taken[a_idx, t_idx, g_idx] = True
            matched[a_idx, t_idx, d] = True
            ignored[a_idx, t_idx, d] = gt_ignored[a_idx, g_idx]
    dt_area = _area(dt_boxes)
    outside = (dt_area[None, :] < ranges[:, :1]) | (dt_area[None, :] > ranges[:, 1:])  # (A, D)
    ignored |= ~matched & outside[:, None, :]
    return matched, ignored, (~gt_ignored).sum(axis=1)


def _accumulate(
    found: _Matches, n_thr: int, limits: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """COCOeval's ``accumulate`` for one class.

    Returns:
        ``(T, R, A, M)`` precision, ``(T, A, M)`` recall (-1 without ground truth), and
        per threshold the (recall, precision envelope, scores) of area "all" at the
        largest detection limit.
    """
    n_areas = 0 if found.counted_gt is None else len(found.counted_gt)
    precision = -np.ones((n_thr, len(RECALL_POINTS), n_areas, len(limits)))
    recall = -np.ones((n_thr, n_areas, len(limits)))
    curves: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    if found.counted_gt is None:
        return precision, recall, curves
    if found.scores:
        scores = np.concatenate(found.scores)
        ranks = np.concatenate(found.ranks)
        matched = np.concatenate(found.matched, axis=-1)
        ignored = np.concatenate(found.ignored, axis=-1)
    else:
        scores = ranks = np.zeros(0)
        matched = ignored = np.zeros((n_areas, n_thr, 0), dtype=bool)
    for m, limit in enumerate(limits):
        keep = ranks < limit
        order = np.argsort(-scores[keep], kind="mergesort")
        sorted_scores = scores[keep][order]
        for a in range(n_areas):
            positives = int(found.counted_gt[a])
            if positives == 0:
                continue
            tm = matched[a][:, keep][:, order]
            ti = ignored[a][:, keep][:, order]
            tp = np.cumsum(tm & ~ti, axis=1).astype(float)
            fp = np.cumsum(~tm & ~ti, axis=1).astype(float)
            rc = tp / positives
            pr = tp / (fp + tp + np.spacing(1))
            envelope = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
            n_dt = tp.shape[1]
            recall[:, a, m] = rc[:, -1] if n_dt else 0.0
            for t in range(n_thr):
                index = np.searchsorted(rc[t], RECALL_POINTS, side="left")
                inside = index < n_dt
                q = np.zeros(len(RECALL_POINTS))
                q[inside] = envelope[t, index[inside]]
                precision[t, :, a, m] = q
            if a == 0 and m == len(limits) - 1:
                curves = [(rc[t], envelope[t], sorted_scores) for t in range(n_thr)]
    return precision, recall, curves


#: Per image: class index to (scores, matched, ignored, counted ground truth).
ImageMatches = dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def match_images(
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    n_classes: int,
    thresholds: np.ndarray,
    ranges: np.ndarray,
    *,
    max_detections: int = 100,
) -> list[ImageMatches]:
    """Matches every image's detections to its ground truth, class by class.

    Images are matched independently (COCO's ``evaluateImg``), so a bootstrap can
    resample these records without matching again.
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    out: list[ImageMatches] = []
    for index, (pred, target) in enumerate(zip(predictions, targets, strict=True)):
        dt = _image(pred, index, "prediction", scores=True)
        gt = _image(target, index, "target", scores=False)
        for kind, labels in (("prediction", dt["labels"]), ("target", gt["labels"])):
            if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
                raise ValueError(f"{kind} of image {index}: labels outside 0..{n_classes - 1}")
        record: ImageMatches = {}
        for k in np.union1d(dt["labels"], gt["labels"]):
            dt_k = np.flatnonzero(dt["labels"] == k)
            order = dt_k[np.argsort(-dt["scores"][dt_k], kind="mergesort")][:max_detections]
            gt_boxes = gt["boxes"][gt["labels"] == k]
            matched, ignored, counted = _match_image_class(
                dt["boxes"][order], gt_boxes, thresholds, ranges
            )
            record[int(k)] = (dt["scores"][order], matched, ignored, counted)
        out.append(record)
    return out


def _gather(
    per_image: Sequence[ImageMatches], images: Any, n_classes: int, *, areas: int | None = None
) -> list[_Matches]:
    """Per-class matches of the given images (in that order, repeats allowed)."""
    per_class = [_Matches() for _ in range(n_classes)]
    for i in images:
        for k, (scores, matched, ignored, counted) in per_image[i].items():
            if areas is not None:
                matched, ignored, counted = matched[:areas], ignored[:areas], counted[:areas]
            found = per_class[k]
            found.counted_gt = counted if found.counted_gt is None else found.counted_gt + counted
            if scores.size:
                found.scores.append(scores)
                found.ranks.append(np.arange(scores.size))
                found.matched.append(matched)
                found.ignored.append(ignored)
    return per_class


def _mean(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else float("nan")


def evaluate_detections(
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    classes: Sequence[str],
    *,
    iou_thresholds: Sequence[float] | np.ndarray = COCO_IOU_THRESHOLDS,
    max_detections: int = 100,
    area_ranges: Mapping[str, tuple[float, float]] = COCO_AREA_RANGES,
) -> DetectionReport:
    """COCO mean average precision and recall of detections against ground truth.

    The result equals pycocotools' ``COCOeval`` (``iouType="bbox"``) with ``maxDets``
    ``[1, 10, max_detections]``: ``map`` is ``stats[0]``, ``map_50`` ``stats[1]``, ...,
    ``mar_100`` ``stats[8]``.

    Args:
        predictions: Per image, ``boxes`` ``(N, 4)`` xyxy pixels, ``scores`` ``(N,)`` and
            ``labels`` ``(N,)`` class indices (NumPy arrays or tensors).
        targets: Per image (the same order), ``boxes`` and ``labels``.
        classes: The C class names (no background).
        iou_thresholds: The IoU thresholds ``map`` and ``mar_*`` average over.
        max_detections: Detections kept per image and class, best scores first.
        area_ranges: Name to (lower, upper) box area in square pixels; must hold ``all``;
            each other name ``x`` gives ``map_x`` and ``mar_x``.

    Returns:
        A :class:`DetectionReport` whose ``metrics`` hold ``map`` (AP averaged over IoU
        thresholds, then classes), ``map_50`` and ``map_75`` (at IoU 0.5 and 0.75),
        ``map_<area>`` (``small``, ``medium``, ``large``), ``mar_1``, ``mar_10``,
        ``mar_<max_detections>`` (recall averaged over IoU thresholds and classes with at
        most that many detections per image and class), ``mar_<area>``; then per class
        ``ap/<c>``, ``ap50/<c>``, ``ap75/<c>``, ``ar/<c>`` (COCO's AR at
        ``max_detections``), ``recall/<c>`` (share of the class's boxes found at IoU 0.5:
        the recall at the lowest score, what a count misses) and ``gt/<c>`` (number of
        ground-truth boxes). Values without ground truth are NaN.

    Raises:
        ValueError: Inputs of different lengths or shapes, labels outside ``0..C-1``, or
            area ranges without ``all``.
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    if "all" not in area_ranges:
        raise ValueError("area_ranges must hold 'all'")
    if max_detections < 1:
        raise ValueError(f"max_detections must be at least 1, got {max_detections}")
    classes = list(classes)
    n_classes = len(classes)
    asked = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    if asked.size == 0 or asked.min() <= 0 or asked.max() > 1:
        raise ValueError(f"IoU thresholds must be in (0, 1], got {asked.tolist()}")
    # 0.5 and 0.75 are always evaluated (map_50, map_75, curves), averaged only if asked
    thresholds = np.unique(np.concatenate([asked, [0.5, 0.75]]))
    thresholds = thresholds[np.concatenate([[True], ~np.isclose(np.diff(thresholds), 0)])]
    used = np.array([np.isclose(thresholds, t).argmax() for t in asked])
    capped = np.minimum(thresholds, 1 - 1e-10)
    names = ["all", *[name for name in area_ranges if name != "all"]]
    ranges = np.array([area_ranges[name] for name in names], dtype=np.float64)
    limits = sorted({limit for limit in (1, 10, max_detections) if limit <= max_detections})

    per_image = match_images(
        predictions, targets, n_classes, capped, ranges, max_detections=max_detections
    )
    per_class = _gather(per_image, range(len(per_image)), n_classes)

    n_thr, n_areas = len(thresholds), len(names)
    precision = -np.ones((n_thr, len(RECALL_POINTS), n_classes, n_areas, len(limits)))
    recall = -np.ones((n_thr, n_classes, n_areas, len(limits)))
    curves: dict[str, PRCurve] = {}
    at_50 = int(np.isclose(thresholds, 0.5).argmax())
    at_75 = int(np.isclose(thresholds, 0.75).argmax())
    for k, name in enumerate(classes):
        if per_class[k].counted_gt is not None:
            p, r, c = _accumulate(per_class[k], n_thr, limits)
            precision[:, :, k] = p
            recall[:, k] = r
            if c:
                curves[name] = PRCurve(*c[at_50])

    last = len(limits) - 1
    chosen = precision[used]
    chosen_recall = recall[used]
    metrics: dict[str, float] = {
        "map": _mean(chosen[:, :, :, 0, last]),
        "map_50": _mean(precision[at_50, :, :, 0, last]),
        "map_75": _mean(precision[at_75, :, :, 0, last]),
    }
    for a, area in enumerate(names[1:], start=1):
        metrics[f"map_{area}"] = _mean(chosen[:, :, :, a, last])
    for m, limit in enumerate(limits):
        metrics[f"mar_{limit}"] = _mean(chosen_recall[:, :, 0, m])
    for a, area in enumerate(names[1:], start=1):
        metrics[f"mar_{area}"] = _mean(chosen_recall[:, :, a, last])
    for k, name in enumerate(classes):
        metrics[f"ap/{name}"] = _mean(chosen[:, :, k, 0, last])
    for k, name in enumerate(classes):
        metrics[f"ap50/{name}"] = _mean(precision[at_50, :, k, 0, last])
    for k, name in enumerate(classes):
        metrics[f"ap75/{name}"] = _mean(precision[at_75, :, k, 0, last])
    for k, name in enumerate(classes):
        metrics[f"ar/{name}"] = _mean(chosen_recall[:, k, 0, last])
    for k, name in enumerate(classes):
        metrics[f"recall/{name}"] = _mean(recall[at_50, k, 0, last])
    for k, name in enumerate(classes):
        n_gt = per_class[k].counted_gt
        metrics[f"gt/{name}"] = float(n_gt[0]) if n_gt is not None else 0.0
    return DetectionReport(
        metrics=metrics,
        classes=classes,
        curves=curves,
        precision=precision,
        recall=recall,
        iou_thresholds=thresholds,
        area_ranges=names,
        max_detections=limits,
    )


def map_statistic(
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    classes: Sequence[str],
    *,
    max_detections: int = 100,
) -> Callable[[np.ndarray], dict[str, float]]:
    """``map``, ``map_50``, ``map_75``, ``ap/<c>`` and ``ap50/<c>`` of the images at any
    indices (repeats allowed): each image is matched once, here, and a call only
    re-accumulates (COCO's IoU thresholds, area "all", ``max_detections``)."""
    classes = list(classes)
    n_classes = len(classes)
    thresholds = np.minimum(COCO_IOU_THRESHOLDS, 1 - 1e-10)
    ranges = np.array([COCO_AREA_RANGES["all"]])
    per_image = match_images(
        predictions, targets, n_classes, thresholds, ranges, max_detections=max_detections
    )
    at_50, at_75 = 0, 5

    def statistic(indices: np.ndarray) -> dict[str, float]:
        per_class = _gather(per_image, indices, n_classes)
        ap = np.full((len(thresholds), n_classes), np.nan)
        for k in range(n_classes):
            if per_class[k].counted_gt is None:
                continue
            precision, _, _ = _accumulate(per_class[k], len(thresholds), [max_detections])
            values = precision[:, :, 0, 0]  # (T, R)
            if (values > -1).any():
                ap[:, k] = values.mean(axis=1)
        with np.errstate(invalid="ignore"):
            out = {
                "map": _nanmean(ap.mean(axis=0)),
                "map_50": _nanmean(ap[at_50]),
                "map_75": _nanmean(ap[at_75]),
            }
        for k, name in enumerate(classes):
            out[f"ap/{name}"] = float(ap[:, k].mean())
            out[f"ap50/{name}"] = float(ap[at_50, k])
        return out

    return statistic


def detection_intervals(
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    classes: Sequence[str],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    max_detections: int = 100,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Bootstrap intervals of ``map``, ``map_50``, ``map_75``, ``ap/<c>`` and ``ap50/<c>``.

    Images are resampled with replacement (whole groups of images when ``groups``, the
    code of each image's patient from :func:`mediscope.metrics.bootstrap.group_codes`,
    is given); each image is matched once and the resamples only re-accumulate
    (:func:`map_statistic`).

    Returns:
        Metric name to :class:`mediscope.metrics.bootstrap.Interval`.
    """
    from mediscope.metrics.bootstrap import bootstrap

    statistic = map_statistic(predictions, targets, classes, max_detections=max_detections)
    return bootstrap(
        len(predictions),
        statistic,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
        groups=groups,
    )


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def image_f1(
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    n_classes: int,
    *,
    score_threshold: float,
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """Per image, the F1 of its detections at ``score_threshold`` (IoU 0.5, all classes).

    An image without boxes and without detections scores 1.
    """
    kept = []
    for pred in predictions:
        scores = _as_numpy(pred["scores"], np.float64).reshape(-1)
        keep = scores >= score_threshold
        kept.append(
            {
                "boxes": _as_numpy(pred["boxes"], np.float64).reshape(-1, 4)[keep],
                "scores": scores[keep],
                "labels": _as_numpy(pred["labels"], np.int64).reshape(-1)[keep],
            }
        )
    per_image = match_images(
        kept,
        targets,
        n_classes,
        np.array([iou_threshold]),
        np.array([COCO_AREA_RANGES["all"]]),
        max_detections=10**9,
    )
    out = np.ones(len(per_image))
    for i, record in enumerate(per_image):
        tp = fp = fn = 0
        for scores, matched, _, counted in record.values():
            hits = int(matched[0, 0].sum())
            tp += hits
            fp += scores.size - hits
            fn += int(counted[0]) - hits
        if tp + fp + fn:
            out[i] = 2 * tp / (2 * tp + fp + fn)
    return out


class DetectionMAP(Metric):
    """COCO mAP over an epoch, for validation: ``map``, ``map_50`` and ``map_75``.

    Fed per batch with torchvision-style lists of dicts of tensors (``boxes``, ``scores``,
    ``labels`` per predicted image; ``boxes``, ``labels`` per target); :meth:`compute`
    runs :func:`evaluate_detections` on everything seen. The boxes are kept as flat
    tensors with per-image counts, so the state is gathered across processes by
    concatenation.

    Args:
        num_classes: C, no background.
        prefix: Put before every key, e.g. ``"val/"``.
        max_detections: Detections kept per image and class.
    """

    full_state_update = False
    det_boxes: list[torch.Tensor]
    det_scores: list[torch.Tensor]
    det_labels: list[torch.Tensor]
    det_counts: list[torch.Tensor]
    gt_boxes: list[torch.Tensor]
    gt_labels: list[torch.Tensor]
    gt_counts: list[torch.Tensor]

    def __init__(self, num_classes: int, *, prefix: str = "", max_detections: int = 100) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.prefix = prefix
        self.max_detections = max_detections
        for name in (
            "det_boxes",
            "det_scores",
            "det_labels",
            "det_counts",
            "gt_boxes",
            "gt_labels",
            "gt_counts",
        ):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self, preds: Sequence[Mapping[str, torch.Tensor]], target: Sequence[Mapping[str, Any]]
    ) -> None:
        """Adds a batch of per-image predictions and their targets."""
        if len(preds) != len(target):
            raise ValueError(f"{len(preds)} predictions for {len(target)} targets")
        for pred, truth in zip(preds, target, strict=True):
            boxes = torch.as_tensor(pred["boxes"]).detach().float().reshape(-1, 4)
            self.det_boxes.append(boxes)
            self.det_scores.append(torch.as_tensor(pred["scores"]).detach().float().reshape(-1))
            self.det_labels.append(torch.as_tensor(pred["labels"]).detach().long().reshape(-1))
            self.det_counts.append(torch.tensor([len(boxes)], device=boxes.device))
            true_boxes = torch.as_tensor(truth["boxes"]).detach().float().reshape(-1, 4)
            self.gt_boxes.append(true_boxes)
            self.gt_labels.append(torch.as_tensor(truth["labels"]).detach().long().reshape(-1))
            self.gt_counts.append(torch.tensor([len(true_boxes)], device=true_boxes.device))

    def _images(self, prefix: str, fields: Sequence[str]) -> list[dict[str, np.ndarray]]:
        counts = _flat(getattr(self, f"{prefix}_counts"), (0,)).astype(np.int64)
        columns = {}
        for name in fields:
            shape = (0, 4) if name == "boxes" else (0,)
            columns[name] = np.split(
                _flat(getattr(self, f"{prefix}_{name}"), shape), counts.cumsum()[:-1]
            )
        return [{k: v[i] for k, v in columns.items()} for i in range(len(counts))]

    def report(self, classes: Sequence[str] | None = None) -> DetectionReport:
        """The full :func:`evaluate_detections` report of everything seen."""
        names = list(classes) if classes is not None else [str(i) for i in range(self.num_classes)]
        return evaluate_detections(
            self._images("det", ("boxes", "scores", "labels")),
            self._images("gt", ("boxes", "labels")),
            names,
            max_detections=self.max_detections,
        )

    def compute(self) -> dict[str, torch.Tensor]:
        """``{prefix}map``, ``{prefix}map_50``, ``{prefix}map_75`` (NaN without ground truth)."""
        metrics = self.report().metrics
        return {
            f"{self.prefix}{key}": torch.tensor(metrics[key], dtype=torch.float32)
            for key in EPOCH_KEYS
        }


def _flat(state: list[torch.Tensor] | torch.Tensor, empty: tuple[int, ...]) -> np.ndarray:
    """A list state (or its synced concatenation) as one NumPy array."""
    if isinstance(state, list) and not state:
        return np.zeros(empty)
    return dim_zero_cat(state).detach().cpu().numpy()
