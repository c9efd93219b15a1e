"""Decoding every image completely: mode, bit depth, size, a pixel digest and hashes.

A header can be fine while the pixels are not (a JPEG cut in half opens, and fails only
when decoded), so each image is decoded to its end. What is kept per image is small:
mode, bit depth, size, a SHA-1 digest of the pixels (exact duplicates), a 64-bit DCT
perceptual hash and a 24 x 24 RGB thumbnail (near duplicates, see
:mod:`~mediscope.data.doctor.duplicates`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from mediscope.data.doctor.findings import Finding
from mediscope.data.images import (
    DICOM_SUFFIXES,
    TIFF_SUFFIXES,
    array_to_image,
    pixel_limit_error,
    read_values,
)
from mediscope.data.npz_items import is_reference, read_item
from mediscope.errors import MediscopeError

#: Bits per channel of PIL modes.
MODE_BITS = {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16, "I": 32, "F": 32}
#: Side of the thumbnails near duplicates are confirmed on.
THUMB = 24
_WIDE_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})


@dataclass(frozen=True)
class ImageInfo:
    """What the doctor keeps of one decoded image.

    Attributes:
        mode: PIL mode (``L``, ``RGB``, ``I;16`` ...), ``DICOM <photometric>`` for DICOM
            files, ``L`` / ``RGB`` / ``RGBA`` for npz arrays.
        bits: Bits per channel (8 for most images, 16 for 16-bit PNG, TIFF or DICOM).
        width: Width in pixels.
        height: Height in pixels.
        digest: SHA-1 of the decoded pixels with their mode and size.
        phash: 64-bit DCT perceptual hash.
        thumb: ``24 x 24 x 3`` uint8 RGB thumbnail.
    """

    mode: str
    bits: int
    width: int
    height: int
    digest: str
    phash: int
    thumb: np.ndarray


def inspect_image(
    image: str, *, split: str | None = None, window: tuple[float, float] | None = None
) -> ImageInfo | Finding:
    """Decodes ``image`` completely; its info, or the finding of why it does not decode.

    Args:
        image: An image file, a DICOM file or an npz reference.
        split: The split, for the finding.
        window: DICOM intensity window (``data.dicom_window``).

    Returns:
        The image's :class:`ImageInfo`, or a finding of kind ``empty_file``,
        ``unreadable_image`` or ``truncated_image`` (severity error).
    """
    try:
        if is_reference(image):
            array = read_item(image)
            mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(array.shape[2] if array.ndim == 3 else 1, "L")
            bits = 1 if array.dtype == np.bool_ else array.dtype.itemsize * 8
            return _info(array_to_image(array, channels=3, where=image), mode, bits, array)
        if Path(image).suffix.lower() in DICOM_SUFFIXES:
            return _inspect_dicom(image, window, split)
        if os.path.getsize(image) == 0:
            return _problem("empty_file", "zero-byte file", image, split)
        with Image.open(image) as img:
            mode = img.mode
            img.load()
            if mode in _WIDE_MODES:
                rgb = array_to_image(np.asarray(img), channels=3, where=image)
            else:
                rgb = np.asarray(img.convert("RGB"))
            raw = np.asarray(img)
        return _info(rgb, mode, MODE_BITS.get(mode, 8), raw)
    except FileNotFoundError:
        return _problem("unreadable_image", "image file not found", image, split)
    except UnidentifiedImageError:
        return _problem("unreadable_image", "not an image (PIL cannot identify it)", image, split)
    except MediscopeError as exc:
        return _problem("unreadable_image", exc.message, image, split)
    except Image.DecompressionBombError as exc:
        return _large(image, exc, split)
    except (OSError, ValueError, SyntaxError) as exc:
        kind = "truncated_image" if "truncated" in str(exc).lower() else "unreadable_image"
        message = f"does not decode ({exc.__class__.__name__}: {exc})"
        return _problem(kind, message, image, split)


def _large(image: str, exc: Image.DecompressionBombError, split: str | None) -> ImageInfo | Finding:
    """An image beyond Pillow's limit: a TIFF is read as training reads it (tifffile),
    others are a finding naming their size and ``data.max_pixels``."""
    if Path(image).suffix.lower() in TIFF_SUFFIXES:
        try:
            raw = read_values(image)
            rgb = array_to_image(raw, channels=3, where=image)
        except MediscopeError as failed:
            return _problem("unreadable_image", failed.message, image, split)
        bits = 1 if raw.dtype == np.bool_ else raw.dtype.itemsize * 8
        return _info(rgb, "TIFF (tifffile)", bits, raw)
    refused = pixel_limit_error(exc, image)
    return _problem("unreadable_image", f"{refused.message}; {refused.hint}", image, split)


def _problem(kind: str, message: str, image: str, split: str | None) -> Finding:
    return Finding(
        kind,
        "error",
        message,
        file=image,
        split=split,
        hint="replace the file, or leave it out (--write-exclude, data.exclude)",
        exclude=[image],
    )


def _inspect_dicom(
    image: str, window: tuple[float, float] | None, split: str | None
) -> ImageInfo | Finding:
    from mediscope.data.dicom_pixels import import_pydicom, read_dicom_pixels

    pydicom = import_pydicom(image)  # a missing pydicom is the user's to install: raises
    try:
        header = pydicom.dcmread(image, stop_before_pixels=True)
        pixels = read_dicom_pixels(Path(image), window=window)
    except MediscopeError as exc:
        return _problem("unreadable_image", exc.message, image, split)
    except Exception as exc:  # pydicom raises many kinds of errors for broken files
        message = f"not a readable DICOM file ({exc.__class__.__name__}: {exc})"
        return _problem("unreadable_image", message, image, split)
    mode = f"DICOM {getattr(header, 'PhotometricInterpretation', '?')}"
    bits = int(getattr(header, "BitsStored", pixels.dtype.itemsize * 8))
    return _info(array_to_image(pixels, channels=3, where=image), mode, bits, pixels)


def _info(rgb: np.ndarray, mode: str, bits: int, raw: np.ndarray) -> ImageInfo:
    height, width = rgb.shape[:2]
    digest = hashlib.sha1(f"{mode} {raw.shape} {raw.dtype}".encode())
    digest.update(np.ascontiguousarray(raw).tobytes())
    return ImageInfo(
        mode=mode,
        bits=bits,
        width=int(width),
        height=int(height),
        digest=digest.hexdigest(),
        phash=phash(rgb),
        thumb=thumbnail(rgb),
    )


def phash(rgb: np.ndarray) -> int:
    """The 64-bit DCT perceptual hash of an image (Zauner 2010).

    The grey image is shrunk to 32 x 32 (area averaging), transformed by a 2-D DCT, and
    each of the 8 x 8 lowest frequencies gives one bit: above the median of the 63 AC
    coefficients or not. Resizing, re-encoding and brightness changes leave the low
    frequencies, and so most bits, as they are.
    """
    gray = np.asarray(rgb, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return int(np.packbits(bits).view(">u8")[0])


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """A ``24 x 24 x 3`` uint8 thumbnail (area averaging)."""
    small = cv2.resize(np.asarray(rgb), (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(small.reshape(THUMB, THUMB, 3), dtype=np.uint8)
