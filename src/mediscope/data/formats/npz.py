"""The ``npz`` format: image and label arrays in a NumPy ``.npz`` file, read lazily.

Keys, MedMNIST style: ``train_images`` / ``train_labels``, ``val_images`` /
``val_labels``, ``test_images`` / ``test_labels`` (the samples carry that split), or plain
``images`` / ``labels``. Images are ``(N, H, W)`` grayscale or ``(N, H, W, C)``, labels
``(N,)`` or ``(N, 1)`` integers; for ``task: multilabel`` ``(N, L)`` 0/1 values (one
column per label, as ChestMNIST's 14 findings). An optional ``classes`` or
``label_names`` array names the label indices.

A sample's image is a reference ``/abs/dir/train.npz::train_images::123``, read
without loading the file by :func:`mediscope.data.npz_items.read_item`.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mediscope.data.npz_items import archive_keys, member_array, reference
from mediscope.data.samples import Sample, SampleSet
from mediscope.errors import DataError

SPLITS = ("train", "val", "test")
NAME_KEYS = ("classes", "label_names")


def read_npz(
    path: Path,
    *,
    classes: list[str] | None = None,
    task: str,
    root: Path | None = None,
    **options: Any,
) -> SampleSet:
    """Reads an ``.npz`` file of images and labels without loading the images.

    Args:
        path: The ``.npz`` file.
        classes: Class names in index order. By default the file's ``classes`` or
            ``label_names`` array, else the sorted distinct labels as names ("0", "1",
            ...). Integer labels are taken as class names when every label is one of
            ``classes``, else as indices into it.
        task: ``classification`` or ``multilabel``.
        root: Ignored (the images are inside the file).
        **options: Ignored; accepted so that every reader takes the same call.

    Returns:
        The samples, with ``split`` set from the ``train_`` / ``val_`` / ``test_`` keys;
        the root is the file's folder, so sample ids read ``train.npz::train_images::7``.

    Raises:
        DataError: when the file is missing or not an npz, the keys or shapes do not fit,
            or a label is not a known class.
    """
    if task not in ("classification", "multilabel"):
        raise DataError(f"the npz format holds no {task} targets", where="data.format")
    path = Path(os.path.abspath(path))
    if not path.is_file():
        raise DataError("npz file not found", where=path, hint="check data.path")
    keys = _array_keys(path)
    parts = _image_label_keys(path, keys)
    if task == "multilabel":
        return _read_multilabel(path, keys, parts, classes)
    labels = {images: _read_labels(path, images, key) for _, images, key in parts}
    values = np.concatenate(list(labels.values()))
    file_names = _read_class_names(path, keys)
    names, index_of = _resolve_classes(path, values, classes, file_names)
    samples: list[Sample] = []
    for split, images, _ in parts:
        indices = index_of(labels[images])
        samples.extend(
            Sample(image=reference(path, images, i), label=int(c), split=split)
            for i, c in enumerate(indices)
        )
    if not samples:
        raise DataError("the npz file holds no images", where=path)
    return SampleSet(classes=names, samples=samples, root=path.parent)


def _read_multilabel(
    path: Path,
    keys: set[str],
    parts: list[tuple[str | None, str, str]],
    classes: list[str] | None,
) -> SampleSet:
    """Samples of ``(N, L)`` 0/1 label arrays (ChestMNIST): each image's present labels."""
    samples: list[Sample] = []
    width = None
    for split, images, labels_key in parts:
        labels = _load(path, labels_key)
        count = len(member_array(path, images))
        if labels.ndim != 2 or len(labels) != count:
            raise DataError(
                f"'{labels_key}' has shape {labels.shape}; multi-label data needs (N, L) 0/1 "
                f"values for the {count} images",
                where=path,
                hint="single-label data (N,) is task: classification",
            )
        if labels.dtype.kind not in "biuf" or not np.isin(labels, (0, 1)).all():
            raise DataError(f"'{labels_key}' must hold 0 and 1 only", where=path)
        if width is not None and labels.shape[1] != width:
            raise DataError(f"'{labels_key}' has {labels.shape[1]} labels, not {width}", where=path)
        width = labels.shape[1]
        samples.extend(
            Sample(
                image=reference(path, images, i),
                label_set=tuple(int(j) for j in np.flatnonzero(row)),
                split=split,
            )
            for i, row in enumerate(labels)
        )
    assert width is not None
    names = classes or _read_class_names(path, keys) or [f"label_{j}" for j in range(width)]
    if len(names) != width:
        raise DataError(
            f"{len(names)} label names for {width} label columns",
            where=path,
            hint="list one name per column in data.classes",
        )
    if not samples:
        raise DataError("the npz file holds no images", where=path)
    return SampleSet(classes=list(names), samples=samples, root=path.parent)


def npz_image_refs(path: Path) -> list[str]:
    """References to every image of an ``.npz`` file, labels or not (for prediction).

    The image arrays are those :func:`read_npz` reads (``images``, ``train_images``,
    ``val_images``, ``test_images``); label arrays, when present, are not read, so a file
    of images only, or with ``-1`` for unknown labels, is fine.

    Raises:
        DataError: when the file is missing or not an npz, holds no image array, or an
            image array has the wrong shape.
    """
    path = Path(os.path.abspath(path))
    if not path.is_file():
        raise DataError("npz file not found", where=path, hint="check --input")
    keys = _array_keys(path)
    names = [f"{split}_images" for split in SPLITS] + ["images"]
    found = [key for key in names if key in keys]
    if not found:
        raise DataError(
            "no image array",
            where=path,
            hint=f"name it images (or train_images, val_images, test_images); "
            f"found: {', '.join(sorted(keys)) or 'none'}",
        )
    refs: list[str] = []
    for key in found:
        refs.extend(reference(path, key, i) for i in range(len(_image_array(path, key))))
    if not refs:
        raise DataError("the npz file holds no images", where=path)
    return refs


def _image_array(path: Path, key: str) -> Any:
    """The image array ``key`` (memory-mapped, not loaded), its shape checked."""
    images = member_array(path, key)
    ok_shape = images.ndim == 3 or (images.ndim == 4 and images.shape[3] in (1, 3, 4))
    if not ok_shape:
        raise DataError(
            f"'{key}' has shape {images.shape}; expected (N, H, W) or (N, H, W, C)",
            where=path,
        )
    return images


def _array_keys(path: Path) -> set[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return set(archive_keys(archive))
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(
            f"not an npz file ({exc})", where=path, hint="save the arrays with np.savez"
        ) from None


def _image_label_keys(path: Path, keys: set[str]) -> list[tuple[str | None, str, str]]:
    """``(split, images key, labels key)`` of every image array of the file."""
    prefixes: list[tuple[str | None, str]] = [(s, f"{s}_") for s in SPLITS]
    prefixes.append((None, ""))
    parts = []
    for split, prefix in prefixes:
        images, labels = f"{prefix}images", f"{prefix}labels"
        if images not in keys:
            continue
        if labels not in keys:
            raise DataError(
                f"array '{images}' has no '{labels}'",
                where=path,
                hint=f"arrays: {', '.join(sorted(keys))}; training and evaluation need "
                "labels, `mediscope predict` does not",
            )
        parts.append((split, images, labels))
    if not parts:
        raise DataError(
            "no image array",
            where=path,
            hint=f"expected images/labels or train_images/train_labels, val_..., test_...; "
            f"found: {', '.join(sorted(keys)) or 'none'}",
        )
    return parts


def _load(path: Path, key: str) -> np.ndarray:
    """Loads one (small) array fully: labels and class names."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return np.asarray(arrays[key])
    except ValueError as exc:
        raise DataError(
            f"cannot read array '{key}' ({exc})", where=path, hint="save numbers or strings"
        ) from None


def _read_labels(path: Path, images_key: str, labels_key: str) -> np.ndarray:
    """The labels as int64 ``(N,)``, checked against the images' shape."""
    images = _image_array(path, images_key)
    labels = _load(path, labels_key)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(
            f"'{labels_key}' has shape {labels.shape}; expected (N,) or (N, 1) class indices",
            where=path,
            hint="(N, L) 0/1 labels are multi-label data: use task: multilabel",
        )
    if len(labels) != len(images):
        raise DataError(
            f"'{labels_key}' holds {len(labels)} labels for {len(images)} images",
            where=path,
        )
    return _as_integers(labels, labels_key, path)


def _as_integers(labels: np.ndarray, key: str, path: Path) -> np.ndarray:
    numeric = labels.dtype.kind in "biuf"
    if not numeric or (labels.dtype.kind == "f" and not np.all(np.mod(labels, 1) == 0)):
        raise DataError(f"'{key}' must hold integer class indices", where=path)
    values = labels.astype(np.int64)
    if len(values) and values.min() < 0:
        raise DataError(f"'{key}' holds a negative label ({values.min()})", where=path)
    return values


def _read_class_names(path: Path, keys: set[str]) -> list[str] | None:
    for key in NAME_KEYS:
        if key in keys:
            names = _load(path, key)
            if names.ndim != 1 or names.dtype.kind not in "US":
                raise DataError(f"'{key}' must be a 1-D array of class names", where=path)
            return [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]
    return None


def _resolve_classes(
    path: Path, values: np.ndarray, classes: list[str] | None, file_names: list[str] | None
) -> tuple[list[str], Callable[[np.ndarray], np.ndarray]]:
    """Class names, and a function mapping label values to class indices."""
    present = np.unique(values)
    if classes is None and file_names is None:
        names = [str(v) for v in present]
        return names, lambda v: np.searchsorted(present, v)
    names = list(classes if classes is not None else file_names or [])
    if classes is not None and all(str(v) in names for v in present):
        # Every label is a class name (data.classes inferred from a training file).
        lookup = np.array([names.index(str(v)) for v in present])
        return names, lambda v: lookup[np.searchsorted(present, v)]
    if len(present) and present.max() >= len(names):
        source = "data.classes" if classes is not None else "the file's class names"
        raise DataError(
            f"label {present.max()} is out of range for {len(names)} classes of {source}",
            where=path,
            hint=f"classes: {', '.join(names)}",
        )
    return names, lambda v: v
