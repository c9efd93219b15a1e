"""Where the samples of a written dataset go: grouped by split, in train / val / test
order, each image under its path within the folder holding its split's images.

Every detection writer (YOLO, VOC, COCO) and the tile writer lay out their output by
these rules, so the same samples land in the same places whatever the format.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from mediscope.data.formats.boxes import relative_names, split_order
from mediscope.data.samples import Sample, SampleSet
from mediscope.errors import DataError

IMAGES = "images"

SplitPlan = list[tuple[str | None, list[tuple[Sample, PurePosixPath]]]]


def group_by_split(samples: Iterable[Sample]) -> dict[str | None, list[Sample]]:
    """The samples of each split (None: no split), splits in order of first appearance."""
    groups: dict[str | None, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.split, []).append(sample)
    return groups


def plan_by_split(samples: SampleSet) -> SplitPlan:
    """Each split (train, val, test, others, then None) with its samples and their names.

    A sample's name is its image's path relative to the deepest folder holding all
    images of its split; writers put it below the split's folder.

    Raises:
        DataError: for samples with and without a split mixed.
    """
    groups = group_by_split(samples.samples)
    if None in groups and len(groups) > 1:
        raise DataError(
            f"{len(groups[None])} samples have no split, the others have one",
            where=samples.root,
            hint="give every sample a split, or none",
        )
    return [
        (split, list(zip(groups[split], relative_names(groups[split]), strict=True)))
        for split in sorted(groups, key=split_order)
    ]


def image_folder(split: str | None) -> Path:
    """``images/<split>``, or ``images`` for samples without a split."""
    return Path(IMAGES) / split if split is not None else Path(IMAGES)


def image_plan(samples: SampleSet) -> list[tuple[Sample, Path]]:
    """Each sample with its image path in the output: ``images/<split>/<name>``.

    Raises:
        DataError: for samples with and without a split mixed.
    """
    return [
        (sample, image_folder(split) / name)
        for split, named in plan_by_split(samples)
        for sample, name in named
    ]
