"""Paired comparisons: McNemar, DeLong, Holm and the paired bootstrap, against hand
computations and scipy.stats."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from mediscope.metrics.bootstrap import classification_metrics
from mediscope.metrics.paired import (
    binomial_two_sided,
    bootstrap_p_value,
    delong,
    delong_components,
    holm,
    mcnemar,
    paired_bootstrap,
)


def _two_models() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """20 images of class 0: A right on 0-15, B right on 0-9 and 16-17."""
    labels = np.zeros(20, dtype=int)
    right_a = np.arange(20) < 16
    right_b = (np.arange(20) < 10) | np.isin(np.arange(20), [16, 17])
    return labels, right_a, right_b


def test_mcnemar_by_hand_and_scipy() -> None:
    _, right_a, right_b = _two_models()
    result = mcnemar(right_a, right_b)
    assert (result.only_a, result.only_b) == (6, 2)  # images 10-15; images 16, 17
    # exact: 2 * P(X <= 2), X ~ Binomial(8, 1/2) = 2 * (1 + 8 + 28) / 256
    assert result.p_value == pytest.approx(74 / 256, abs=1e-12)
    assert result.p_value == pytest.approx(stats.binomtest(2, 8, 0.5).pvalue, abs=1e-12)
    assert mcnemar(right_a, right_a).p_value == 1.0  # no discordant image
    for k, n in [(0, 1), (3, 7), (10, 40), (50, 100), (0, 30)]:
        assert binomial_two_sided(k, n) == pytest.approx(stats.binomtest(k, n, 0.5).pvalue)


def test_delong_hand_made_case() -> None:
    # positives A .9 .8 .4 / negatives A .5 .3 .2 -> AUC 8/9; placements v10 (1, 1, 2/3),
    # v01 (2/3, 1, 1). B: positives .7 .3 .6 / negatives .4 .5 .1 -> AUC 7/9, v10
    # (1, 1/3, 1), v01 (2/3, 2/3, 1). Covariances (ddof 1): S10 = [[1/27, -1/27],
    # [-1/27, 4/27]], S01 = [[1/27, 1/54], [1/54, 1/27]]; var(B - A) = (1/27 + 4/27 +
    # 2/27) / 3 + (1/27 + 1/27 - 1/27) / 3 = 8/81; z = (-1/9) / sqrt(8/81) = -1/sqrt(8).
    positives = np.array([1, 1, 1, 0, 0, 0], bool)
    a = np.array([0.9, 0.8, 0.4, 0.5, 0.3, 0.2])
    b = np.array([0.7, 0.3, 0.6, 0.4, 0.5, 0.1])
    aucs, v10, v01 = delong_components(positives, np.stack([a, b]))
    assert aucs == pytest.approx([8 / 9, 7 / 9])
    assert v10 == pytest.approx(np.array([[1, 1, 2 / 3], [1, 1 / 3, 1]]))
    assert v01 == pytest.approx(np.array([[2 / 3, 1, 1], [2 / 3, 2 / 3, 1]]))
    result = delong(positives, a, b)
    assert result.difference == pytest.approx(-1 / 9)
    assert result.se == pytest.approx(math.sqrt(8 / 81))
    z = -1 / math.sqrt(8)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(z)))
    assert result.p_value == pytest.approx(0.72367, abs=1e-5)


def _naive_delong(positives: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """DeLong's 1988 definition: placement values by comparing every pair, O(m n)."""

    def placements(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = s[positives], s[~positives]
        psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        return psi.mean(axis=1), psi.mean(axis=0)

    (a10, a01), (b10, b01) = placements(a), placements(b)
    m, n = len(a10), len(a01)
    s10, s01 = np.cov(np.stack([a10, b10])), np.cov(np.stack([a01, b01]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return float(b10.mean() - a10.mean()), math.sqrt(var)


def test_fast_delong_equals_the_definition_and_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    positives = rng.random(120) < 0.4
    a = np.round(positives * 0.8 + rng.normal(0, 0.6, 120), 1)  # rounded: many ties
    b = np.round(positives * 0.5 + rng.normal(0, 0.6, 120), 1)
    result = delong(positives, a, b)
    difference, se = _naive_delong(positives, a, b)
    assert result.auc_a == pytest.approx(roc_auc_score(positives, a))
    assert result.auc_b == pytest.approx(roc_auc_score(positives, b))
    assert result.difference == pytest.approx(difference)
    assert result.se == pytest.approx(se)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(difference / se)))
    assert delong(positives, a, a).p_value == 1.0
    assert math.isnan(delong(np.ones(5, bool), a[:5], b[:5]).p_value)  # no negatives


def test_holm_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04: x3 = 0.03, x2 = 0.06, x1 = 0.04 -> kept non-decreasing 0.06
    assert holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(holm([0.01, float("nan")])[1])
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_paired_bootstrap_of_accuracies() -> None:
    # 400 images: A right on 320; B on 280 of those plus 20 others. Difference B - A:
    # d_i in {-1, 0, 1}, 40 times -1 and 20 times +1: mean -20/400 = -0.05 and
    # sd of the mean sqrt(((40 + 20) / 400 - 0.05**2) / 400).
    n = 400
    labels = np.zeros(n, dtype=int)
    right_a = np.arange(n) < 320
    right_b = (np.arange(n) < 280) | ((np.arange(n) >= 320) & (np.arange(n) < 340))
    probs_a = np.where(right_a[:, None], [0.9, 0.1], [0.1, 0.9])
    probs_b = np.where(right_b[:, None], [0.8, 0.2], [0.2, 0.8])
    result = paired_bootstrap(
        n,
        lambda idx: classification_metrics(labels[idx], probs_a[idx], ["x", "y"]),
        lambda idx: classification_metrics(labels[idx], probs_b[idx], ["x", "y"]),
        "accuracy",
        resamples=3000,
        seed=0,
    )
    assert result.value == pytest.approx(-0.05)
    se = math.sqrt(((40 + 20) / n - 0.05**2) / n)
    assert result.low == pytest.approx(-0.05 - 1.96 * se, abs=0.006)
    assert result.high == pytest.approx(-0.05 + 1.96 * se, abs=0.006)
    # z = 0.05 / se = 2.60: the bootstrap p-value is near the normal one (0.0093) and
    # McNemar's exact one on 40 against 20 discordant images (0.0134)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(0.05 / se), abs=0.004)
    assert mcnemar(right_a, right_b).p_value == pytest.approx(
        stats.binomtest(20, 60, 0.5).pvalue, abs=1e-12
    )
    same = paired_bootstrap(
        n,
        lambda idx: {"m": float(right_a[idx].mean())},
        lambda idx: {"m": float(right_a[idx].mean())},
        "m",
        resamples=100,
    )
    assert (same.value, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_bootstrap_p_value_by_hand() -> None:
    diffs = np.array([0.1, 0.2, -0.05, 0.3, 0.0])
    # observed > 0: 2 of 5 at or below zero -> 2 (1 + 2) / 6 = 1
    assert bootstrap_p_value(diffs, 0.1) == 1.0
    assert bootstrap_p_value(np.full(99, 0.2), 0.2) == pytest.approx(2 / 100)
    assert bootstrap_p_value(np.full(99, -0.2), -0.2) == pytest.approx(2 / 100)
    assert math.isnan(bootstrap_p_value(np.array([np.nan]), 0.1))
