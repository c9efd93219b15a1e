"""Paired comparisons of two models evaluated on the same images.

Whether model B is really worse than model A is a question about the difference of
their metrics on the *same* images, not about overlapping intervals:

- :func:`paired_bootstrap`: the images (or whole patients) are resampled once per
  resample and both models are scored on the same resample; the percentile interval
  of the difference and a two-sided p-value (twice the smaller share of resampled
  differences on either side of zero, counting the observed one, so never 0);
- :func:`mcnemar`: the exact McNemar test of two accuracies (a binomial test on the
  discordant images, those one model gets right and the other wrong);
- :func:`delong`: DeLong's test of two correlated AUROCs (DeLong et al. 1988), in the
  fast form of Sun & Xu (2014) that needs one sort per model;
- :func:`holm`: Holm's step-down correction of the p-values of several comparisons.

None of these needs scipy; the tests compare them with ``scipy.stats``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mediscope.metrics.bootstrap import _average_ranks as _midranks
from mediscope.metrics.bootstrap import percentile_interval, resample_indices


@dataclass(frozen=True)
class PairedDifference:
    """``value`` of model B minus model A on the same images, with its interval."""

    value: float
    low: float
    high: float
    p_value: float
    resamples: int


def paired_bootstrap(
    n: int,
    statistic_a: Callable[[np.ndarray], Mapping[str, float]],
    statistic_b: Callable[[np.ndarray], Mapping[str, float]],
    metric: str,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> PairedDifference:
    """The paired bootstrap of ``metric`` of model B minus model A.

    Args:
        n: Number of shared images; both statistics take indices into them.
        statistic_a: Metrics of model A on the images at the given indices.
        statistic_b: Metrics of model B on the same images.
        metric: The metric compared (a key both statistics return).
        resamples: Number of resamples (the p-value cannot go below ``2 / (resamples + 1)``).
        confidence: Level of the interval.
        seed: Seed of the resampling.
        groups: Group code of every image: resample whole patients (cluster bootstrap).

    Returns:
        The observed difference, its percentile interval and the two-sided p-value
        ``min(1, 2 (1 + k) / (resamples + 1))``, k the number of resampled differences
        on the far side of zero (``<= 0`` when the observed difference is positive,
        ``>= 0`` when negative); NaN where the metric is undefined.
    """
    everything = np.arange(n)
    observed = float(statistic_b(everything)[metric]) - float(statistic_a(everything)[metric])
    differences = np.array(
        [
            float(statistic_b(idx)[metric]) - float(statistic_a(idx)[metric])
            for idx in resample_indices(n, resamples, seed, groups=groups)
        ]
    )
    interval = percentile_interval(differences, confidence)
    return PairedDifference(
        value=observed,
        low=interval.low,
        high=interval.high,
        p_value=bootstrap_p_value(differences, observed),
        resamples=resamples,
    )


def bootstrap_p_value(differences: np.ndarray, observed: float) -> float:
    """Two-sided p-value of "no difference" from resampled differences.

    Example:
        >>> bootstrap_p_value(np.array([0.1, 0.2, -0.05, 0.3]), 0.15)  # one of 4 <= 0
        0.8
    """
    finite = differences[np.isfinite(differences)]
    if not math.isfinite(observed) or finite.size == 0:
        return float("nan")
    if observed == 0:
        return 1.0
    beyond = int((finite <= 0).sum()) if observed > 0 else int((finite >= 0).sum())
    return float(min(1.0, 2.0 * (1 + beyond) / (finite.size + 1)))


# -- McNemar -------------------------------------------------------------------------


@dataclass(frozen=True)
class McNemar:
    """The exact McNemar test: ``only_a`` images only A gets right, ``only_b`` only B."""

    only_a: int
    only_b: int
    p_value: float


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` trials of probability 1/2.

    Example:
        >>> round(binomial_two_sided(1, 10), 6)  # 2 * (1 + 10) / 1024
        0.021484
    """
    if n == 0:
        return 1.0
    k = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return float(min(1.0, 2 * tail / 2**n))


def mcnemar(right_a: np.ndarray, right_b: np.ndarray) -> McNemar:
    """The exact McNemar test of two models' accuracies on the same images.

    Args:
        right_a: Whether model A classifies each image right.
        right_b: The same for model B.

    Returns:
        The discordant counts and the exact two-sided p-value (binomial, p = 1/2, on
        the discordant images; 1 when there are none).
    """
    right_a, right_b = np.asarray(right_a, bool), np.asarray(right_b, bool)
    only_a = int((right_a & ~right_b).sum())
    only_b = int((right_b & ~right_a).sum())
    return McNemar(only_a, only_b, binomial_two_sided(only_a, only_a + only_b))


# -- DeLong --------------------------------------------------------------------------


@dataclass(frozen=True)
class DeLong:
    """DeLong's test of two AUROCs on the same images."""

    auc_a: float
    auc_b: float
    difference: float  # B minus A
    se: float
    p_value: float


def delong_components(
    positives: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUROCs and DeLong's structural components of one or more models (Sun & Xu 2014).

    Args:
        positives: ``(N,)`` bool, the images of the positive class.
        scores: ``(K, N)`` score of the positive class by each of K models.

    Returns:
        ``(auc (K,), v10 (K, m), v01 (K, n))``: the AUROCs and, for each model, the
        placement value of every positive (share of negatives it outscores, ties one
        half) and of every negative (share of positives that outscore it).
    """
    positives = np.asarray(positives, bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    x, y = scores[:, positives], scores[:, ~positives]
    m, n = x.shape[1], y.shape[1]
    aucs, v10s, v01s = [], [], []
    for k in range(scores.shape[0]):
        tx, ty = _midranks(x[k]), _midranks(y[k])
        tz = _midranks(np.concatenate([x[k], y[k]]))
        aucs.append((tz[:m].sum() - m * (m + 1) / 2) / (m * n))
        v10s.append((tz[:m] - tx) / n)
        v01s.append(1.0 - (tz[m:] - ty) / m)
    return np.array(aucs), np.array(v10s), np.array(v01s)


def delong(positives: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> DeLong:
    """DeLong's test of the AUROC of model B against model A on the same images.

    The covariance of the two AUROCs is ``S10 / m + S01 / n``, S10 and S01 the
    covariances of the models' placement values over the m positives and n negatives;
    the difference divided by its standard error is referred to the normal
    distribution (two-sided).

    Returns:
        Both AUROCs, their difference, its standard error and the p-value; NaN without
        positives or negatives, p = 1 when the two models rank the images alike.
    """
    positives = np.asarray(positives, bool)
    m, n = int(positives.sum()), int((~positives).sum())
    if m < 2 or n < 2:
        nan = float("nan")
        return DeLong(nan, nan, nan, nan, nan)
    aucs, v10, v01 = delong_components(positives, np.stack([scores_a, scores_b]))
    covariance = np.cov(v10) / m + np.cov(v01) / n
    variance = float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    difference = float(aucs[1] - aucs[0])
    se = math.sqrt(max(variance, 0.0))
    if se <= 1e-15:
        p = 1.0 if abs(difference) <= 1e-15 else 0.0
    else:
        p = math.erfc(abs(difference) / se / math.sqrt(2))
    return DeLong(float(aucs[0]), float(aucs[1]), difference, se, float(p))


# -- Holm ----------------------------------------------------------------------------


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries are left out and stay NaN).

    The i-th smallest of k p-values is multiplied by ``k - i + 1`` (i from 1), and the
    adjusted values are made non-decreasing in that order and capped at 1.

    Example:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    values = np.asarray(p_values, dtype=np.float64)
    out = np.full(len(values), np.nan)
    finite = np.flatnonzero(np.isfinite(values))
    k = len(finite)
    order = finite[np.argsort(values[finite], kind="stable")]
    running = 0.0
    for i, index in enumerate(order):
        running = max(running, min(1.0, (k - i) * float(values[index])))
        out[index] = running
    return [round(float(v), 12) if np.isfinite(v) else float("nan") for v in out]
