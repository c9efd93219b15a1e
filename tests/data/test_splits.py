"""Split methods: holdout, by patient, k-fold, the data's own column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mediscope.config.schema import SplitConfig
from mediscope.data.samplers import EpochSampler
from mediscope.data.samples import Sample, SampleSet
from mediscope.data.splits import make_split
from mediscope.errors import DataError


def sample_set(n: int, *, groups: bool = False, splits: list[str] | None = None) -> SampleSet:
    samples = [
        Sample(
            image=f"/d/{i}.png",
            label=i % 3,
            group=f"p{i // 4}" if groups else None,
            split=splits[i] if splits else None,
        )
        for i in range(n)
    ]
    return SampleSet(["a", "b", "c"], samples, Path("/d"))


def split(samples: SampleSet, **kwargs: object) -> dict[str, np.ndarray]:
    options = {"method": "auto", "val_fraction": 0.25, "seed": 0, **kwargs}
    return make_split(samples, **options)  # type: ignore[arg-type]


def test_patients_never_straddle_splits() -> None:
    samples = sample_set(120, groups=True)
    parts = split(samples)
    groups = [s.group for s in samples.samples]
    train = {groups[i] for i in parts["train"]}
    val = {groups[i] for i in parts["val"]}
    assert not train & val
    assert 0.15 < len(parts["val"]) / 120 < 0.35


def test_kfold_covers_every_sample_once() -> None:
    samples = sample_set(60)
    seen = np.concatenate(
        [split(samples, method="kfold", folds=4, fold=f)["val"] for f in range(4)]
    )
    assert sorted(seen.tolist()) == list(range(60))
    grouped = sample_set(60, groups=True)
    for fold in range(3):
        parts = split(grouped, method="kfold", folds=3, fold=fold)
        groups = [s.group for s in grouped.samples]
        assert not {groups[i] for i in parts["train"]} & {groups[i] for i in parts["val"]}


def test_column_split_and_test_rows() -> None:
    names = ["train"] * 8 + ["val"] * 3 + ["test"] * 2
    parts = split(sample_set(13, splits=names))  # auto → the column
    assert parts["train"].tolist() == list(range(8))
    assert parts["val"].tolist() == [8, 9, 10] and parts["test"].tolist() == [11, 12]
    # holdout over the non-test rows keeps the test rows out
    names = ["train"] * 30 + ["test"] * 6
    parts = split(sample_set(36, splits=names), method="holdout")
    assert parts["test"].tolist() == list(range(30, 36))
    assert not set(parts["train"]) & set(range(30, 36))
    assert len(parts["train"]) + len(parts["val"]) == 30
    with pytest.raises(DataError, match="no 'val' samples"):
        split(sample_set(4, splits=["train"] * 4), method="column")
    # auto without validation rows: a holdout of the train rows, test rows kept
    parts = split(sample_set(36, splits=names))
    assert parts["test"].tolist() == list(range(30, 36))
    assert len(parts["train"]) + len(parts["val"]) == 30
    with pytest.raises(DataError, match=r"unknown split names \['tarin'\]"):
        split(sample_set(2, splits=["tarin", "val"]))


def test_train_size_sets_the_validation_share() -> None:
    assert SplitConfig(train_size=0.95).val_fraction == pytest.approx(0.05)
    with pytest.raises(ValueError, match="fold 5 does not exist"):
        SplitConfig(folds=5, fold=5)


def test_weighted_sampler_balances_classes() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    weights = 1.0 / np.bincount(labels)[labels]
    sampler = EpochSampler(100, seed=0, weights=weights)
    drawn = [labels[i] for epoch in range(20) for _, i in (sampler.set_epoch(epoch) or sampler)]
    share = np.mean(drawn)
    assert 0.4 < share < 0.6  # about half of the draws are the rare class
    sampler.set_epoch(3)
    assert list(sampler) == list(sampler)  # an epoch's draw is fixed
