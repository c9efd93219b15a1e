"""Reading DICOM pixels: modality transform, intensity window, 8 bits.

Needs the optional ``pydicom`` (``pip install 'mediscope[dicom]'``), imported only when a
DICOM file is read. A grayscale image goes through the modality transform (rescale slope
and intercept), then an intensity window (the file's WindowCenter / WindowWidth, a given
one, or the image's own range), MONOCHROME1 is inverted, and the result is 8-bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from mediscope.errors import DataError

INSTALL_HINT = "pip install 'mediscope[dicom]'"


def read_dicom_pixels(path: Path, *, window: tuple[float, float] | None = None) -> np.ndarray:
    """Reads the image of a DICOM file: ``H x W`` uint8, or ``H x W x 3`` for colour.

    Args:
        path: The DICOM file.
        window: ``(centre, width)`` in modality units (e.g. Hounsfield), replacing the
            file's WindowCenter / WindowWidth. Without either, the image's own range.

    Raises:
        DataError: when pydicom is missing, or the file is missing, not DICOM, holds no
            pixels, needs a decoder that is not installed, or has several frames.
    """
    pydicom = import_pydicom(path)
    try:
        dataset = pydicom.dcmread(path)
    except FileNotFoundError:
        raise DataError("image not found", where=path, hint="check the dataset path") from None
    except Exception as exc:  # pydicom raises many kinds on a damaged file
        raise DataError(
            f"cannot read the DICOM file ({exc.__class__.__name__}: {exc})",
            where=path,
            hint="remove or replace the file",
        ) from None
    pixels = _pixel_array(dataset, path)
    if int(dataset.get("SamplesPerPixel", 1) or 1) != 1:
        return pixels  # colour: shown as stored; windowing is for grayscale
    values = _modality_values(pixels, dataset)
    low, high = _window_bounds(values, window if window is not None else _file_window(dataset))
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0) if high > low else values * 0.0
    image = (scaled * 255).round().astype(np.uint8)
    if str(dataset.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        image = 255 - image  # MONOCHROME1: the lowest value is white
    return image


def import_pydicom(where: str | Path) -> ModuleType:
    """Imports pydicom, or raises DataError saying how to install it."""
    try:
        import pydicom
    except ImportError:
        raise DataError("reading DICOM needs pydicom", where=where, hint=INSTALL_HINT) from None
    return pydicom


def _pixel_array(dataset: Any, path: Path) -> np.ndarray:
    if "PixelData" not in dataset:
        raise DataError("the DICOM file holds no image (no PixelData)", where=path)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DataError(
            f"the DICOM file holds {frames} frames; one 2-D image per file is supported",
            where=path,
            hint="save each frame as its own file",
        )
    try:
        pixels: np.ndarray = dataset.pixel_array
    except Exception as exc:  # missing decoders raise RuntimeError, NotImplementedError, ...
        syntax = dataset.file_meta.get("TransferSyntaxUID", "unknown")
        raise DataError(
            f"cannot decode the pixels ({exc.__class__.__name__}: {exc})",
            where=path,
            hint=f"transfer syntax {syntax!s} may need a decoder: pip install pylibjpeg "
            "pylibjpeg-libjpeg pylibjpeg-openjpeg",
        ) from None
    return pixels


def _modality_values(pixels: np.ndarray, dataset: Any) -> np.ndarray:
    """Stored values → modality units: RescaleSlope / RescaleIntercept, or a Modality LUT."""
    try:
        from pydicom.pixels import apply_modality_lut
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import (  # type: ignore[no-redef]
            apply_modality_lut,
        )
    values: np.ndarray = np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float64)
    return values


def _file_window(dataset: Any) -> tuple[float, float] | None:
    """The file's first (centre, width), or None when absent or unusable."""
    centre, width = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    if centre is None or width is None:
        return None
    try:
        # Several windows may be stored; the first is the default presentation.
        first = [float(v[0] if _is_multi(v) else v) for v in (centre, width)]
    except (TypeError, ValueError, IndexError):
        return None
    return (first[0], first[1]) if first[1] > 0 else None


def _is_multi(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _window_bounds(values: np.ndarray, window: tuple[float, float] | None) -> tuple[float, float]:
    """``(low, high)`` of a (centre, width) window, or the values' range without one."""
    if window is None:
        return float(values.min()), float(values.max())
    centre, width = (float(v) for v in window)
    if not width > 0:
        raise DataError(f"window width must be positive, got {width}", where="window")
    return centre - width / 2, centre + width / 2
