"""Bootstrap confidence intervals of evaluation metrics.

The evaluated images are resampled with replacement ``resamples`` times (seeded), every
metric is recomputed on each resample, and the interval is the percentile interval of
those values (Efron's percentile bootstrap). Metrics that are undefined on a resample
(NaN, e.g. a class absent from it) are left out of that metric's percentiles.

Intervals are stored beside the metrics with flat keys ``ci_low/<metric>`` and
``ci_high/<metric>``, plus ``bootstrap_resamples`` and ``confidence``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from mediscope.metrics.calibration import expected_calibration_error

#: Prefixes of the interval keys in the metrics files.
CI_LOW, CI_HIGH = "ci_low/", "ci_high/"

#: Keys that describe an evaluation rather than measure it: never given an interval.
NOT_METRICS = ("n_samples", "n_images", "epoch", "support/", "gt/", "count_threshold")


@dataclass(frozen=True)
class Interval:
    """A confidence interval of one metric."""

    low: float
    high: float


def is_metric(key: str) -> bool:
    """True for keys that measure quality (not counts, epochs or interval bounds)."""
    if key.startswith((CI_LOW, CI_HIGH)) or key in ("bootstrap_resamples", "confidence"):
        return False
    return not any(key == k or (k.endswith("/") and key.startswith(k)) for k in NOT_METRICS)


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, n)`` indices drawn with replacement from ``0..n-1``, seeded."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(resamples, n))


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
) -> dict[str, Interval]:
    """Percentile bootstrap intervals of every metric ``statistic`` returns.

    Args:
        n: Number of evaluated items (images); resamples draw ``n`` of them.
        statistic: Metrics of the items at the given indices (repeats allowed).
        resamples: Number of resamples.
        confidence: Level of the intervals, e.g. 0.95.
        seed: Seed of the resampling, so reports are reproducible.
        keys: The metrics to keep (default: every key :func:`is_metric` accepts).

    Returns:
        Metric name to :class:`Interval`; empty when ``n`` or ``resamples`` is 0.
    """
    if n <= 0 or resamples <= 0:
        return {}
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    samples: dict[str, list[float]] = {}
    wanted = set(keys) if keys is not None else None
    for indices in resample_indices(n, resamples, seed):
        for key, value in statistic(indices).items():
            if (wanted is None and is_metric(key)) or (wanted is not None and key in wanted):
                samples.setdefault(key, []).append(float(value))
    return {
        key: percentile_interval(np.array(values), confidence) for key, values in samples.items()
    }


def interval_keys(
    intervals: Mapping[str, Interval], *, resamples: int, confidence: float
) -> dict[str, float]:
    """The flat keys the metrics files hold for ``intervals``."""
    if not intervals:
        return {}
    out: dict[str, float] = {
        "bootstrap_resamples": float(resamples),
        "confidence": float(confidence),
    }
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
        if not k.startswith((CI_LOW, CI_HIGH)) and k not in ("bootstrap_resamples", "confidence")
    }


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
) -> dict[str, Interval]:
    """Bootstrap intervals of the classification metrics, resampling images."""
    labels = np.asarray(labels)
    return bootstrap(
        len(labels),
        lambda idx: classification_metrics(labels[idx], probs[idx], classes),
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )


# -- segmentation ----------------------------------------------------------------------


def segmentation_intervals(
    confusions: np.ndarray,
    classes: list[str],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """Bootstrap intervals of the segmentation metrics from per-image confusion matrices.

    Args:
        confusions: ``(N, C, C)`` pixel confusion matrix of every image.
        classes: The C class names.
    """
    from mediscope.metrics.segmentation import segmentation_report

    confusions = np.asarray(confusions)
    return bootstrap(
        len(confusions),
        lambda idx: segmentation_report(confusions[idx].sum(axis=0), classes),
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )
