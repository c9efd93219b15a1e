"""What a detector gets wrong at its counting threshold: counts, confusions, error kinds.

mAP ranks boxes over all thresholds; a user of the counts sees the boxes kept at one
score threshold (``count_threshold``). At that threshold, for every image:

* **Counts**: the detections and true boxes per class, from which
  :func:`mediscope.metrics.counting.count_errors` gives the count errors.
* **Confusion matrix** ``(C + 1, C + 1)``: rows the true class and a last row
  ``background`` (detections of no object: false positives), columns the predicted class
  and a last column ``missed`` (objects no detection found). Detections are first
  matched to objects of their own class (greedily by score, each to the free object of
  highest IoU ≥ 0.5, as the counting threshold is chosen); the detections left are then
  matched the same way to free objects of *another* class (the off-diagonal cells).
  Every object is in exactly one cell of its row, every detection in exactly one cell of
  its column.
* **Error kinds**, in the spirit of TIDE (Bolya et al. 2020, same thresholds: IoU
  ``fg = 0.5`` for a hit, ``bg = 0.1`` for touching anything). Each detection that is not
  a true positive gets the first kind that applies, in TIDE's order:

  1. *localisation*: right class, best IoU with an object of its class in
     ``[bg, fg]``;
  2. *classification*: IoU ≥ fg with an object of another class;
  3. *duplicate*: IoU ≥ fg with an object of its class already found by a better-scored
     detection;
  4. *background*: IoU ≤ bg with every object (or no object in the image);
  5. *both*: what is left, wrong class and poor box.

  An object is *missed* when no true positive found it and it is not the object of a
  localisation or classification error (TIDE's rule: those errors would find it if
  fixed). The shares are over the detections kept (the five detection errors and the
  true positives add up to all of them) and, for *missed*, over the objects.

Example:
    >>> import numpy as np
    >>> truth = {"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), "labels": np.array([0, 1])}
    >>> found = {"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]]),
    ...          "scores": np.array([0.9, 0.8, 0.7]), "labels": np.array([0, 0, 0])}
    >>> image = analyse_image(found, truth, 2, score_threshold=0.5)
    >>> image.confusion.tolist()   # rows: class 0, class 1, background
    [[1, 0, 0], [1, 0, 0], [1, 0, 0]]
    >>> image.kinds["classification"], image.kinds["background"]
    (1, 1)
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mediscope.metrics.bootstrap import Interval, bootstrap
from mediscope.metrics.counting import COUNT_IOU, count_errors
from mediscope.metrics.detection import box_iou

#: IoU at or below which a detection touches no object (TIDE's background threshold).
BACKGROUND_IOU = 0.1

#: The detection error kinds, in TIDE's order of precedence.
DETECTION_ERRORS = ("localisation", "classification", "duplicate", "background", "both")

#: Every kind counted per image: the detection errors, then missed objects and the totals.
KINDS = ("correct", *DETECTION_ERRORS, "missed", "detections", "objects")


@dataclass
class ImageAnalysis:
    """One image at the counting threshold.

    Attributes:
        confusion: ``(C + 1, C + 1)`` counts (see the module).
        predicted: ``(C,)`` detections kept per class.
        true: ``(C,)`` true boxes per class.
        kinds: Number of each of :data:`KINDS`.
    """

    confusion: np.ndarray
    predicted: np.ndarray
    true: np.ndarray
    kinds: dict[str, int]


def _greedy(
    order: np.ndarray, iou: np.ndarray, allowed: np.ndarray, free: np.ndarray
) -> dict[int, int]:
    """Detections (in ``order``) matched to the free object of highest IoU ≥ 0.5 allowed."""
    matches: dict[int, int] = {}
    for d in order:
        candidates = allowed[d] & free & (iou[d] >= COUNT_IOU)
        if candidates.any():
            g = int(np.argmax(np.where(candidates, iou[d], -1.0)))
            free[g] = False
            matches[int(d)] = g
    return matches


def analyse_image(
    prediction: Mapping[str, Any],
    target: Mapping[str, Any],
    n_classes: int,
    *,
    score_threshold: float,
) -> ImageAnalysis:
    """Counts, confusion matrix and error kinds of one image (see the module).

    Args:
        prediction: ``boxes`` ``(N, 4)`` xyxy, ``scores`` ``(N,)``, ``labels`` ``(N,)``.
        target: ``boxes`` and ``labels`` of the true objects.
        n_classes: C, no background.
        score_threshold: Detections scoring below it are dropped first.
    """
    scores = np.asarray(prediction["scores"], np.float64).reshape(-1)
    keep = scores >= score_threshold
    boxes = np.asarray(prediction["boxes"], np.float64).reshape(-1, 4)[keep]
    labels = np.asarray(prediction["labels"], np.int64).reshape(-1)[keep]
    scores = scores[keep]
    gt_boxes = np.asarray(target["boxes"], np.float64).reshape(-1, 4)
    gt_labels = np.asarray(target["labels"], np.int64).reshape(-1)
    n_det, n_gt = len(boxes), len(gt_boxes)
    iou = box_iou(boxes, gt_boxes)  # (D, G)
    same = labels[:, None] == gt_labels[None, :]
    order = np.argsort(-scores, kind="stable")

    free = np.ones(n_gt, bool)
    hits = _greedy(order, iou, same, free)
    used = ~free  # objects found by a true positive
    rest = np.array([d for d in order if int(d) not in hits], dtype=np.int64)
    confusions = _greedy(rest, iou, ~same, free.copy())

    confusion = np.zeros((n_classes + 1, n_classes + 1), np.int64)
    for d, g in hits.items():
        confusion[gt_labels[g], labels[d]] += 1
    for d, g in confusions.items():
        confusion[gt_labels[g], labels[d]] += 1
    found = np.zeros(n_gt, bool)
    found[list(hits.values()) + list(confusions.values())] = True
    for d in rest:
        if int(d) not in confusions:
            confusion[n_classes, labels[d]] += 1  # a detection of nothing
    for lost in np.flatnonzero(~found):
        confusion[gt_labels[lost], n_classes] += 1  # an object nobody found

    kinds = dict.fromkeys(KINDS, 0)
    kinds["correct"], kinds["detections"], kinds["objects"] = len(hits), n_det, n_gt
    excused = np.zeros(n_gt, bool)  # objects a localisation or class error points at
    for d in rest:
        kind, target_object = _kind(iou[d], same[d], used)
        kinds[kind] += 1
        if target_object is not None:
            excused[target_object] = True
    kinds["missed"] = int(np.count_nonzero(~used & ~excused))
    predicted = np.bincount(labels, minlength=n_classes)[:n_classes]
    true = np.bincount(gt_labels, minlength=n_classes)[:n_classes]
    return ImageAnalysis(confusion, predicted, true, kinds)


def _kind(iou: np.ndarray, same: np.ndarray, used: np.ndarray) -> tuple[str, int | None]:
    """TIDE's error kind of one unmatched detection and the object it points at."""
    if iou.size == 0:
        return "background", None
    own = np.where(same, iou, -1.0)
    best_own = int(np.argmax(own))
    if BACKGROUND_IOU <= own[best_own] <= COUNT_IOU:
        return "localisation", best_own
    other = np.where(~same, iou, -1.0)
    best_other = int(np.argmax(other))
    if other[best_other] >= COUNT_IOU:
        return "classification", best_other
    if np.any(same & used & (iou >= COUNT_IOU)):
        return "duplicate", None
    if iou.max() <= BACKGROUND_IOU:
        return "background", None
    return "both", None


@dataclass
class DetectionErrors:
    """Every image's :class:`ImageAnalysis`, stacked.

    Attributes:
        classes: The C class names.
        confusion: ``(C + 1, C + 1)`` summed over the images.
        predicted: ``(N, C)`` detections kept per image and class.
        true: ``(N, C)`` true boxes per image and class.
        kinds: ``(N, len(KINDS))`` the kinds per image.
        score_threshold: The threshold the detections were kept at.
    """

    classes: list[str]
    confusion: np.ndarray
    predicted: np.ndarray
    true: np.ndarray
    kinds: np.ndarray
    score_threshold: float


def analyse_detections(
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    classes: Sequence[str],
    *,
    score_threshold: float,
) -> DetectionErrors:
    """:func:`analyse_image` of every image."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    classes = list(classes)
    n = len(classes)
    images = [
        analyse_image(p, t, n, score_threshold=score_threshold)
        for p, t in zip(predictions, targets, strict=True)
    ]
    confusion = sum((i.confusion for i in images), np.zeros((n + 1, n + 1), np.int64))
    return DetectionErrors(
        classes=classes,
        confusion=np.asarray(confusion),
        predicted=np.array([i.predicted for i in images], np.int64).reshape(-1, n),
        true=np.array([i.true for i in images], np.int64).reshape(-1, n),
        kinds=np.array([[i.kinds[k] for k in KINDS] for i in images], np.int64).reshape(
            -1, len(KINDS)
        ),
        score_threshold=float(score_threshold),
    )


def error_metrics(
    predicted: np.ndarray, true: np.ndarray, kinds: np.ndarray, classes: Sequence[str]
) -> dict[str, float]:
    """Flat metrics of (some of) the images: count errors and error shares.

    Returns:
        :func:`~mediscope.metrics.counting.count_errors`' keys, then ``error_<kind>``
        for the five detection error kinds (share of the kept detections) and
        ``error_missed`` (share of the true objects); NaN without detections (objects).
    """
    out = count_errors(predicted, true, classes)
    totals = dict(zip(KINDS, np.asarray(kinds).sum(axis=0).tolist(), strict=True))
    for kind in DETECTION_ERRORS:
        out[f"error_{kind}"] = (
            totals[kind] / totals["detections"] if totals["detections"] else float("nan")
        )
    out["error_missed"] = (
        totals["missed"] / totals["objects"] if totals["objects"] else float("nan")
    )
    return out


def error_report(errors: DetectionErrors) -> dict[str, float]:
    """:func:`error_metrics` of all images."""
    return error_metrics(errors.predicted, errors.true, errors.kinds, errors.classes)


def error_intervals(
    errors: DetectionErrors,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, Interval]:
    """Bootstrap intervals of :func:`error_report`'s metrics, resampling images
    (or ``groups``: the images of one patient together)."""
    return bootstrap(
        len(errors.kinds),
        lambda idx: error_metrics(
            errors.predicted[idx], errors.true[idx], errors.kinds[idx], errors.classes
        ),
        resamples=resamples,
        confidence=confidence,
        seed=seed,
        groups=groups,
    )


def confusion_csv(errors: DetectionErrors) -> str:
    """The confusion matrix as CSV text: a header, then one row per true class and
    ``background``; the last column is ``missed``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["true \\ predicted", *errors.classes, "missed"])
    for name, counts in zip(
        [*errors.classes, "background"], errors.confusion.tolist(), strict=True
    ):
        writer.writerow([name, *counts])
    return out.getvalue()
