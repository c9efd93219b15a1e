"""Operating points: decision thresholds chosen on validation, measured on test.

A classifier's score becomes a decision at a threshold. For each class (one against the
rest) the threshold is chosen on the validation split, for a target sensitivity (the
highest threshold that still reaches it, so specificity is as high as it can be), a
target specificity (the lowest such threshold, so sensitivity is as high as it can be),
or Youden's J (the threshold maximising ``sensitivity + specificity - 1``). The test
split is then measured at that fixed threshold. An image is called positive when its
score is at or above the threshold (as in :func:`sklearn.metrics.roc_curve`).

Metric keys (per class ``c``): ``op_threshold/c``, ``op_sensitivity/c``,
``op_specificity/c`` for the configured target (``op_target_sensitivity`` or
``op_target_specificity`` holds it) and ``youden_threshold/c``, ``youden_sensitivity/c``,
``youden_specificity/c`` for Youden's J.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: Per-class keys of thresholds (fixed on validation: no interval).
THRESHOLD_PREFIXES = ("op_threshold/", "youden_threshold/")
#: The overall keys that state the target.
TARGET_KEYS = ("op_target_sensitivity", "op_target_specificity")


@dataclass(frozen=True)
class RocPoints:
    """Sensitivity and false-positive rate at every distinct score, thresholds falling.

    The first point has threshold ``inf`` (nothing called positive), as in sklearn.
    """

    thresholds: np.ndarray
    tpr: np.ndarray
    fpr: np.ndarray


def roc_points(positives: np.ndarray, scores: np.ndarray) -> RocPoints:
    """The ROC curve at every distinct score (sklearn's ``roc_curve`` with
    ``drop_intermediate=False``).

    Example:
        >>> r = roc_points(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]))
        >>> r.tpr.tolist(), r.fpr.tolist()
        ([0.0, 0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5, 1.0])
    """
    positives = np.asarray(positives).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], positives[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1] if len(s) else np.zeros(0, int)
    tps = np.cumsum(y)[last] if len(s) else np.zeros(0)
    fps = (last + 1) - tps
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.r_[0.0, tps / n_pos] if n_pos else np.full(len(last) + 1, np.nan)
        fpr = np.r_[0.0, fps / n_neg] if n_neg else np.full(len(last) + 1, np.nan)
    return RocPoints(np.r_[np.inf, s[last]], tpr.astype(float), fpr.astype(float))


def threshold_for_sensitivity(positives: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity is at least ``target`` (NaN without positives).

    Example:
        >>> threshold_for_sensitivity(np.array([1, 1, 0, 1]), np.array([.9, .6, .5, .2]), 0.6)
        0.6
    """
    r = roc_points(positives, scores)
    reached = np.flatnonzero(r.tpr >= target - 1e-12)
    return float(r.thresholds[reached[0]]) if len(reached) else float("nan")


def threshold_for_specificity(positives: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The lowest threshold whose specificity is at least ``target`` (NaN without negatives).

    Example:
        >>> threshold_for_specificity(np.array([1, 0, 0, 1]), np.array([.9, .6, .5, .2]), 0.5)
        0.6
    """
    r = roc_points(positives, scores)
    reached = np.flatnonzero(1.0 - r.fpr >= target - 1e-12)
    return float(r.thresholds[reached[-1]]) if len(reached) else float("nan")


def youden_threshold(positives: np.ndarray, scores: np.ndarray) -> float:
    """The threshold maximising Youden's J = sensitivity + specificity - 1 (the highest
    such threshold on ties; NaN when a side is empty).

    Example:
        >>> youden_threshold(np.array([1, 1, 0, 0]), np.array([.9, .6, .5, .2]))
        0.6
    """
    r = roc_points(positives, scores)
    j = r.tpr - r.fpr
    if not np.isfinite(j).any():
        return float("nan")
    return float(r.thresholds[int(np.nanargmax(j))])


def sensitivity_specificity(
    positives: np.ndarray, scores: np.ndarray, threshold: float
) -> tuple[float, float]:
    """Sensitivity and specificity when ``score >= threshold`` is called positive.

    Example:
        >>> sensitivity_specificity(np.array([1, 1, 0, 0]), np.array([.9, .4, .5, .2]), 0.45)
        (0.5, 0.5)
    """
    positives = np.asarray(positives).astype(bool)
    if np.isnan(threshold):
        return float("nan"), float("nan")
    called = np.asarray(scores) >= threshold
    n_pos, n_neg = positives.sum(), (~positives).sum()
    sens = float((called & positives).sum() / n_pos) if n_pos else float("nan")
    spec = float((~called & ~positives).sum() / n_neg) if n_neg else float("nan")
    return sens, spec


def choose_thresholds(
    targets: np.ndarray, scores: np.ndarray, classes: list[str], target: Mapping[str, float]
) -> dict[str, float]:
    """Thresholds per class chosen on (validation) scores.

    Args:
        targets: ``(N, C)`` 0/1 one-vs-rest truth (one-hot for single-label data).
        scores: ``(N, C)`` probabilities.
        classes: The C class names.
        target: ``{"sensitivity": x}`` or ``{"specificity": x}``; empty: Youden only.

    Returns:
        ``op_target_*`` and ``op_threshold/<c>`` (with a target), ``youden_threshold/<c>``.
    """
    out: dict[str, float] = {}
    kind, value = next(iter(target.items())) if target else ("", 0.0)
    if kind:
        out[f"op_target_{kind}"] = float(value)
    for c, name in enumerate(classes):
        pos, score = targets[:, c], scores[:, c]
        if kind == "sensitivity":
            out[f"op_threshold/{name}"] = threshold_for_sensitivity(pos, score, value)
        elif kind == "specificity":
            out[f"op_threshold/{name}"] = threshold_for_specificity(pos, score, value)
        out[f"youden_threshold/{name}"] = youden_threshold(pos, score)
    return out


def operating_point_metrics(
    targets: np.ndarray, scores: np.ndarray, classes: list[str], thresholds: Mapping[str, float]
) -> dict[str, float]:
    """Sensitivity and specificity per class at the ``thresholds`` of
    :func:`choose_thresholds` (``op_*`` and ``youden_*`` keys)."""
    out: dict[str, float] = {}
    for c, name in enumerate(classes):
        for kind in ("op", "youden"):
            threshold = thresholds.get(f"{kind}_threshold/{name}")
            if threshold is None:
                continue
            sens, spec = sensitivity_specificity(targets[:, c], scores[:, c], threshold)
            out[f"{kind}_sensitivity/{name}"] = sens
            out[f"{kind}_specificity/{name}"] = spec
    return out


def one_hot(labels: np.ndarray, n: int) -> np.ndarray:
    """``(N, n)`` 0/1 indicators of class indices ``labels``."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.zeros((len(labels), n), dtype=np.int64)
    out[np.arange(len(labels)), labels] = 1
    return out
