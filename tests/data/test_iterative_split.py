"""Detection splits: iterative stratification over object counts per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mediscope.data.samples import Sample, SampleSet
from mediscope.data.splits import (
    box_counts,
    holdout_split,
    iterative_stratification,
    kfold_split,
    make_split,
)
from mediscope.errors import DataError

#: Object probabilities of 5 classes: very imbalanced.
PROBABILITIES = [0.6, 0.25, 0.1, 0.04, 0.01]


def detection_set(
    n: int = 800, *, seed: int = 0, groups: bool = False, splits: list[str] | None = None
) -> SampleSet:
    """Images with Poisson(3) objects of imbalanced classes; about 15 % negatives."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        count = 0 if rng.random() < 0.15 else int(rng.poisson(3)) + 1
        labels = rng.choice(len(PROBABILITIES), size=count, p=PROBABILITIES).astype(np.int64)
        boxes = np.tile(np.array([[0, 0, 4, 4]], np.float32), (count, 1))
        samples.append(
            Sample(
                image=f"/d/{i}.png",
                boxes=boxes,
                box_labels=labels,
                group=f"p{i // 5}" if groups else None,
                split=splits[i] if splits else None,
            )
        )
    return SampleSet([f"c{k}" for k in range(len(PROBABILITIES))], samples, Path("/d"))


def split(samples: SampleSet, **kwargs: object) -> dict[str, np.ndarray]:
    options = {"method": "holdout", "val_fraction": 0.2, "seed": 0, **kwargs}
    return make_split(samples, **options)  # type: ignore[arg-type]


def check_shares(counts: np.ndarray, part: np.ndarray, share: float) -> None:
    """Per-class object shares of ``part`` near ``share``: within 3 points, or one object
    for classes too rare for percentages."""
    totals = counts.sum(axis=0)
    inside = counts[part].sum(axis=0)
    for k, (total, got) in enumerate(zip(totals, inside, strict=True)):
        if total >= 100:
            assert abs(got / total - share) < 0.03, (k, got, total)
        else:
            assert abs(got - share * total) <= 1.5, (k, got, total)


def test_box_counts() -> None:
    samples = detection_set(10)
    counts = box_counts(samples)
    assert counts is not None and counts.shape == (10, 5) and counts.dtype == np.int64
    assert counts.sum() == sum(
        len(s.box_labels) for s in samples.samples if s.box_labels is not None
    )
    classification = SampleSet(["a", "b"], [Sample("/x.png", label=1)], Path("/"))
    assert box_counts(classification) is None


def test_holdout_keeps_class_shares_and_spreads_negatives() -> None:
    samples = detection_set()
    counts = box_counts(samples)
    assert counts is not None
    parts = split(samples)
    train, val = parts["train"], parts["val"]
    assert not set(train.tolist()) & set(val.tolist())
    assert sorted([*train.tolist(), *val.tolist()]) == list(range(len(samples)))
    assert abs(len(val) / len(samples) - 0.2) < 0.03
    check_shares(counts, val, 0.2)
    check_shares(counts, train, 0.8)
    negatives = np.flatnonzero(counts.sum(axis=1) == 0)
    assert abs(np.isin(negatives, val).mean() - 0.2) < 0.05


def test_deterministic_for_a_seed() -> None:
    samples = detection_set(300)
    first, again = split(samples, seed=4), split(samples, seed=4)
    assert np.array_equal(first["val"], again["val"])
    assert not np.array_equal(first["val"], split(samples, seed=5)["val"])
    kfold = [split(samples, method="kfold", folds=3, fold=1, seed=4)["val"] for _ in range(2)]
    assert np.array_equal(*kfold)


def test_kfold_folds_are_disjoint_cover_everything_and_keep_shares() -> None:
    samples = detection_set(600)
    counts = box_counts(samples)
    assert counts is not None
    vals = []
    for fold in range(4):
        parts = split(samples, method="kfold", folds=4, fold=fold)
        assert not set(parts["train"].tolist()) & set(parts["val"].tolist())
        assert len(parts["train"]) + len(parts["val"]) == len(samples)
        check_shares(counts, parts["val"], 0.25)
        vals.append(set(parts["val"].tolist()))
    for i in range(4):
        for j in range(i + 1, 4):
            assert not vals[i] & vals[j]
    assert set().union(*vals) == set(range(len(samples)))


def test_patients_never_straddle_splits_and_shares_hold() -> None:
    samples = detection_set(1000, groups=True)
    counts = box_counts(samples)
    assert counts is not None
    groups = [s.group for s in samples.samples]
    parts = split(samples)
    assert not {groups[i] for i in parts["train"]} & {groups[i] for i in parts["val"]}
    assert abs(len(parts["val"]) / len(samples) - 0.2) < 0.04
    totals, inside = counts.sum(axis=0), counts[parts["val"]].sum(axis=0)
    for total, got in zip(totals[:3], inside[:3], strict=True):  # the frequent classes
        assert abs(got / total - 0.2) < 0.04
    for fold in range(3):
        parts = split(samples, method="kfold", folds=3, fold=fold)
        assert not {groups[i] for i in parts["train"]} & {groups[i] for i in parts["val"]}


def test_test_rows_stay_test_and_unstratified_detection_splits() -> None:
    names = ["test" if i % 10 == 0 else "" for i in range(200)]
    samples = detection_set(200, splits=names)
    parts = split(samples)
    assert parts["test"].tolist() == list(range(0, 200, 10))
    assert not set(parts["val"].tolist()) & set(parts["test"].tolist())
    plain = split(detection_set(50), stratify=False)
    assert len(plain["val"]) == 10
    plain = split(detection_set(50), stratify=False, method="kfold", folds=5, fold=2)
    assert len(plain["val"]) == 10


def test_classification_splits_are_unchanged() -> None:
    labels = np.arange(60) % 3
    samples = SampleSet(
        ["a", "b", "c"],
        [Sample(f"/d/{i}.png", label=int(v)) for i, v in enumerate(labels)],
        Path("/d"),
    )
    parts = split(samples, val_fraction=0.25, seed=3)
    train, val = holdout_split(labels, val_fraction=0.25, seed=3)
    assert np.array_equal(parts["train"], train) and np.array_equal(parts["val"], val)
    parts = split(samples, method="kfold", folds=4, fold=2, seed=3)
    train, val = kfold_split(labels, None, 4, 2, 3)
    assert np.array_equal(parts["val"], val)


def test_rare_class_is_placed_first() -> None:
    # Two images hold the only objects of class 1: one per fold, whatever the seed.
    counts = np.zeros((40, 2), np.int64)
    counts[:, 0] = 2
    counts[[5, 17], 1] = 1
    for seed in range(10):
        folds = iterative_stratification(counts, [0.5, 0.5], seed=seed)
        assert sorted(folds[[5, 17]].tolist()) == [0, 1]
        assert np.bincount(folds).tolist() == [20, 20]


def test_errors() -> None:
    with pytest.raises(DataError, match="cannot be split with val_fraction=0.01"):
        split(detection_set(20), val_fraction=0.01)
    with pytest.raises(DataError, match="3 samples cannot be split into 5 folds"):
        split(detection_set(3), method="kfold", folds=5)
    with pytest.raises(DataError, match="fold 7 does not exist in 5 folds"):
        split(detection_set(20), method="kfold", folds=5, fold=7)
    with pytest.raises(DataError, match="2 patients cannot be split into 3 folds"):
        split(detection_set(10, groups=True), method="kfold", folds=3)
