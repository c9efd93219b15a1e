"""Every model against the best one, on the images they were all evaluated on.

For a leaderboard of single runs, each cell's ``<split>_samples.npz`` is read back; on
the images every cell shares, each cell's metric minus the best cell's is bootstrapped
in pairs (the same resampled images, or patients, for both), with its interval and
p-value; classification adds the exact McNemar test of the accuracies and, with two
classes, DeLong's test of the AUROCs. The p-values of the test that decides (McNemar
when ranking by accuracy, DeLong by AUROC with two classes, else the paired bootstrap)
are Holm-corrected over the comparisons, and a cell is *not significantly worse* than
the best when its corrected p-value is at least ``1 - confidence`` or it is not worse.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mediscope.evaluation.per_sample import Samples, Statistic, read_samples, samples_file
from mediscope.metrics.bootstrap import bootstrap_unit, group_codes
from mediscope.metrics.paired import (
    DeLong,
    McNemar,
    PairedDifference,
    delong,
    holm,
    mcnemar,
    paired_bootstrap,
)


@dataclass
class Comparison:
    """One cell against the best cell (differences are the cell's minus the best's)."""

    cell: str
    images: int
    unit: str
    groups: int
    difference: PairedDifference
    mcnemar: McNemar | None = None
    delong: DeLong | None = None
    test: str = "bootstrap"
    p_value: float = math.nan
    p_holm: float = math.nan
    mcnemar_holm: float = math.nan
    delong_holm: float = math.nan
    not_worse: bool = True


@dataclass
class Comparisons:
    """The comparisons of every cell with ``best`` on ``images`` shared images."""

    best: str
    metric: str
    images: int
    unit: str
    groups: int
    alpha: float
    cells: dict[str, Comparison]


def deciding_test(metric: str, task: str, classes: int) -> str:
    """``mcnemar`` for accuracy, ``delong`` for the AUROC of two classes, else
    ``bootstrap``."""
    if task == "classification" and metric == "accuracy":
        return "mcnemar"
    if task == "classification" and metric.startswith("auroc") and classes == 2:
        return "delong"
    return "bootstrap"


def compare_to_best(
    runs: Mapping[str, Path],
    best: str,
    split: str,
    metric: str,
    *,
    lower_is_better: bool,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparisons | None:
    """Compares every run with the run of ``best`` on the images they all share.

    Args:
        runs: Cell name to its (single) run folder.
        best: The cell ranked first.
        split: ``test`` or ``val``: which ``<split>_samples.npz`` to read.
        metric: The ranking metric.
        lower_is_better: Its direction (a cell is worse when its difference goes there).
        resamples: Paired bootstrap resamples.
        confidence: Level of the intervals; ``1 - confidence`` is the test level.
        seed: Seed of the resampling (the same for every comparison).

    Returns:
        The comparisons (cells without a samples file are left out); None when the
        best cell has none, when no other cell has one or the runs share no image.
    """
    loaded = {name: read_samples(samples_file(path, split)) for name, path in runs.items()}
    samples = {name: s for name, s in loaded.items() if s is not None}
    reference = samples.get(best)
    if reference is None or len(samples) < 2:
        return None
    shared = set(reference.ids)
    for other in samples.values():
        shared &= set(other.ids)
    ids = [i for i in reference.ids if i in shared]  # the best run's order
    if not ids:
        return None
    groups = group_codes([reference.groups[i] for i in reference.positions(ids)])
    unit, count = bootstrap_unit(groups, len(ids))
    test = deciding_test(metric, reference.task, len(reference.classes))
    base = _remembered(reference.statistic(ids))
    if metric not in base(np.arange(len(ids))):
        return None  # a metric the per-image results cannot recompute (counts, ...)
    cells: dict[str, Comparison] = {}
    for name, other in samples.items():
        if name == best:
            continue
        difference = paired_bootstrap(
            len(ids),
            base,
            other.statistic(ids),
            metric,
            resamples=resamples,
            confidence=confidence,
            seed=seed,
            groups=groups,
        )
        comparison = Comparison(name, len(ids), unit, count, difference, test=test)
        if reference.task == "classification":
            comparison.mcnemar, comparison.delong = _classification_tests(reference, other, ids)
        comparison.p_value = {
            "mcnemar": comparison.mcnemar.p_value if comparison.mcnemar else math.nan,
            "delong": comparison.delong.p_value if comparison.delong else math.nan,
        }.get(test, difference.p_value)
        cells[name] = comparison
    alpha = 1.0 - confidence
    names = list(cells)
    for key, values in (
        ("p_holm", [cells[n].p_value for n in names]),
        ("mcnemar_holm", [_p(cells[n].mcnemar) for n in names]),
        ("delong_holm", [_p(cells[n].delong) for n in names]),
    ):
        for name, adjusted in zip(names, holm(values), strict=True):
            setattr(cells[name], key, adjusted)
    for comparison in cells.values():
        value = comparison.difference.value
        worse = value > 0 if lower_is_better else value < 0
        significant = math.isfinite(comparison.p_holm) and comparison.p_holm < alpha
        comparison.not_worse = not (worse and significant)
    return Comparisons(best, metric, len(ids), unit, count, alpha, cells)


def _remembered(statistic: Statistic) -> Statistic:
    """``statistic`` computed once per distinct resample (every comparison draws the
    same resamples of the best cell)."""
    seen: dict[bytes, Mapping[str, float]] = {}

    def remembered(indices: np.ndarray) -> Mapping[str, float]:
        key = np.asarray(indices, dtype=np.int64).tobytes()
        if key not in seen:
            seen[key] = statistic(indices)
        return seen[key]

    return remembered


def _p(test: McNemar | DeLong | None) -> float:
    return test.p_value if test is not None else math.nan


def _classification_tests(
    best: Samples, other: Samples, ids: list[str]
) -> tuple[McNemar, DeLong | None]:
    at_best, at_other = best.positions(ids), other.positions(ids)
    labels = best.arrays["labels"][at_best]
    probs_best, probs_other = best.arrays["probs"][at_best], other.arrays["probs"][at_other]
    test = mcnemar(probs_best.argmax(axis=1) == labels, probs_other.argmax(axis=1) == labels)
    if probs_best.shape[1] != 2:
        return test, None
    positives = np.asarray(labels) == 1
    return test, delong(positives, probs_best[:, 1], probs_other[:, 1])
