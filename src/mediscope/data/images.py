"""Reading images into uint8 arrays, whatever their mode (16-bit, palette, CMYK, ...).

:func:`read_image` reads three kinds of sources: image files (PNG, JPEG, TIFF, ...),
DICOM files (``.dcm``, through the optional pydicom) and references to one image of an
array in an ``.npz`` file (``/data/train.npz::train_images::123``), read from a memory map.
:func:`write_image` writes a generated RGB image or mask as PNG or JPEG, atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mediscope.data.dicom_pixels import read_dicom_pixels
from mediscope.data.npz_items import is_reference, read_item
from mediscope.errors import DataError
from mediscope.files import write_with

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})


def is_image_file(path: Path) -> bool:
    """True for files with a known image suffix (case-insensitive), hidden files excluded."""
    known = path.suffix.lower() in IMAGE_SUFFIXES
    return known and path.is_file() and not path.name.startswith(".")


def is_dicom_file(path: Path) -> bool:
    """True for ``.dcm`` / ``.dicom`` files (case-insensitive), hidden files excluded."""
    known = path.suffix.lower() in DICOM_SUFFIXES
    return known and path.is_file() and not path.name.startswith(".")


def read_image(
    path: str | Path, *, channels: int = 3, window: tuple[float, float] | None = None
) -> np.ndarray:
    """Reads an image as ``H x W x channels`` uint8.

    16-bit images are scaled to 8 bits by their own range, palette and CMYK images are
    converted, alpha is dropped. ``channels`` 1 gives grayscale, 3 gives RGB.

    Args:
        path: An image file, a DICOM file, or an npz reference ``FILE.npz::KEY::INDEX``.
        channels: 1 (grayscale) or 3 (RGB).
        window: DICOM only: ``(centre, width)`` of the intensity window, replacing the
            file's own window. Ignored for other images.

    Raises:
        DataError: naming the file when it is missing, truncated or not an image.
    """
    if isinstance(path, str) and is_reference(path):
        return array_to_image(read_item(path), channels=channels, where=path)
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        pixels = read_dicom_pixels(path, window=window)
        return array_to_image(pixels, channels=channels, where=path)
    try:
        with Image.open(path) as img:
            img.load()
            array = _to_uint8(img, channels)
    except FileNotFoundError:
        raise DataError("image not found", where=path, hint="check the dataset path") from None
    except Image.DecompressionBombError as exc:
        raise pixel_limit_error(exc, path) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(
            f"cannot read the image ({exc.__class__.__name__}: {exc})",
            where=path,
            hint="remove or replace the file",
        ) from None
    return array


def pixel_limit_error(exc: Image.DecompressionBombError, path: str | Path) -> DataError:
    """The error for an image beyond PIL's pixel limit (``PIL.Image.MAX_IMAGE_PIXELS``,
    a guard against decompression bombs)."""
    return DataError(
        f"image too large for PIL's safety limit ({' '.join(str(exc).split())})",
        where=path,
        hint="cut it into tiles (mediscope data tile) or leave it out (data.exclude); "
        "a script may raise PIL.Image.MAX_IMAGE_PIXELS",
    )


def array_to_image(array: np.ndarray, *, channels: int, where: str | Path) -> np.ndarray:
    """Turns an ``H x W`` or ``H x W x C`` array into a writable ``H x W x channels`` uint8.

    uint8 is kept as is; bool becomes 0 / 255; other dtypes are scaled by the image's own
    range, as 16-bit files are. One channel is repeated for RGB, RGB is converted to
    luma for grayscale (as PIL does), a fourth (alpha) channel is dropped.

    Raises:
        DataError: for arrays that are not 2-D, or 3-D with 1, 3 or 4 channels.
    """
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise DataError(
            f"an image must be H x W or H x W x 1/3/4, got shape {tuple(array.shape)}",
            where=where,
        )
    data = _array_to_uint8(array[:, :, :3] if array.shape[2] == 4 else array)
    if channels == 1 and data.shape[2] == 3:
        gray = Image.fromarray(np.ascontiguousarray(data), mode="RGB").convert("L")
        return np.asarray(gray, dtype=np.uint8)[:, :, None].copy()
    if channels == 3 and data.shape[2] == 1:
        return np.repeat(data, 3, axis=2)
    # Copied unless already a fresh array: callers may write in place, maps are read-only.
    fresh = data.base is None and data.flags.writeable and data.flags.c_contiguous
    return data if fresh else np.array(data, order="C", copy=True)


def _array_to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    data = np.asarray(array, dtype=np.float64)
    lo, hi = float(data.min()), float(data.max())
    scaled = (data - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(data)
    result: np.ndarray = scaled.round().astype(np.uint8)
    return result


def _to_uint8(img: Image.Image, channels: int) -> np.ndarray:
    if img.mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
        data = np.asarray(img, dtype=np.float64)
        lo, hi = float(data.min()), float(data.max())
        scaled = (data - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(data)
        gray = scaled.round().astype(np.uint8)
        img = Image.fromarray(gray, mode="L")
    target = "L" if channels == 1 else "RGB"
    if img.mode != target:
        img = img.convert(target)
    array = np.asarray(img, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def write_image(path: Path, pixels: np.ndarray, params: Sequence[int] = ()) -> Path:
    """Encodes ``pixels`` in the format of ``path``'s suffix and writes the file atomically.

    OpenCV encodes (``imencode`` and a byte write also work with non-ASCII paths).

    Args:
        path: The file to write, e.g. ``a.png`` or ``a.jpg``.
        pixels: ``H x W x 3`` RGB or ``H x W`` single-channel uint8 values.
        params: OpenCV encoder parameters, e.g. ``[cv2.IMWRITE_PNG_COMPRESSION, 1]``;
            empty for OpenCV's defaults.

    Returns:
        ``path``.

    Raises:
        DataError: the pixels cannot be encoded in that format.
    """
    import cv2

    data = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR) if pixels.ndim == 3 else pixels
    ok, buffer = cv2.imencode(path.suffix, data, list(params))
    if not ok:
        raise DataError(
            f"could not encode {path.name} as {path.suffix.lstrip('.').upper()}", where=path
        )
    encoded = buffer.tobytes()
    return write_with(path, lambda tmp: tmp.write_bytes(encoded))
