"""Reading images into uint8 arrays, whatever their mode (16-bit, palette, CMYK, ...)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mediscope.errors import DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


def is_image_file(path: Path) -> bool:
    """True for files with a known image suffix (case-insensitive), hidden files excluded."""
    known = path.suffix.lower() in IMAGE_SUFFIXES
    return known and path.is_file() and not path.name.startswith(".")


def read_image(path: str | Path, *, channels: int = 3) -> np.ndarray:
    """Reads an image as ``H x W x channels`` uint8.

    16-bit images are scaled to 8 bits by their own range, palette and CMYK images are
    converted, alpha is dropped. ``channels`` 1 gives grayscale, 3 gives RGB.

    Raises:
        DataError: naming the file when it is missing, truncated or not an image.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            array = _to_uint8(img, channels)
    except FileNotFoundError:
        raise DataError("image not found", where=path, hint="check the dataset path") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(
            f"cannot read the image ({exc.__class__.__name__}: {exc})",
            where=path,
            hint="remove or replace the file",
        ) from None
    return array


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
