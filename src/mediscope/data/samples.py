"""Typed samples: one image with what travels with it (label, mask, boxes, patient)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One image and its targets.

    Attributes:
        image: Path of the image file.
        label: Class index (classification).
        label_set: Indices of the labels an image carries (multi-label classification;
            empty: none of them).
        mask: Path of the mask file (segmentation).
        boxes: ``(N, 4)`` float boxes, xyxy in pixels (detection).
        box_labels: ``(N,)`` class indices of the boxes (detection).
        group: Patient or other group id; groups never straddle splits.
        split: An explicit split name from the source (train / val / test).
    """

    image: str
    label: int | None = None
    mask: str | None = None
    boxes: np.ndarray | None = field(default=None, compare=False)
    box_labels: np.ndarray | None = field(default=None, compare=False)
    group: str | None = None
    split: str | None = None
    label_set: tuple[int, ...] | None = None


@dataclass
class SampleSet:
    """Samples of one dataset with their class names and the root they are relative to."""

    classes: list[str]
    samples: list[Sample]
    root: Path

    def __len__(self) -> int:
        return len(self.samples)

    def labels(self) -> np.ndarray:
        """Class index per sample (classification)."""
        return np.array([-1 if s.label is None else s.label for s in self.samples])

    def ids(self) -> list[str]:
        """A stable id per sample: its image path relative to the root."""
        return [sample_id(s, self.root) for s in self.samples]

    def subset(self, indices: Sequence[int] | np.ndarray) -> SampleSet:
        """The samples at ``indices``, same classes and root."""
        return replace(self, samples=[self.samples[int(i)] for i in indices])

    def class_counts(self) -> dict[str, int]:
        """Samples per class name (classification)."""
        counts = np.bincount(self.labels()[self.labels() >= 0], minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts, strict=True)}


def sample_id(sample: Sample, root: Path) -> str:
    """The image path relative to ``root`` when inside it, else the path itself."""
    path = Path(sample.image)
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
