"""Per-object scores of segmentations whose classes come as many separate objects.

Nuclei, bacteria or colonies are counted and judged one by one, which pixel Dice does
not do: two touching cells merged into one blob lose one cell and barely any Dice. Here
each connected component of a class is an object, in the prediction and in the ground
truth, and objects are paired when their IoU is above 0.5.

Conventions:
    * Objects are the 8-connected components of each foreground class's mask (two pixels
      touching at a corner belong to one object), as ``skimage.measure.label``.
    * A predicted and a true object of the same class *match* when their IoU is strictly
      above 0.5. Each object then has at most one partner, so the matching is unique
      and needs no assignment (the rule of the panoptic quality, Kirillov et al. 2019).
    * Object precision = matched / predicted objects, recall = matched / true objects,
      F1 = 2 matched / (predicted + true); these pool the objects of all images (and, for
      the overall values, all classes). Without any object the three are NaN.
    * Count errors: see :func:`mediscope.metrics.counting.count_errors`.
    * Pixels whose ground truth is ``ignore_index`` belong to no object.

Example:
    >>> import numpy as np
    >>> true = np.zeros((8, 8), int); true[1:3, 1:3] = 1; true[5:7, 5:7] = 1
    >>> pred = np.zeros((8, 8), int); pred[1:3, 1:3] = 1          # one of two found
    >>> object_counts(pred, true, num_classes=2).tolist()
    [[1, 1, 2]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from mediscope.metrics.bootstrap import Interval, bootstrap
from mediscope.metrics.counting import count_errors

#: IoU above which a predicted object matches a true one.
OBJECT_IOU = 0.5

_FULL = ndimage.generate_binary_structure(2, 2)

#: Columns of :func:`object_counts`.
COUNT_COLUMNS = ("matched", "predicted", "true")


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean mask: labels ``(H, W)`` (0 outside) and count."""
    labels, count = ndimage.label(np.asarray(mask, dtype=bool), structure=_FULL)
    return labels, int(count)


def match_components(pred: np.ndarray, true: np.ndarray) -> tuple[int, int, int]:
    """``(matched, predicted, true)`` objects of two boolean masks, at IoU above 0.5."""
    pred_labels, n_pred = components(pred)
    true_labels, n_true = components(true)
    if n_pred == 0 or n_true == 0:
        return 0, n_pred, n_true
    # only the overlapping pairs: thousands of nuclei make a dense table too large
    both = (true_labels > 0) & (pred_labels > 0)
    codes = true_labels[both].astype(np.int64) * (n_pred + 1) + pred_labels[both]
    pairs, overlap = np.unique(codes, return_counts=True)
    area_true = np.bincount(true_labels.ravel(), minlength=n_true + 1)
    area_pred = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)
    union = area_true[pairs // (n_pred + 1)] + area_pred[pairs % (n_pred + 1)] - overlap
    iou = overlap / union
    return int(np.count_nonzero(iou > OBJECT_IOU)), n_pred, n_true


def object_counts(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    num_classes: int,
    ignore_index: int | None = None,
) -> np.ndarray:
    """Matched, predicted and true objects of one image, per foreground class.

    Args:
        pred: Predicted classes ``(H, W)``.
        target: True classes ``(H, W)``.
        num_classes: K, background (class 0) included; with K = 1 that class is used.
        ignore_index: Target value whose pixels belong to no object.

    Returns:
        ``(F, 3)`` int array, rows the foreground classes, columns
        :data:`COUNT_COLUMNS`.
    """
    pred, target = np.asarray(pred), np.asarray(target)
    valid = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    first = 1 if num_classes > 1 else 0
    rows = [
        match_components((pred == k) & valid, (target == k) & valid)
        for k in range(first, num_classes)
    ]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def object_report(counts: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Split-level object metrics from every image's :func:`object_counts`.

    Args:
        counts: ``(N, F, 3)`` per image and foreground class.
        classes: All K class names, background first.

    Returns:
        ``object_precision``, ``object_recall``, ``object_f1`` (objects of all classes
        pooled), the count errors of the objects per image (``object_count_mae``,
        ``object_count_mre``: all foreground classes together), then per foreground class
        ``object_f1/<c>``, ``object_count_mae/<c>``, ``object_count_mre/<c>``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    names = list(classes)[1:] if len(classes) > 1 else list(classes)
    if counts.ndim != 3 or counts.shape[1:] != (len(names), 3):
        raise ValueError(f"object counts of shape {counts.shape} for classes {names}")
    matched, predicted, true = (counts[:, :, i] for i in range(3))
    out = {
        "object_precision": _ratio(matched.sum(), predicted.sum()),
        "object_recall": _ratio(matched.sum(), true.sum()),
        "object_f1": _ratio(2 * matched.sum(), predicted.sum() + true.sum()),
    }
    errors = count_errors(predicted, true, names)
    out["object_count_mae"] = errors["count_mae"]
    out["object_count_mre"] = errors["count_mre"]
    for i, name in enumerate(names):
        out[f"object_f1/{name}"] = _ratio(
            2 * matched[:, i].sum(), predicted[:, i].sum() + true[:, i].sum()
        )
    for key in ("count_mae", "count_mre"):
        for name in names:
            out[f"object_{key}/{name}"] = errors[f"{key}/{name}"]
    return out


def object_intervals(
    counts: np.ndarray,
    classes: Sequence[str],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, Interval]:
    """Bootstrap intervals of :func:`object_report`'s metrics, resampling images
    (or ``groups``: the images of one patient together)."""
    counts = np.asarray(counts)
    return bootstrap(
        len(counts),
        lambda idx: object_report(counts[idx], classes),
        resamples=resamples,
        confidence=confidence,
        seed=seed,
        groups=groups,
    )


def instance_like(counts: np.ndarray, *, min_objects: float = 2.0) -> bool:
    """Whether the ground truth looks like separate objects: ``report.object_metrics: auto``.

    True when some foreground class has, over the images that contain it, at least
    ``min_objects`` connected components per image on average (nuclei, bacteria, cells);
    one blob per image (an organ, a lesion) is not instance-like.
    """
    true = np.asarray(counts)[:, :, 2].astype(np.float64)
    present = true > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        per_image = true.sum(axis=0) / present.sum(axis=0)
    return bool(np.any(np.nan_to_num(per_image) >= min_objects))
