"""The classification task: class weights, normalisation, augmentation options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import tiny_config
from mediscope.data.datamodule import dataset_stats
from mediscope.errors import ConfigError
from mediscope.tasks import ClassificationTask, data_module
from mediscope.tasks.validate import config_from_dict


def task(tmp_path: Path, class_counts: list[int] | None, **loss: object) -> ClassificationTask:
    raw = tiny_config(tmp_path, tmp_path, loss=loss)
    return ClassificationTask(
        config=config_from_dict(raw), classes=["a", "b", "c"], class_counts=class_counts
    )


def test_balanced_class_weights(tmp_path: Path) -> None:
    weights = task(tmp_path, [60, 30, 10], class_weights="balanced").weights()
    assert weights is not None
    assert weights.tolist() == pytest.approx([100 / 180, 100 / 90, 100 / 30])
    logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 2])
    loss = task(tmp_path, [60, 30, 10], class_weights="balanced").criterion(logits, target)
    expected = torch.nn.functional.cross_entropy(logits, target, weight=weights)
    assert loss.item() == pytest.approx(expected.item())


def test_listed_class_weights_must_fit(tmp_path: Path) -> None:
    assert task(tmp_path, None, class_weights=[1, 2, 3]).weights().tolist() == [1, 2, 3]
    with pytest.raises(ConfigError, match="2 class weights for 3 classes"):
        task(tmp_path, None, class_weights=[1, 2])


def test_dataset_normalisation_statistics(tiny_crops: Path, tmp_path: Path) -> None:
    raw = tiny_config(tiny_crops, tmp_path, data={"normalize": "dataset"})
    datamodule = data_module(config_from_dict(raw))
    mean, std = datamodule.normalization_stats()
    assert datamodule.train_set is not None
    again = dataset_stats(datamodule.train_set, 3, seed=3)
    assert (mean, std) == again
    assert all(0.3 < m < 0.95 for m in mean) and all(0.02 < s < 0.4 for s in std)
    datamodule.setup("fit")
    assert datamodule.train_dataset is not None
    images = torch.stack([datamodule.val_dataset[i][0] for i in range(len(datamodule.val_dataset))])  # type: ignore[index]
    assert abs(images.mean().item()) < 0.3  # roughly centred by the statistics


def test_s2_augmentations_build_and_run(tiny_crops: Path, tmp_path: Path) -> None:
    augment = {
        "equalize": 1.0,
        "brightness": 0.2,
        "contrast": 0.2,
        "sharpen": 1.0,
        "grayscale": 1.0,
        "hflip": 0.5,
        "rotate": 15,
        "invert": 1.0,
        "until_epoch": 1,
    }
    raw = tiny_config(tiny_crops, tmp_path, augment=augment)
    datamodule = data_module(config_from_dict(raw))
    datamodule.setup("fit")
    dataset = datamodule.train_dataset
    assert dataset is not None
    names = [type(t).__name__ for t in dataset.transform.transforms]
    for expected in ("Equalize", "InvertImg", "ToGray", "Sharpen", "HorizontalFlip", "Rotate"):
        assert expected in names
    augmented, _ = dataset[(0, 0)]
    plain, _ = dataset[(1, 0)]  # from epoch 1 (until_epoch) no augmentation
    gray = augmented.numpy()
    assert np.allclose(gray[0] * 0.229 + 0.485, gray[1] * 0.224 + 0.456, atol=0.02)  # ToGray
    assert not torch.equal(augmented, plain)
    assert torch.equal(dataset[(1, 0)][0], dataset[(1, 0)][0])


def test_weighted_sampler_and_balanced_weights_train(tiny_crops: Path, tmp_path: Path) -> None:
    from mediscope.api import fit

    raw = tiny_config(
        tiny_crops,
        tmp_path,
        data={"sampler": "weighted"},
        loss={"name": "FocalLoss", "params": {"gamma": 2.0}, "class_weights": "balanced"},
        trainer={"max_epochs": 1},
    )
    result = fit(config_from_dict(raw))
    state = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    counts = state["mediscope"]["class_counts"]
    assert len(counts) == 4 and sum(counts) == 51 and min(counts) >= 12
    assert "criterion.alpha" in state["state_dict"]  # the focal loss got the weights


def test_inverse_frequency_class_weights(tmp_path: Path) -> None:
    # frequencies 0.6, 0.3, 0.1 → 1/f = 5/3, 10/3, 10 → mean 5 → normalised
    weights = task(tmp_path, [60, 30, 10], class_weights="inverse").weights()
    assert weights is not None
    assert weights.tolist() == pytest.approx([1 / 3, 2 / 3, 2.0])
    assert task(tmp_path, None, class_weights="inverse_sqrt").weights().tolist() == [1, 1, 1]
