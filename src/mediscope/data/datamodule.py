"""The LightningDataModule: samples → split → datasets → loaders, for every task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from mediscope.config.schema import Config
from mediscope.data.datasets import ClassificationDataset, ImageDataset
from mediscope.data.samplers import EpochSampler
from mediscope.data.samples import SampleSet
from mediscope.data.splits import holdout_split, load_split, save_split
from mediscope.data.transforms import build_transform, normalization
from mediscope.errors import DataError
from mediscope.registry import FORMATS

SPLIT_FILE = "split.json"


def read_samples(config: Config, path: Path, classes: list[str] | None = None) -> SampleSet:
    """Reads the dataset at ``path`` with the configured format."""
    reader = FORMATS.get(config.data.format)
    samples: SampleSet = reader(path, classes=classes, task=config.task)
    return samples


class MediscopeDataModule(L.LightningDataModule):
    """Reads, splits and loads the data of a config.

    Args:
        config: The validated config.
        split_file: Where the split is written, or read when ``reuse_split`` is set.
        reuse_split: Read ``split_file`` instead of making a new split (resume).
    """

    def __init__(
        self, config: Config, *, split_file: Path | None = None, reuse_split: bool = False
    ) -> None:
        super().__init__()
        self.config = config
        self.split_file = split_file
        self.reuse_split = reuse_split
        self._everything: SampleSet | None = None
        self._parts: dict[str, np.ndarray] = {}
        self.train_set: SampleSet | None = None
        self.val_set: SampleSet | None = None
        self._test_set: SampleSet | None = None
        self.train_dataset: ImageDataset | None = None
        self.val_dataset: ImageDataset | None = None

    @property
    def classes(self) -> list[str]:
        """Class names in index order (after :meth:`prepare_samples`)."""
        self.prepare_samples()
        assert self.train_set is not None
        return self.train_set.classes

    def prepare_samples(self) -> None:
        """Reads the training data and splits it; idempotent."""
        if self.train_set is not None:
            return
        data = self.config.data
        everything = read_samples(self.config, data.path, data.classes)
        if self.reuse_split and self.split_file is not None and self.split_file.is_file():
            parts = load_split(self.split_file, everything, ("train", "val"))
        else:
            train, val = holdout_split(
                everything.labels(),
                val_fraction=data.split.val_fraction,
                seed=self.config.seed,
                stratify=data.split.stratify,
            )
            parts = {"train": train, "val": val}
        self._everything, self._parts = everything, parts
        self.train_set = everything.subset(parts["train"])
        self.val_set = everything.subset(parts["val"])

    def write_split(self, path: Path) -> None:
        """Writes the split to ``path`` (``split.json``) with how it was made."""
        self.prepare_samples()
        assert self._everything is not None
        save_split(
            path,
            self._everything,
            self._parts,
            method=self.config.data.split.method,
            seed=self.config.seed,
            root=str(self.config.data.path),
        )

    def test_set(self, classes: list[str] | None = None) -> SampleSet:
        """The samples at ``data.test_path``, with the given (or the training) classes."""
        if self._test_set is None:
            if self.config.data.test_path is None:
                raise DataError(
                    "no test data", where="data.test_path", hint="set it to the test set's path"
                )
            names = classes if classes is not None else self.classes
            self._test_set = read_samples(self.config, self.config.data.test_path, names)
        return self._test_set

    def setup(self, stage: str | None = None) -> None:
        self.prepare_samples()
        assert self.train_set is not None and self.val_set is not None
        if self.train_dataset is None:
            self.train_dataset = self.dataset(self.train_set, train=True)
            self.val_dataset = self.dataset(self.val_set, train=False)

    def dataset(self, samples: SampleSet, *, train: bool) -> ImageDataset:
        """A dataset of ``samples``, augmented when ``train``."""
        cfg = self.config
        normalize: Any = cfg.data.normalize
        if not isinstance(normalize, str):
            normalize = (normalize.mean, normalize.std)
        mean, std = normalization(normalize, cfg.data.channels)
        size = cfg.data.image_size
        plain = build_transform(image_size=size, mean=mean, std=std)
        transform = build_transform(image_size=size, mean=mean, std=std, augment=cfg.augment)
        return ClassificationDataset(
            samples.samples,
            transform=transform if train else plain,
            plain_transform=plain,
            channels=cfg.data.channels,
            seed=cfg.seed,
            augment_until=cfg.augment.until_epoch,
        )

    def set_epoch(self, epoch: int) -> None:
        """Tells the training dataset which epoch runs (augmentation seeds, schedule)."""
        if self.train_dataset is not None:
            self.train_dataset.epoch = epoch

    def loader(self, dataset: ImageDataset, *, train: bool) -> DataLoader[Any]:
        """A DataLoader with the configured batch size and workers."""
        batch = self.config.data.batch_size
        return DataLoader(
            dataset,
            batch_size=batch,
            sampler=EpochSampler(len(dataset), seed=self.config.seed, shuffle=train),
            drop_last=train and len(dataset) > batch,  # a batch of 1 breaks BatchNorm
            num_workers=self.config.data.num_workers,
        )

    def train_dataloader(self) -> DataLoader[Any]:
        assert self.train_dataset is not None
        return self.loader(self.train_dataset, train=True)

    def val_dataloader(self) -> DataLoader[Any]:
        assert self.val_dataset is not None
        return self.loader(self.val_dataset, train=False)

    def test_dataloader(self) -> DataLoader[Any]:
        return self.loader(self.dataset(self.test_set(), train=False), train=False)

    def split_sizes(self) -> dict[str, int]:
        """Samples per split (train, val)."""
        self.prepare_samples()
        assert self.train_set is not None and self.val_set is not None
        return {"train": len(self.train_set), "val": len(self.val_set)}


def class_counts(samples: SampleSet) -> np.ndarray:
    """Samples per class index."""
    labels = samples.labels()
    return np.bincount(labels[labels >= 0], minlength=len(samples.classes))
