"""The LightningDataModule: samples → split → datasets → loaders, for every task."""

from __future__ import annotations

import inspect
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from mediscope.config.loader import locate
from mediscope.config.schema import Config
from mediscope.data.datasets import ImageDataset
from mediscope.data.images import read_image, set_max_pixels
from mediscope.data.intensity import percentile_window
from mediscope.data.samplers import EpochSampler
from mediscope.data.samples import SampleSet
from mediscope.data.splits import load_split, make_split, save_split
from mediscope.data.task_data import DatasetOptions, TaskData, labels_per_sample
from mediscope.data.transforms import build_transform, normalization
from mediscope.errors import ConfigError, DataError
from mediscope.registry import FORMATS

log = logging.getLogger(__name__)

SPLIT_FILE = "split.json"
#: Keys of the data section passed to the format readers that take them.
READER_OPTIONS = ("img_suffix", "mask_suffix", "on_bad_label")
#: Images sampled to compute ``normalize: dataset`` statistics.
STATS_SAMPLES = 500


def read_samples(config: Config, path: Path, classes: list[str] | None = None) -> SampleSet:
    """Reads the dataset at ``path`` with the configured format, less ``data.exclude``.

    Raises:
        DataError: when ``path`` does not exist (naming ``data.path`` or
            ``data.test_path``), or the format's reader finds a problem.
    """
    if not path.exists():
        key = "data.test_path" if path == config.data.test_path else "data.path"
        what = "file" if path.suffix else "folder"
        raise DataError(f"dataset {what} not found", where=path, hint=f"check {key}")
    samples = read_format(config, path, classes)
    if config.data.exclude is not None:
        samples = exclude_configured(config, samples, path)
    return samples


def read_format(config: Config, path: Path, classes: list[str] | None = None) -> SampleSet:
    """Reads the dataset at ``path`` with the configured format (every sample)."""
    data = config.data
    entry = FORMATS.entry(data.format)
    tasks = entry.tags.get("tasks", ())
    if config.task not in tasks:
        fitting = [e.name for e in FORMATS.entries() if config.task in e.tags.get("tasks", ())]
        error = ConfigError(
            f"format '{data.format}' does not hold {config.task} data",
            where="data.format",
            hint=f"{config.task} formats: {', '.join(fitting) or 'none yet'}",
        )
        raise locate(error, config)
    # The data section's reader options (img_suffix, mask_suffix, on_bad_label, ...)
    # that this reader takes.
    taken = inspect.signature(entry.obj).parameters
    extra = {key: getattr(data, key) for key in READER_OPTIONS if key in taken}
    samples: SampleSet = entry.obj(path, classes=classes, task=config.task, root=data.root, **extra)
    return samples


def exclude_configured(config: Config, samples: SampleSet, path: Path) -> SampleSet:
    """``samples`` (read from ``path``) without those that ``data.exclude`` names.

    One exclude file serves ``data.path`` and ``data.test_path``: an entry must match a
    sample of either (see :func:`~mediscope.data.formats.masks.match_exclude`).

    Raises:
        DataError: naming ``file:line`` of an entry that matches no sample of either.
    """
    from mediscope.data.formats.masks import match_exclude

    exclude = config.data.exclude
    assert exclude is not None
    dropped, unmatched = match_exclude(samples.samples, exclude, base=samples.root)
    other = _other_path(config, path)
    if unmatched and other is not None:
        try:
            others = read_format(config, other, config.data.classes)
        except DataError:
            others = None  # reported when that data is read itself
        if others is not None:
            still = set(match_exclude(others.samples, exclude, base=others.root)[1])
            unmatched = [item for item in unmatched if item in still]
    if unmatched:
        number, entry = unmatched[0]
        searched = "data.path or data.test_path" if other is not None else "the dataset"
        raise DataError(
            f"'{entry}' matches no sample of {searched}",
            where=f"{exclude}:{number}",
            hint="give an image stem, file name, path relative to the dataset root or an "
            "absolute path",
        )
    if dropped:
        log.warning(
            "%s: %d of %d samples of %s excluded", exclude, len(dropped), len(samples), path
        )
    return replace(samples, samples=[s for i, s in enumerate(samples.samples) if i not in dropped])


def _other_path(config: Config, path: Path) -> Path | None:
    """data.test_path when reading data.path, and the other way round."""
    data = config.data
    if data.test_path is None:
        return None
    if path == data.path:
        return data.test_path
    return data.path if path == data.test_path else None


def warn_missing_classes(samples: SampleSet, what: str, where: Path) -> list[str]:
    """Logs one warning when ``samples`` hold no sample (no box) of some classes.

    A class without training samples is an error (the model cannot learn it); one
    missing from validation or test data is not, but its per-class metrics are then
    undefined, which the user should know. Segmentation is not checked here: it would
    read every mask. Returns the missing classes.
    """
    if not len(samples) or all(s.label is None and s.box_labels is None for s in samples.samples):
        return []
    counts = labels_per_sample(samples)
    missing = [c for c, n in zip(samples.classes, counts, strict=True) if n == 0]
    if missing:
        log.warning(
            "%s: %s has no samples of %d of %d classes (%s): their per-class metrics are undefined",
            where,
            what,
            len(missing),
            len(samples.classes),
            ", ".join(missing),
        )
    return missing


def dataset_stats(
    samples: SampleSet,
    channels: int,
    seed: int,
    intensity: tuple[float, float] | None = None,
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (0..1) over up to STATS_SAMPLES training images, read
    with the ``intensity`` window (``data.intensity``)."""
    rng = np.random.default_rng(seed)
    count = min(len(samples), STATS_SAMPLES)
    picks = rng.choice(len(samples), size=count, replace=False)
    total = np.zeros(channels)
    squares = np.zeros(channels)
    pixels = 0
    for i in picks:
        image = read_image(samples.samples[int(i)].image, channels=channels, intensity=intensity)
        image = image.astype(np.float64)
        flat = image.reshape(-1, channels) / 255.0
        total += flat.sum(axis=0)
        squares += (flat**2).sum(axis=0)
        pixels += flat.shape[0]
    mean = total / pixels
    std = np.sqrt(np.maximum(squares / pixels - mean**2, 1e-12))
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]


class MediscopeDataModule(L.LightningDataModule):
    """Reads, splits and loads the data of a config.

    Build it with :func:`mediscope.tasks.data_module`, which gives it the task's data
    side and what ``data.normalize: auto`` means for the configured model.

    Args:
        config: The validated config.
        task: The data side of the config's task (datasets, collate, class counts).
        split_file: Where the split is written, or read when ``reuse_split`` is set.
        reuse_split: Read ``split_file`` instead of making a new split (resume).
        stats: Normalisation statistics to use (from a checkpoint) instead of computing.
        auto_normalize: The statistics ``data.normalize: auto`` stands for (the model's
            own: ``imagenet``, ``inception``, ...).
    """

    def __init__(
        self,
        config: Config,
        task: TaskData,
        *,
        split_file: Path | None = None,
        reuse_split: bool = False,
        stats: tuple[list[float], list[float]] | None = None,
        auto_normalize: str = "imagenet",
    ) -> None:
        super().__init__()
        self.config = config
        self.task_data = task
        self.auto_normalize = auto_normalize
        self.split_file = split_file
        self.reuse_split = reuse_split
        self._stats = stats
        set_max_pixels(config.data.max_pixels)
        self._everything: SampleSet | None = None
        self._parts: dict[str, np.ndarray] = {}
        self.train_set: SampleSet | None = None
        self.val_set: SampleSet | None = None
        self._test_set: SampleSet | None = None
        self.train_dataset: ImageDataset | None = None
        self.val_dataset: ImageDataset | None = None
        self._train_sampler: EpochSampler | None = None

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
        hint = self.task_data.one_class_hint
        if hint is not None and len(everything.classes) < 2:
            raise DataError(
                f"the data holds one class only ({', '.join(everything.classes) or 'none'})",
                where=data.path,
                hint=hint,
            )
        if self.reuse_split and self.split_file is not None and self.split_file.is_file():
            parts = load_split(self.split_file, everything, ("train", "val"))
        else:
            split = data.split
            parts = make_split(
                everything,
                method=split.method,
                val_fraction=split.val_fraction,
                seed=self.config.seed,
                stratify=split.stratify,
                folds=split.folds,
                fold=split.fold,
            )
        self._everything, self._parts = everything, parts
        self.train_set = everything.subset(parts["train"])
        self.val_set = everything.subset(parts["val"])
        counts = labels_per_sample(self.train_set)
        if self.task_data.one_label_per_image and (counts == 0).any():
            missing = [c for c, n in zip(everything.classes, counts, strict=True) if n == 0]
            raise DataError(
                f"the training split has no samples of {', '.join(missing)}",
                where=data.path,
                hint="add samples of every class, or list only present ones in data.classes",
            )
        warn_missing_classes(self.val_set, "the validation split", data.path)

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

    def train_class_counts(self) -> list[int] | None:
        """Training samples per class (pixels for segmentation, objects for detection),
        as the task's class-weighted losses need them (None when they do not)."""
        self.prepare_samples()
        assert self.train_set is not None
        return self.task_data.train_counts(self.config, self.train_set)

    def has_test_data(self) -> bool:
        """Whether there is test data: ``data.test_path``, or rows the data marks as test
        (a split column), which :meth:`test_set` reads."""
        if self.config.data.test_path is not None:
            return True
        self.prepare_samples()
        rows = self._parts.get("test")
        return rows is not None and len(rows) > 0

    def test_set(self, classes: list[str] | None = None) -> SampleSet:
        """``data.test_path`` read with the training classes, else the data's test rows."""
        if self._test_set is None:
            names = classes if classes is not None else self.classes
            if self.config.data.test_path is not None:
                self._test_set = read_samples(self.config, self.config.data.test_path, names)
            else:
                self.prepare_samples()
                assert self._everything is not None
                rows = self._parts.get("test")
                if rows is None or not len(rows):
                    raise DataError(
                        "no test data", where="data.test_path", hint="set it to the test set's path"
                    )
                self._test_set = self._everything.subset(rows)
            where = self.config.data.test_path or self.config.data.path
            warn_missing_classes(self._test_set, "the test data", where)
        return self._test_set

    def intensity_window(self) -> tuple[float, float] | None:
        """``(min, max)`` of ``data.intensity`` (None for ``per_image``).

        ``percentile`` without ``min`` and ``max`` computes them on the training split
        (:func:`~mediscope.data.intensity.percentile_window`) and writes them into the
        config, which the run folder's config.yaml then records: computed once per run.
        """
        intensity = self.config.data.intensity
        if intensity.mode == "percentile" and intensity.window() is None:
            self.prepare_samples()
            assert self.train_set is not None
            lo, hi = percentile_window(
                self.train_set.samples,
                channels=self.config.data.channels,
                low=intensity.low,
                high=intensity.high,
                seed=self.config.seed,
            )
            # Both at once: the section's validator needs min and max together.
            self.config.data.intensity = intensity.model_copy(update={"min": lo, "max": hi})
            log.info("data.intensity: percentile window %g .. %g", lo, hi)
        return self.config.data.intensity.window()

    def normalization_stats(self) -> tuple[list[float], list[float]]:
        """Mean and std the images are normalised with (0..1 scale).

        Resolves ``data.intensity`` first (:meth:`intensity_window`): training asks for the
        statistics before it writes the run's config.yaml, which so records the window.
        """
        self.intensity_window()
        if self._stats is None:
            cfg = self.config
            kind: Any = cfg.data.normalize
            if kind == "dataset":
                self.prepare_samples()
                assert self.train_set is not None
                window = self.intensity_window()
                self._stats = dataset_stats(self.train_set, cfg.data.channels, cfg.seed, window)
            else:
                if kind == "auto":
                    kind = self.auto_normalize
                if not isinstance(kind, str):
                    kind = (list(kind.mean), list(kind.std))
                mean, std = normalization(kind, cfg.data.channels)
                self._stats = (list(mean), list(std))
        return self._stats

    def setup(self, stage: str | None = None) -> None:
        self.prepare_samples()
        assert self.train_set is not None and self.val_set is not None
        if self.train_dataset is None:
            self.train_dataset = self.dataset(self.train_set, train=True)
            self.val_dataset = self.dataset(self.val_set, train=False)

    def transforms(self) -> tuple[Any, Any]:
        """The augmenting and the plain (resize and normalise) pipelines of the config.

        The plain one is what evaluation and prediction apply to every image.
        """
        cfg = self.config
        mean, std = self.normalization_stats()
        size, boxes = cfg.data.image_size, self.task_data.boxes
        plain = build_transform(image_size=size, mean=tuple(mean), std=tuple(std), boxes=boxes)
        augmenting = build_transform(
            image_size=size,
            mean=tuple(mean),
            std=tuple(std),
            augment=cfg.augment,
            channels=cfg.data.channels,
            boxes=boxes,
        )
        return augmenting, plain

    def dataset(self, samples: SampleSet, *, train: bool) -> ImageDataset:
        """A dataset of ``samples``, augmented when ``train``."""
        cfg = self.config
        augmenting, plain = self.transforms()
        options = DatasetOptions(
            transform=augmenting if train else plain,
            plain_transform=plain,
            channels=cfg.data.channels,
            seed=cfg.seed,
            augment_until=cfg.augment.until_epoch,
            window=cfg.data.dicom_window,
            intensity=self.intensity_window(),
        )
        return self.task_data.dataset(cfg, samples, train=train, options=options)

    def set_epoch(self, epoch: int) -> None:
        """Tells the training dataset and sampler which epoch runs (augmentation seeds,
        schedule, the epoch's order)."""
        if self.train_dataset is not None:
            self.train_dataset.epoch = epoch
        if self._train_sampler is not None:
            self._train_sampler.set_epoch(epoch)

    def loader(
        self, dataset: ImageDataset, *, train: bool, rank: int = 0, world: int = 1, epoch: int = 0
    ) -> DataLoader[Any]:
        """A DataLoader with the configured batch size, workers and sampler.

        ``rank`` and ``world``: this process's share under DDP (see
        :class:`~mediscope.data.samplers.EpochSampler`); training shares are equal in size,
        evaluation shares hold every sample once.
        """
        batch = self.config.data.batch_size
        weights = None
        if train and self.config.data.sampler == "weighted":
            labels = np.array([s.label if s.label is not None else 0 for s in dataset.samples])
            counts = np.bincount(labels, minlength=len(self.classes)).astype(float)
            weights = 1.0 / counts[labels]
        sampler = EpochSampler(
            len(dataset),
            seed=self.config.seed,
            shuffle=train,
            weights=weights,
            rank=rank,
            world=world,
            drop_uneven=train,
            epoch=epoch,
        )
        if train:
            self._train_sampler = sampler
        return DataLoader(
            dataset,
            batch_size=batch,
            sampler=sampler,
            drop_last=train and len(sampler) > batch,  # a batch of 1 breaks BatchNorm
            collate_fn=self.task_data.collate,
            **loader_options(self.config),
        )

    def _share(self) -> tuple[int, int, int]:
        """``(rank, world, epoch)`` of the Trainer this module serves (0, 1, 0 without one)."""
        trainer = self.trainer
        if trainer is None:
            return 0, 1, 0
        return trainer.global_rank, trainer.world_size, trainer.current_epoch

    def train_dataloader(self) -> DataLoader[Any]:
        assert self.train_dataset is not None
        rank, world, epoch = self._share()
        return self.loader(self.train_dataset, train=True, rank=rank, world=world, epoch=epoch)

    def val_dataloader(self) -> DataLoader[Any]:
        assert self.val_dataset is not None
        rank, world, _ = self._share()
        return self.loader(self.val_dataset, train=False, rank=rank, world=world)

    def test_dataloader(self) -> DataLoader[Any]:
        rank, world, _ = self._share()
        dataset = self.dataset(self.test_set(), train=False)
        return self.loader(dataset, train=False, rank=rank, world=world)

    def split_sizes(self) -> dict[str, int]:
        """Samples per split (train, val)."""
        self.prepare_samples()
        assert self.train_set is not None and self.val_set is not None
        return {"train": len(self.train_set), "val": len(self.val_set)}


def loader_options(config: Config) -> dict[str, Any]:
    """The DataLoader's worker and memory options from ``data`` (see
    ``benchmarks/dataloader.py`` for how the defaults were chosen).

    ``persistent_workers`` and ``prefetch_factor`` apply only with worker processes;
    ``pin_memory: auto`` pins when the trainer will use a CUDA GPU.
    """
    data = config.data
    options: dict[str, Any] = {"num_workers": data.num_workers}
    if data.num_workers > 0:
        options["persistent_workers"] = data.persistent_workers
        options["prefetch_factor"] = data.prefetch_factor
    pin = data.pin_memory
    if pin == "auto":
        pin = config.trainer.accelerator in ("auto", "gpu", "cuda") and _cuda_available()
    options["pin_memory"] = bool(pin)
    return options


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())
