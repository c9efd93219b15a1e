"""What a format scan yields: the samples with their label files, and the findings.

A scan reads a dataset as its format's reader does, but tolerantly: where the reader
stops at the first orphan, bad line or missing file, a scan records a
:class:`~mediscope.data.doctor.findings.Finding` and goes on, so that one run of
``mediscope check`` lists every problem.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mediscope.data.doctor.findings import Finding
from mediscope.data.formats.masks import SPLIT_NAMES
from mediscope.data.images import IMAGE_SUFFIXES
from mediscope.data.samples import Sample


@dataclass
class Item:
    """One sample as the doctor sees it.

    Attributes:
        sample: The image with its label, mask or boxes, group and split as read.
        label_file: The file holding its label (YOLO text, VOC XML, COCO JSON, manifest).
        split: The split it is compared in: ``train``, ``val``, ``test``, or
            ``trainval`` for samples that the config splits at random.
        source: ``data.path`` or ``data.test_path``.
    """

    sample: Sample
    label_file: str | None = None
    split: str = "trainval"
    source: str = "data.path"

    @property
    def image(self) -> str:
        """The image path (or npz reference)."""
        return self.sample.image

    def boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """``(N, 4)`` xyxy pixel boxes and ``(N,)`` labels (empty without boxes)."""
        boxes = self.sample.boxes if self.sample.boxes is not None else np.zeros((0, 4))
        labels = self.sample.box_labels if self.sample.box_labels is not None else np.zeros(0)
        return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(labels, np.int64)


@dataclass
class Scan:
    """The samples and findings of one dataset path.

    Attributes:
        classes: Class names in index order.
        items: One per sample that the reader would read.
        root: The folder sample ids are relative to (as the reader's SampleSet root).
        findings: Problems found while reading (orphans, bad lines, missing files).
        listed_dirs: Folders holding images that a manifest or COCO file lists; their
            images that nothing lists are reported once every path is scanned.
        listed: The images that a manifest or COCO file lists (absolute paths).
    """

    classes: list[str]
    items: list[Item] = field(default_factory=list)
    root: Path = Path(".")
    findings: list[Finding] = field(default_factory=list)
    listed_dirs: set[Path] = field(default_factory=set)
    listed: set[str] = field(default_factory=set)


def split_name(name: str | None) -> str | None:
    """``train`` / ``val`` / ``test`` for a split folder or column value, else None."""
    return SPLIT_NAMES.get(name.lower()) if name else None


def is_image_name(name: str) -> bool:
    """True for a visible file name with an image suffix."""
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES


def walk_files(folder: Path) -> Iterator[Path]:
    """The visible files below ``folder``, sorted, hidden folders skipped."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def absolute(path: str | Path) -> str:
    """The absolute, normalised form of a path (the key of listed images)."""
    return os.path.normpath(os.path.abspath(path))
