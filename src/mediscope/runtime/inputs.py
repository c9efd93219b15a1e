"""What a predictor accepts as an image, turned into ``H x W x C`` uint8.

A path (an image, a DICOM file or an NPZ item reference ``FILE.npz::KEY::INDEX``), a
NumPy array (``H x W`` or ``H x W x C``; uint8, uint16, bool or float), a PIL image, or a
torch tensor (``C x H x W`` or ``H x W``; torch is not imported for this).

Intensities: with an ``intensity`` window ``(min, max)`` (the model's ``data.intensity``),
every value maps to 0..255 by it, as in training (:func:`~mediscope.data.images.to_uint8`).
Without one, uint8 is taken as it is; uint16 and other integers, and floats outside
[0, 1], are scaled by the image's own range, as 16-bit files are when read; floats within
[0, 1] are intensities (times 255); bool is 0 or 255.

Example:
    >>> image, path = to_image(np.full((4, 5), 0.5), channels=3)
    >>> image.shape, image.dtype, int(image[0, 0, 0]), path
    ((4, 5, 3), dtype('uint8'), 128, None)
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mediscope.data.images import (
    DICOM_SUFFIXES,
    IMAGE_SUFFIXES,
    WIDE_MODES,
    array_to_image,
    is_dicom_file,
    is_image_file,
    read_image,
)
from mediscope.errors import DataError


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy")


def image_from_array(
    array: np.ndarray,
    *,
    channels: int,
    where: str = "array",
    intensity: tuple[float, float] | None = None,
) -> np.ndarray:
    """An array (``H x W`` or ``H x W x 1/3/4``) as ``H x W x channels`` uint8."""
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            raise DataError(
                "the image holds NaN or infinite values", where=where, hint="clean the array"
            )
        unit = array.size and float(array.min()) >= 0.0 and float(array.max()) <= 1.0
        if intensity is None and unit:
            array = np.round(array * 255.0).astype(np.uint8)
    elif array.dtype.kind not in "uib":
        raise DataError(
            f"an image must hold numbers, got dtype {array.dtype}",
            where=where,
            hint="give uint8, uint16, bool or float pixels",
        )
    return array_to_image(np.asarray(array), channels=channels, where=where, intensity=intensity)


def _from_pil(
    picture: Image.Image, channels: int, intensity: tuple[float, float] | None
) -> np.ndarray:
    if picture.mode not in WIDE_MODES:
        picture = picture.convert("L" if channels == 1 else "RGB")
    return image_from_array(
        np.asarray(picture), channels=channels, where="PIL image", intensity=intensity
    )


def _from_tensor(tensor: Any, channels: int, intensity: tuple[float, float] | None) -> np.ndarray:
    array = tensor.detach().cpu().numpy()
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)  # C x H x W, as torch holds images
    return image_from_array(array, channels=channels, where="tensor", intensity=intensity)


def to_image(
    value: Any,
    *,
    channels: int,
    dicom_window: tuple[float, float] | None = None,
    intensity: tuple[float, float] | None = None,
) -> tuple[np.ndarray, str | None]:
    """One input as an ``H x W x channels`` uint8 image, and its path when it has one.

    Args:
        value: A path, a NumPy array, a PIL image or a torch tensor.
        channels: 1 (grayscale) or 3 (RGB).
        dicom_window: DICOM files: ``(centre, width)`` instead of the file's window.
        intensity: ``(min, max)`` of stored values shown as 0 and 255 (the model's
            ``data.intensity``); None: images beyond 8 bits by their own range.

    Raises:
        DataError: naming the input when it is unreadable, too large or not an image.
    """
    if isinstance(value, str | Path):
        image = read_image(value, channels=channels, window=dicom_window, intensity=intensity)
        return image, str(value)
    if isinstance(value, Image.Image):
        return _from_pil(value, channels, intensity), None
    if isinstance(value, np.ndarray):
        return image_from_array(value, channels=channels, intensity=intensity), None
    if _is_tensor(value):
        return _from_tensor(value, channels, intensity), None
    raise DataError(
        f"cannot predict a {type(value).__name__}",
        where="input",
        hint="give a path, a NumPy array, a PIL image or a torch tensor",
    )


def is_single(value: Any) -> bool:
    """Whether ``value`` is one image (not a list or tuple of images)."""
    return not isinstance(value, list | tuple)


def folder_images(folder: str | Path, *, recursive: bool = True) -> list[Path]:
    """The image and DICOM files of a folder, sorted.

    Raises:
        DataError: when the folder does not exist or holds no images.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError("not a folder", where=root, hint="give a folder of images")
    found = root.rglob("*") if recursive else root.iterdir()
    files = sorted(p for p in found if p.is_file() and (is_image_file(p) or is_dicom_file(p)))
    if not files:
        raise DataError("no images in the folder", where=root)
    return files


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in consecutive lists of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


#: Columns a CSV manifest may name its image paths by.
PATH_COLUMNS = ("path", "image", "filename", "file")


def collect_inputs(inputs: Sequence[Path], *, root: Path | None = None) -> list[str]:
    """Image references from folders, CSV manifests, NPZ files and single images.

    Args:
        inputs: Folders (searched recursively), CSV files (a ``path``, ``image``,
            ``filename`` or ``file`` column), NPZ files (every image in them) or images.
        root: The folder relative CSV paths start from; default: the CSV's folder.

    Raises:
        DataError: naming an input that is none of these, or when no image is found.
    """
    refs: list[str] = []
    for item in inputs:
        suffix = item.suffix.lower()
        if item.is_dir():
            files = sorted(item.rglob("*"))
            refs.extend(str(p) for p in files if is_image_file(p) or is_dicom_file(p))
        elif suffix == ".csv":
            refs.extend(_csv_paths(item, root))
        elif suffix == ".npz":
            from mediscope.data.formats.npz import npz_image_refs

            refs.extend(npz_image_refs(item))  # prediction needs no labels
        elif item.is_file() and suffix in IMAGE_SUFFIXES | DICOM_SUFFIXES:
            refs.append(str(item))
        else:
            raise DataError(
                "not an image, folder, CSV or NPZ file", where=item, hint="check --input"
            )
    if not refs:
        raise DataError("no images found in the inputs", where=", ".join(map(str, inputs)))
    return refs


def _csv_paths(path: Path, root: Path | None) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read the CSV: {exc}", where=path) from None
    header = [cell.strip() for cell in rows[0]] if rows else []
    column = next((c for c in PATH_COLUMNS if c in header), None)
    if column is None:
        raise DataError(
            f"no image column (found: {', '.join(header)})",
            where=path,
            hint=f"name it one of {', '.join(PATH_COLUMNS)}",
        )
    index = header.index(column)
    base = root or path.parent
    paths = [row[index] for row in rows[1:] if len(row) > index and row[index].strip()]
    return [str(p if Path(p).is_absolute() else base / p) for p in paths]
