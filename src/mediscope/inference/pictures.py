"""Pictures of predictions: class colours, palette mask PNGs, overlays with contours,
probability maps, and boxes drawn on images with their class and score.

The drawing itself (colours, overlays, boxes) lives in :mod:`mediscope.runtime.drawing`,
free of torch and matplotlib, and is re-exported here; this module writes the files.

Prediction writes them beside its files and the reports show them; every file is
written atomically: a crash or a bad input never leaves half a PNG behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mediscope.errors import DataError
from mediscope.files import write_with
from mediscope.runtime.drawing import (
    DENSE,
    OKABE_ITO,
    TAB20,
    UNLABELLED,
    class_colors,
    contour_thickness,
    draw_detections,
    font_size,
    line_width,
    overlay,
    to_rgb,
)

__all__ = [
    "DENSE",
    "OKABE_ITO",
    "TAB20",
    "UNLABELLED",
    "class_colors",
    "contour_thickness",
    "draw_detections",
    "font_size",
    "line_width",
    "load_probability_map",
    "overlay",
    "save_mask_png",
    "save_probability_map",
    "to_rgb",
]


def save_mask_png(path: str | Path, mask: np.ndarray, colors: np.ndarray) -> Path:
    """Writes a class-index mask as a palette (mode P) PNG.

    Pixel values are the class indices, so ``np.asarray(Image.open(path))`` gives the mask
    back; the embedded palette shows each class in its colour in any image viewer (values
    without a class colour, such as the ignore value 255, in white).

    Args:
        path: The PNG to write.
        mask: ``(H, W)`` integer class indices in 0..255.
        colors: ``(K, 3)`` uint8 class colours (:func:`class_colors`).

    Returns:
        ``path``.

    Raises:
        DataError: The mask is not 2-D or holds values a PNG palette cannot index.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise DataError(
            f"a mask must be a 2-D array of class indices, got {mask.dtype} {mask.shape}",
            where=path,
            hint="pass argmax(probabilities) as integers",
        )
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise DataError(
            f"mask values {mask.min()}..{mask.max()} do not fit a PNG palette (0..255)",
            where=path,
            hint="a palette PNG holds at most 256 classes",
        )
    palette = np.tile(np.array(UNLABELLED, dtype=np.uint8), (256, 1))
    colors = np.asarray(colors, dtype=np.uint8)[:256]
    palette[: len(colors)] = colors
    height, width = mask.shape
    image = Image.frombytes("P", (width, height), np.ascontiguousarray(mask, np.uint8).tobytes())
    image.putpalette(palette.ravel().tolist())
    return write_with(path, lambda tmp: image.save(tmp, format="PNG"))


def save_probability_map(path: str | Path, probs: Any) -> Path:
    """Writes per-class probabilities as float16 in a compressed ``.npz``.

    The array is stored under the key ``probabilities`` with shape ``(K, H, W)``. float16
    keeps about three decimals, plenty for thresholds and calibration, at a quarter of
    the float64 size before compression; read it back with :func:`load_probability_map`.

    Args:
        path: The ``.npz`` file to write.
        probs: ``(K, H, W)`` probabilities (NumPy array or CPU tensor).

    Returns:
        ``path``.
    """
    data = np.asarray(probs, dtype=np.float16)
    if data.ndim != 3:
        raise ValueError(f"expected probabilities (K, H, W), got {data.shape}")

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:  # a file handle: numpy would add .npz to a name
            np.savez_compressed(handle, probabilities=data)

    return write_with(path, write)


def load_probability_map(path: str | Path) -> np.ndarray:
    """The ``(K, H, W)`` float32 probabilities written by :func:`save_probability_map`."""
    try:
        with np.load(path) as archive:
            return archive["probabilities"].astype(np.float32)
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(
            f"not a probability map: {exc}",
            where=path,
            hint="write it with `mediscope predict ... --probabilities`",
        ) from None
