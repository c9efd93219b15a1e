"""Cells against the best on shared images, from their ``<split>_samples.npz``: the
numbers against hand computations and scipy.stats, and the leaderboard's marks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mediscope.evaluation.paired import compare_to_best
from mediscope.evaluation.per_sample import (
    detection_arrays,
    read_samples,
    samples_file,
    write_samples,
)
from mediscope.metrics.detection import evaluate_detections
from mediscope.metrics.paired import delong
from mediscope.metrics.segmentation import segmentation_report
from mediscope.reports.leaderboard import (
    CellRuns,
    RunMetrics,
    build_leaderboard,
    markdown,
    write_leaderboard,
)
from mediscope.study.leaderboard import add_comparisons

N = 60


def _probs(right: np.ndarray, labels: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Two-class probabilities: the true class gets ``confidence`` where right."""
    p_true = np.where(right, confidence, 1 - confidence)
    probs = np.zeros((len(labels), 2))
    probs[np.arange(len(labels)), labels] = p_true
    probs[np.arange(len(labels)), 1 - labels] = 1 - p_true
    return probs


def _runs(tmp_path: Path, groups: list[str] | None = None) -> dict[str, Path]:
    """Three models on 60 images (labels alternate 0, 1):

    - best: wrong on images 0-5 (54 right);
    - worse: wrong on images 0-1 and 20-43 (34 right): only best is right on 20-43 (24
      images), only worse on 2-5 (4 images);
    - twin: wrong on images 0-5 and 50 (53 right): only best is right on image 50.
    """
    labels = np.arange(N) % 2
    confidence = np.linspace(0.55, 0.95, N)
    index = np.arange(N)
    wrong = {
        "best": index < 6,
        "worse": (index < 2) | ((index >= 20) & (index < 44)),
        "twin": (index < 6) | (index == 50),
    }
    runs = {}
    for name, bad in wrong.items():
        folder = tmp_path / name
        folder.mkdir()
        write_samples(
            folder,
            "test",
            "classification",
            [f"img{i:02d}.png" for i in index],
            groups or [None] * N,
            ["neg", "pos"],
            labels=labels,
            probs=_probs(~bad, labels, confidence),
        )
        runs[name] = folder
    return runs


def test_accuracy_comparisons_by_hand_and_scipy(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    result = compare_to_best(
        runs, "best", "test", "accuracy", lower_is_better=False, resamples=2000, seed=0
    )
    assert result is not None and result.images == N and result.unit == "image"
    worse, twin = result.cells["worse"], result.cells["twin"]
    assert worse.test == "mcnemar"
    assert worse.difference.value == pytest.approx((34 - 54) / N)
    assert twin.difference.value == pytest.approx(-1 / N)
    assert worse.mcnemar is not None and twin.mcnemar is not None
    assert (worse.mcnemar.only_a, worse.mcnemar.only_b) == (24, 4)
    assert (twin.mcnemar.only_a, twin.mcnemar.only_b) == (1, 0)
    p_worse = stats.binomtest(4, 28, 0.5).pvalue
    assert worse.p_value == pytest.approx(p_worse)
    assert twin.p_value == pytest.approx(1.0)  # one discordant image: p = 2 * 1/2
    # Holm over two: the smaller p doubled, the larger kept (capped at 1)
    assert worse.p_holm == pytest.approx(2 * p_worse)
    assert twin.p_holm == pytest.approx(1.0)
    assert worse.not_worse is False and twin.not_worse is True
    # the paired bootstrap agrees on the direction and excludes 0 for "worse" only
    assert worse.difference.high < 0 <= twin.difference.high
    assert worse.delong is not None  # two classes: DeLong beside


def test_auroc_uses_delong(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    result = compare_to_best(
        runs, "best", "test", "auroc_macro", lower_is_better=False, resamples=200
    )
    assert result is not None
    worse = result.cells["worse"]
    assert worse.test == "delong"
    samples = {n: read_samples(samples_file(p, "test")) for n, p in runs.items()}
    labels = samples["best"].arrays["labels"]
    expected = delong(
        labels == 1, samples["best"].arrays["probs"][:, 1], samples["worse"].arrays["probs"][:, 1]
    )
    assert worse.p_value == pytest.approx(expected.p_value)
    assert worse.difference.value == pytest.approx(expected.difference)


def test_groups_make_a_patient_bootstrap(tmp_path: Path) -> None:
    runs = _runs(tmp_path, groups=[f"p{i // 5}" for i in range(N)])
    result = compare_to_best(runs, "best", "test", "f1_macro", lower_is_better=False)
    assert result is not None
    assert (result.unit, result.groups) == ("patient", 12)
    assert result.cells["worse"].test == "bootstrap"


def test_only_shared_images_and_missing_files(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    # a cell evaluated on fewer images: all comparisons use the shared ones
    data = read_samples(samples_file(runs["twin"], "test"))
    assert data is not None
    keep = np.arange(40)
    write_samples(
        runs["twin"],
        "test",
        "classification",
        [data.ids[i] for i in keep],
        [None] * 40,
        data.classes,
        labels=data.arrays["labels"][keep],
        probs=data.arrays["probs"][keep],
    )
    result = compare_to_best(runs, "best", "test", "accuracy", lower_is_better=False)
    assert result is not None and result.images == 40
    assert result.cells["worse"].mcnemar.only_a == 20  # images 20-39
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        compare_to_best({**runs, "best": empty}, "best", "test", "accuracy", lower_is_better=False)
        is None
    )


def test_a_metric_the_samples_cannot_recompute_is_not_compared(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    assert compare_to_best(runs, "best", "test", "count_mae", lower_is_better=True) is None


def test_leaderboard_marks_the_cells(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    accuracy = {"best": 54 / N, "worse": 34 / N, "twin": 53 / N}
    cells = [
        CellRuns(
            name=name,
            values={"model": name},
            runs=[RunMetrics(repeat="r0", seed=0, fold=None, metrics={"accuracy": a})],
        )
        for name, a in accuracy.items()
    ]
    board = build_leaderboard(
        cells, grid_keys=["model"], metric="accuracy", task="classification", split="test"
    )
    comparisons = compare_to_best(runs, "best", "test", "accuracy", lower_is_better=False)
    assert comparisons is not None
    add_comparisons(board, comparisons)
    text = markdown(board)
    assert "| 1 | best |" in text
    row = {line.split("|")[2].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert row["best"].rstrip(" |").count("best") >= 2
    assert "| no |" in row["worse"] and "| yes |" in row["twin"]
    assert "exact McNemar test, Holm-corrected for the 2 comparisons" in text
    files = write_leaderboard(board, tmp_path / "study")
    table = pd.read_csv(files["csv"])
    flags = dict(zip(table["cell"], table["not_worse"], strict=True))
    assert flags == {"best": True, "twin": True, "worse": False}
    assert {"vs_best", "vs_best_ci_low", "vs_best_p_holm", "mcnemar_p", "delong_p"} <= set(
        table.columns
    )
    assert files["png"].stat().st_size > 0


def test_segmentation_and_detection_samples_recompute_the_metrics(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    confusions = rng.integers(0, 100, size=(5, 2, 2))
    write_samples(
        tmp_path,
        "val",
        "segmentation",
        list("abcde"),
        [None] * 5,
        ["bg", "x"],
        confusions=confusions,
    )
    data = read_samples(samples_file(tmp_path, "val"))
    assert data is not None
    statistic = data.statistic(list("abcde"))
    expected = segmentation_report(confusions.sum(axis=0), ["bg", "x"])
    assert statistic(np.arange(5))["dice_mean"] == pytest.approx(expected["dice_mean"])

    predictions, targets = [], []
    for k in range(4):
        truth = rng.uniform(0, 40, size=(k, 2))
        boxes = np.hstack([truth, truth + 10])
        predictions.append({"boxes": boxes + 1, "scores": rng.random(k), "labels": np.zeros(k)})
        targets.append({"boxes": boxes, "labels": np.zeros(k)})
    write_samples(
        tmp_path,
        "test",
        "detection",
        list("wxyz"),
        [None] * 4,
        ["c"],
        **detection_arrays(predictions, targets),
    )
    data = read_samples(samples_file(tmp_path, "test"))
    assert data is not None
    value = data.statistic(list("wxyz"))(np.arange(4))["map"]
    assert value == pytest.approx(evaluate_detections(predictions, targets, ["c"]).metrics["map"])
    assert not math.isnan(value)
