"""The ``imagefolder`` format: ``ROOT/<class name>/<image file>``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mediscope.data.images import is_image_file
from mediscope.data.samples import Sample, SampleSet
from mediscope.errors import DataError
from mediscope.registry import unknown_name_hint


def read_imagefolder(
    path: Path, *, classes: list[str] | None = None, task: str, root: Path | None = None
) -> SampleSet:
    """Reads a folder of class folders.

    Args:
        path: The root folder; each sub-folder is a class, holding its images.
        classes: Class names in index order; by default the sorted folder names.
        task: Must be ``classification``.
        root: Unused (image paths are inside ``path``).

    Raises:
        DataError: when the root is missing, holds no class folder or no image, or a
            folder is not one of ``classes``.
    """
    if task != "classification":
        raise DataError(f"the imagefolder format holds no {task} targets", where="data.format")
    return read_class_folders(
        path,
        classes=classes,
        accept=is_image_file,
        empty="no images found",
        hint="supported: png, jpg, bmp, tif, webp",
    )


def read_class_folders(
    path: Path,
    *,
    classes: list[str] | None,
    accept: Callable[[Path], bool],
    empty: str,
    hint: str,
) -> SampleSet:
    """Samples of ``ROOT/<class>/...`` files that ``accept`` takes (any depth below).

    Raises:
        DataError: when the root is missing, holds no class folder or no accepted file
            (``empty`` and ``hint`` say which), or a folder is not one of ``classes``.
    """
    if not path.is_dir():
        raise DataError("dataset folder not found", where=path, hint="check data.path")
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(
            "no class folders", where=path, hint="put the files in ROOT/<class name>/ folders"
        )
    names = classes if classes is not None else [p.name for p in folders]
    index = {name: i for i, name in enumerate(names)}
    samples: list[Sample] = []
    for folder in folders:
        if folder.name not in index:
            raise DataError(
                f"folder '{folder.name}' is not one of data.classes",
                where=folder,
                hint=unknown_name_hint(folder.name, names),
            )
        files = sorted(p for p in folder.rglob("*") if accept(p))
        samples.extend(Sample(image=str(f), label=index[folder.name]) for f in files)
    if not samples:
        raise DataError(empty, where=path, hint=hint)
    return SampleSet(classes=list(names), samples=samples, root=path)
