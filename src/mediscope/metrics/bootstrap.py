"""Bootstrap confidence intervals of evaluation metrics.

The evaluated images are resampled with replacement ``resamples`` times (seeded), every
metric is recomputed on each resample, and the interval is the percentile interval of
those values (Efron's percentile bootstrap). Metrics that are undefined on a resample
(NaN, e.g. a class absent from it) are left out of that metric's percentiles.

When the images carry a group (``patient_id`` or ``group`` in the manifest: several
images of one patient, slide or smear), whole groups are resampled instead (the cluster
bootstrap): images of one patient are not independent, and resampling them one by one
gives intervals that are too narrow. Images without a group count as a group of their
own.

Intervals are stored beside the metrics with flat keys ``ci_low/<metric>`` and
``ci_high/<metric>``, plus ``bootstrap_resamples``, ``confidence``, ``bootstrap_unit``
(``image`` or ``patient``) and ``bootstrap_groups`` (the number of resampled units).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mediscope.metrics.calibration import expected_calibration_error

#: Prefixes of the interval keys in the metrics files.
CI_LOW, CI_HIGH = "ci_low/", "ci_high/"

#: Keys that describe an evaluation rather than measure it: never given an interval.
NOT_METRICS = ("n_samples", "n_images", "epoch", "support/", "gt/", "count_threshold")

#: Keys that describe the bootstrap itself.
BOOTSTRAP_KEYS = ("bootstrap_resamples", "confidence", "bootstrap_unit", "bootstrap_groups")


@dataclass(frozen=True)
class Interval:
    """A confidence interval of one metric."""

    low: float
    high: float


def is_metric(key: str) -> bool:
    """True for keys that measure quality (not counts, epochs or interval bounds)."""
    if key.startswith((CI_LOW, CI_HIGH)) or key in BOOTSTRAP_KEYS:
        return False
    return not any(key == k or (k.endswith("/") and key.startswith(k)) for k in NOT_METRICS)


def group_codes(groups: Sequence[str | None] | None) -> np.ndarray | None:
    """Integer codes ``0..G-1`` of the images' groups; None when no image has one.

    Images without a group (None or empty) are each a group of their own.

    Example:
        >>> group_codes(["p1", "p2", "p1", None]).tolist()
        [0, 1, 0, 2]
        >>> group_codes([None, None]) is None
        True
    """
    if groups is None or not any(groups):
        return None
    codes: dict[object, int] = {}
    out = np.empty(len(groups), dtype=np.int64)
    for i, group in enumerate(groups):
        key: object = group if group else ("image", i)
        out[i] = codes.setdefault(key, len(codes))
    return out


def bootstrap_unit(groups: np.ndarray | None, n: int) -> tuple[str, int]:
    """``("patient", G)`` when resampling G groups, else ``("image", n)``."""
    if groups is None:
        return "image", n
    return "patient", int(groups.max()) + 1 if len(groups) else 0


def resample_indices(
    n: int, resamples: int, seed: int, *, groups: np.ndarray | None = None
) -> list[np.ndarray]:
    """Indices of ``resamples`` bootstrap resamples of ``n`` images, seeded.

    Without ``groups``, each resample draws ``n`` images with replacement. With
    ``groups`` (the integer code of each image's group, from :func:`group_codes`), each
    resample draws as many groups as there are, with replacement, and takes every image
    of every drawn group (a cluster bootstrap; resamples then differ in length).

    Example:
        >>> [len(i) for i in resample_indices(4, 2, 0)]
        [4, 4]
        >>> draws = resample_indices(4, 3, 0, groups=np.array([0, 0, 0, 1]))
        >>> [sorted(i.tolist()) for i in draws]  # group 0 comes with its three images
        [[3, 3], [0, 1, 2, 3], [0, 0, 1, 1, 2, 2]]
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        return list(rng.integers(0, n, size=(resamples, n)))
    groups = np.asarray(groups)
    if len(groups) != n:
        raise ValueError(f"{len(groups)} groups for {n} images")
    count = int(groups.max()) + 1 if n else 0
    order = np.argsort(groups, kind="stable")
    starts = np.searchsorted(groups[order], np.arange(count + 1))
    members = [order[starts[g] : starts[g + 1]] for g in range(count)]
    return [
        np.concatenate([members[g] for g in draw]) if count else np.zeros(0, dtype=np.int64)
        for draw in rng.integers(0, max(count, 1), size=(resamples, count))
    ]


def percentile_interval(values: np.ndarray, confidence: float) -> Interval:
    """The central ``confidence`` percentile interval of the finite ``values``.

    NaN when fewer than half of the values are finite (the metric is mostly undefined).
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0 or finite.size < 0.5 * values.size:
        return Interval(float("nan"), float("nan"))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return Interval(float(low), float(high))


def bootstrap(
    n: int,
    statistic: Callable[[np.ndarray], Mapping[str, float]],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    keys: Iterable[str] | None = None,
    groups: np.ndarray | None = None,
) -> dict[str, Interval]:
    """Percentile bootstrap intervals of every metric ``statistic`` returns.

    Args:
        n: Number of evaluated items (images); resamples draw ``n`` of them.
        statistic: Metrics of the items at the given indices (repeats allowed).
        resamples: Number of resamples.
        confidence: Level of the intervals, e.g. 0.95.
        seed: Seed of the resampling, so reports are reproducible.
        keys: The metrics to keep (default: every key :func:`is_metric` accepts).
        groups: Group code of every item (:func:`group_codes`): resample whole groups.

    Returns:
        Metric name to :class:`Interval`; empty when ``n`` or ``resamples`` is 0.
    """
    if n <= 0 or resamples <= 0:
        return {}
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    samples: dict[str, list[float]] = {}
    wanted = set(keys) if keys is not None else None
    for indices in resample_indices(n, resamples, seed, groups=groups):
        for key, value in statistic(indices).items():
            if (wanted is None and is_metric(key)) or (wanted is not None and key in wanted):
                samples.setdefault(key, []).append(float(value))
    return {
        key: percentile_interval(np.array(values), confidence) for key, values in samples.items()
    }


def interval_keys(
    intervals: Mapping[str, Interval],
    *,
    resamples: int,
    confidence: float,
    unit: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """The flat keys the metrics files hold for ``intervals``.

    Args:
        intervals: From :func:`bootstrap`.
        resamples: Number of resamples.
        confidence: Level of the intervals.
        unit: What was resampled and how many there were (:func:`bootstrap_unit`), stored
            as ``bootstrap_unit`` (a word) and ``bootstrap_groups``.
    """
    if not intervals:
        return {}
    out: dict[str, Any] = {
        "bootstrap_resamples": float(resamples),
        "confidence": float(confidence),
    }
    if unit is not None:
        out["bootstrap_unit"] = unit[0]
        out["bootstrap_groups"] = float(unit[1])
    for key, interval in intervals.items():
        out[CI_LOW + key] = interval.low
        out[CI_HIGH + key] = interval.high
    return out


def interval_of(metrics: Mapping[str, float], key: str) -> Interval | None:
    """The interval of ``key`` stored in a metrics dict, if any."""
    low, high = metrics.get(CI_LOW + key), metrics.get(CI_HIGH + key)
    if low is None or high is None:
        return None
    return Interval(float(low), float(high))


def without_intervals(metrics: Mapping[str, float]) -> dict[str, float]:
    """``metrics`` without the interval keys."""
    return {
        k: v
        for k, v in metrics.items()
        if not k.startswith((CI_LOW, CI_HIGH)) and k not in BOOTSTRAP_KEYS
    }


def resampled_what(metrics: Mapping[str, Any]) -> str:
    """``1000 resamples of the 42 patients (cluster bootstrap)`` or ``... of the images``.

    Example:
        >>> resampled_what({"bootstrap_resamples": 500.0})
        '500 resamples of the images'
        >>> resampled_what({"bootstrap_resamples": 500.0, "bootstrap_unit": "patient",
        ...                 "bootstrap_groups": 12.0})
        '500 resamples of the 12 patients (cluster bootstrap)'
    """
    resamples = int(metrics.get("bootstrap_resamples", 0))
    unit, groups = metrics.get("bootstrap_unit"), metrics.get("bootstrap_groups")
    if unit == "patient" and isinstance(groups, int | float):
        return f"{resamples} resamples of the {int(groups)} patients (cluster bootstrap)"
    if isinstance(groups, int | float):
        return f"{resamples} resamples of the {int(groups)} images"
    return f"{resamples} resamples of the images"


# -- classification ------------------------------------------------------------------


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy's ``rankdata``)."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]])
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    counts = np.diff(np.append(first, len(values)))
    average = first + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks = np.empty(len(values))
    ranks[order] = average[group]
    return ranks


def binary_auroc(positives: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count one half); NaN if one-sided."""
    n_pos = int(positives.sum())
    n_neg = len(positives) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def classification_metrics(
    labels: np.ndarray, probs: np.ndarray, classes: list[str]
) -> dict[str, float]:
    """The metrics of :func:`mediscope.metrics.classification.classification_report`, fast.

    Same keys and values (tested against it), computed from one confusion matrix and
    rank-based AUROC so that a thousand resamples take a second.
    """
    n = len(classes)
    labels = np.asarray(labels, dtype=np.int64)
    preds = probs.argmax(axis=1)
    cm = np.bincount(labels * n + preds, minlength=n * n).reshape(n, n).astype(float)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    total = cm.sum()
    negatives = total - support
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), np.nan)
        specificity = np.where(
            negatives > 0, (negatives - (predicted - tp)) / np.maximum(negatives, 1), np.nan
        )
        denominator = 2 * tp + (predicted - tp) + (support - tp)
        f1 = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
    present = support > 0
    aurocs = [binary_auroc(labels == c, probs[:, c]) for c in np.flatnonzero(present)]
    out: dict[str, float] = {
        "n_samples": float(len(labels)),
        "accuracy": float(tp.sum() / max(1.0, total)),
        "balanced_accuracy": float(np.mean(recall[present])) if present.any() else 0.0,
        "f1_macro": float(np.mean(f1[present])) if present.any() else 0.0,
        "f1_weighted": float((f1 * support).sum() / total) if total else 0.0,
        "auroc_macro": float(np.mean(aurocs)) if present.sum() >= 2 else float("nan"),
        "ece": expected_calibration_error(labels, probs),
    }
    for i, name in enumerate(classes):
        out[f"precision/{name}"] = float(precision[i])
        out[f"recall/{name}"] = float(recall[i])
        out[f"specificity/{name}"] = float(specificity[i])
        out[f"f1/{name}"] = float(f1[i])
        out[f"support/{name}"] = float(support[i])
    return out


def classification_intervals(
    labels: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, Interval]:
    """Bootstrap intervals of the classification metrics, resampling images (or whole
    groups: ``groups`` from :func:`group_codes`)."""
    labels = np.asarray(labels)
    return bootstrap(
        len(labels),
        lambda idx: classification_metrics(labels[idx], probs[idx], classes),
        resamples=resamples,
        confidence=confidence,
        seed=seed,
        groups=groups,
    )


# -- segmentation ----------------------------------------------------------------------


def segmentation_intervals(
    confusions: np.ndarray,
    classes: list[str],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, Interval]:
    """Bootstrap intervals of the segmentation metrics from per-image confusion matrices.

    Args:
        confusions: ``(N, C, C)`` pixel confusion matrix of every image.
        classes: The C class names.
        resamples: Number of resamples.
        confidence: Level of the intervals.
        seed: Seed of the resampling.
        groups: Group code of every image (:func:`group_codes`): resample whole groups.
    """
    from mediscope.metrics.segmentation import segmentation_report

    confusions = np.asarray(confusions)
    return bootstrap(
        len(confusions),
        lambda idx: segmentation_report(confusions[idx].sum(axis=0), classes),
        resamples=resamples,
        confidence=confidence,
        seed=seed,
        groups=groups,
    )
