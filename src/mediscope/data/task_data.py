"""What the data module needs to know of a task, as one small typed object.

The data layer does not know the tasks: each task's object (``mediscope.tasks``) gives
the data module a :class:`TaskData` that says how to read its samples, build its
dataset and collate its batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mediscope.data.samples import SampleSet

if TYPE_CHECKING:
    import albumentations as A

    from mediscope.config.schema import Config
    from mediscope.data.datasets import ImageDataset


@dataclass(frozen=True)
class DatasetOptions:
    """What every dataset of a config is built with, besides its samples."""

    transform: A.Compose
    plain_transform: A.Compose
    channels: int
    seed: int
    augment_until: int | None
    window: tuple[float, float] | None
    intensity: tuple[float, float] | None = None

    def kwargs(self) -> dict[str, Any]:
        """The options as keywords of :class:`~mediscope.data.datasets.ImageDataset`."""
        return {
            "transform": self.transform,
            "plain_transform": self.plain_transform,
            "channels": self.channels,
            "seed": self.seed,
            "augment_until": self.augment_until,
            "window": self.window,
            "intensity": self.intensity,
        }


class DatasetFactory(Protocol):
    """Builds a task's dataset of ``samples``; ``train`` tells whether it augments."""

    def __call__(
        self, config: Config, samples: SampleSet, *, train: bool, options: DatasetOptions
    ) -> ImageDataset: ...


def labels_per_sample(samples: SampleSet) -> np.ndarray:
    """Samples per class index (objects per class for samples with boxes, images per
    label for multi-label samples)."""
    if any(s.box_labels is not None for s in samples.samples):
        found = [s.box_labels for s in samples.samples if s.box_labels is not None]
        boxes = np.concatenate(found).astype(np.int64) if found else np.zeros(0, np.int64)
        return np.bincount(boxes, minlength=len(samples.classes))
    if any(s.label_set is not None for s in samples.samples):  # multi-label: images per label
        sets = [i for s in samples.samples for i in (s.label_set or ())]
        return np.bincount(np.asarray(sets, np.int64), minlength=len(samples.classes))
    labels = samples.labels()
    return np.bincount(labels[labels >= 0], minlength=len(samples.classes))


def count_labels(config: Config, samples: SampleSet) -> list[int] | None:
    """Training samples (or objects) per class, for class-weighted losses."""
    return [int(n) for n in labels_per_sample(samples)]


@dataclass(frozen=True)
class TaskData:
    """The data side of a task.

    Args:
        dataset: Builds the dataset of a split (see :class:`DatasetFactory`).
        collate: Batches a list of items; None: PyTorch's default.
        boxes: Samples carry boxes that the transforms move with the image.
        one_label_per_image: Each sample has one class label: the training split must
            hold every class, and ``data.sampler: weighted`` can draw classes.
        train_counts: Per-class counts of the training samples given to the task
            (class-weighted losses); None when the task does not need them.
        one_class_hint: What to do when the data holds a single class, for the tasks
            that need two or more (a classifier, masks: background and an object);
            None when one class is enough (detection: objects against the background).
    """

    dataset: DatasetFactory
    collate: Callable[[list[Any]], Any] | None = None
    boxes: bool = False
    one_label_per_image: bool = False
    train_counts: Callable[[Config, SampleSet], list[int] | None] = field(default=count_labels)
    one_class_hint: str | None = None
