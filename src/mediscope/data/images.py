"""Reading images into uint8 arrays, whatever their mode (16-bit, float, palette, CMYK, ...).

:func:`read_image` reads three kinds of sources: image files (PNG, JPEG, TIFF, ...),
DICOM files (``.dcm``, through the optional pydicom) and references to one image of an
array in an ``.npz`` file (``/data/train.npz::train_images::123``), read from a memory map.
:func:`write_image` writes a generated RGB image or mask as PNG or JPEG, atomically.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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


#: The largest image decoded whole unless :func:`set_max_pixels` says otherwise: Pillow's
#: own refusal point (twice ``PIL.Image.MAX_IMAGE_PIXELS``), as ``data.max_pixels``.
DEFAULT_MAX_PIXELS = 178_956_970
_limit = {"max_pixels": DEFAULT_MAX_PIXELS}

#: PIL modes holding values beyond 8 bits (one channel).
WIDE_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})


def set_max_pixels(limit: int) -> None:
    """Sets the largest image :func:`read_image` decodes whole (``data.max_pixels``).

    Pillow's own limit follows: Pillow refuses images beyond twice its
    ``PIL.Image.MAX_IMAGE_PIXELS``, which becomes half of ``limit`` (the default
    ``limit`` leaves it at Pillow's default).
    """
    _limit["max_pixels"] = int(limit)
    Image.MAX_IMAGE_PIXELS = (int(limit) + 1) // 2


def max_pixels() -> int:
    """The largest image :func:`read_image` decodes whole (see :func:`set_max_pixels`)."""
    return _limit["max_pixels"]


def read_image(
    path: str | Path,
    *,
    channels: int = 3,
    window: tuple[float, float] | None = None,
    intensity: tuple[float, float] | None = None,
) -> np.ndarray:
    """Reads an image as ``H x W x channels`` uint8.

    Stored values become 8 bits by ``intensity`` when given (see :func:`to_uint8`), else
    images beyond 8 bits are scaled by their own range; palette and CMYK images are
    converted, alpha is dropped. ``channels`` 1 gives grayscale, 3 gives RGB.

    Images larger than :func:`max_pixels` (``data.max_pixels``): TIFFs are read through
    tifffile (memory-mapped when stored uncompressed), others are refused.

    Args:
        path: An image file, a DICOM file, or an npz reference ``FILE.npz::KEY::INDEX``.
        channels: 1 (grayscale) or 3 (RGB).
        window: DICOM only: ``(centre, width)`` of the intensity window, replacing the
            file's own window. Ignored for other images.
        intensity: ``(min, max)``: the stored values shown as 0 and 255, for every image
            but DICOM (``data.intensity``); None: each image by its own range.

    Raises:
        DataError: naming the file when it is missing, truncated, not an image, or too
            large.
    """
    if isinstance(path, str) and is_reference(path):
        return array_to_image(read_item(path), channels=channels, where=path, intensity=intensity)
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        pixels = read_dicom_pixels(path, window=window)
        return array_to_image(pixels, channels=channels, where=path)
    values = read_values(path, channels=channels)
    return array_to_image(values, channels=channels, where=path, intensity=intensity)


def read_values(path: str | Path, *, channels: int = 3) -> np.ndarray:
    """The stored values of an image file: ``H x W`` or ``H x W x C``, in the file's type.

    8-bit images come as ``channels`` uint8 channels (palette, CMYK, ... converted);
    16-bit, 32-bit and float images keep their values and type. Large TIFFs go through
    tifffile, as in :func:`read_image`.

    Raises:
        DataError: naming the file when it is missing, truncated, not an image, or too
            large.
    """
    path = Path(path)
    tiff = path.suffix.lower() in TIFF_SUFFIXES
    limit = max_pixels()
    try:
        with _quiet_pillow(), Image.open(path) as img:
            width, height = img.size
            if width * height > limit:
                if tiff:
                    return read_tiff(path)
                raise too_large(path, width * height, limit, size=(width, height))
            if path.suffix.lower() == ".png" and img.mode in ("RGB", "RGBA") and _png16(path):
                return _read_png16(path)
            if tiff and img.mode not in WIDE_MODES and _tiff_bits(img) > 8:
                return read_tiff(path)  # PIL reads 16-bit colour TIFFs as 8 bits
            img.load()
            return _pil_values(img, channels)
    except FileNotFoundError:
        raise DataError("image not found", where=path, hint="check the dataset path") from None
    except Image.DecompressionBombError as exc:
        if tiff:
            return read_tiff(path)
        raise pixel_limit_error(exc, path) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        if tiff and _tifffile_available():
            return read_tiff(path)  # e.g. 16-bit RGB or tiled layouts PIL cannot decode
        raise DataError(
            f"cannot read the image ({exc.__class__.__name__}: {exc})",
            where=path,
            hint="remove or replace the file",
        ) from None


def image_header(path: str | Path) -> tuple[int, int, int]:
    """``(width, height, channels)`` from an image file's header, without decoding pixels.

    A TIFF beyond Pillow's limit is measured by tifffile (as :func:`read_image` reads it).

    Raises:
        DataError: naming the file when it is missing, not an image, or (not a TIFF)
            beyond Pillow's limit.
    """
    try:
        with Image.open(path) as img:
            width, height = img.size
            return int(width), int(height), len(img.getbands())
    except FileNotFoundError:
        raise DataError("image not found", where=path, hint="check the dataset path") from None
    except Image.DecompressionBombError as exc:
        if Path(path).suffix.lower() not in TIFF_SUFFIXES:
            raise pixel_limit_error(exc, path) from None
        shape = _tiff_shape(path)
        return shape[1], shape[0], shape[2]
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(
            f"cannot read the image ({exc.__class__.__name__}: {exc})",
            where=path,
            hint="remove or replace the file",
        ) from None


def _tiff_shape(path: str | Path) -> tuple[int, int, int]:
    """``(height, width, channels)`` of a TIFF's first image, from its tags."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            return int(page.imagelength), int(page.imagewidth), int(page.samplesperpixel)  # type: ignore[union-attr]
    except ImportError:
        raise DataError(
            "reading this TIFF needs tifffile", where=path, hint="pip install tifffile"
        ) from None
    except Exception as exc:  # tifffile raises many kinds on damaged files
        raise DataError(
            f"cannot read the TIFF ({exc.__class__.__name__}: {exc})", where=path
        ) from None


@contextmanager
def _quiet_pillow() -> Iterator[None]:
    """Silences Pillow's warning beyond half the limit: the limit itself is checked."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def too_large(
    path: str | Path, pixels: int | None, limit: int, *, size: tuple[int, int] | None = None
) -> DataError:
    """The error for an image beyond ``data.max_pixels``: its size and the way out."""
    shown = f"{size[0]} x {size[1]} = {pixels:,} pixels" if size and pixels else None
    if shown is None:
        shown = f"{pixels:,} pixels" if pixels else "an image"
    need = f"--set data.max_pixels={pixels} reads it whole" if pixels else "raise data.max_pixels"
    memory = ""
    if pixels:
        size_mb = pixels * 3 / 1e6
        shown_memory = f"{size_mb / 1000:.1f} GB" if size_mb >= 1000 else f"{size_mb:.0f} MB"
        memory = f" (about {shown_memory} as 8-bit RGB)"
    return DataError(
        f"image of {shown} is larger than data.max_pixels ({limit:,}), the guard against "
        "decompression bombs",
        where=path,
        hint=f"{need}{memory}, or cut it into tiles (mediscope data tile), or save it as TIFF",
    )


def pixel_limit_error(exc: Image.DecompressionBombError, path: str | Path) -> DataError:
    """The error for an image beyond PIL's pixel limit (``PIL.Image.MAX_IMAGE_PIXELS``,
    a guard against decompression bombs)."""
    size = _png_size(Path(path))
    pixels = size[0] * size[1] if size else _bomb_pixels(exc)
    return too_large(path, pixels, max_pixels(), size=size)


def _bomb_pixels(exc: Exception) -> int | None:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return int(found.group(1)) if found else None


def _tifffile_available() -> bool:
    try:
        import tifffile  # noqa: F401
    except ImportError:
        return False
    return True


def read_tiff(path: str | Path) -> np.ndarray:
    """The first image of a TIFF through tifffile: ``H x W`` or ``H x W x C``, its values as
    stored; memory-mapped when the file stores it uncompressed and contiguous.

    Raises:
        DataError: when tifffile is missing or cannot read the file.
    """
    try:
        import tifffile
    except ImportError:
        raise DataError(
            "reading this TIFF needs tifffile", where=path, hint="pip install tifffile"
        ) from None
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            mapped = page.is_memmappable
            data = page.asarray(out="memmap" if mapped else None)
    except Exception as exc:  # tifffile raises many kinds on damaged or unsupported files
        raise DataError(
            f"cannot read the TIFF ({exc.__class__.__name__}: {exc})",
            where=path,
            hint="remove or replace the file",
        ) from None
    array = np.asarray(data)
    while array.ndim > 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)  # planar (separate) channels
    return array


def _tiff_bits(img: Image.Image) -> int:
    """The largest BitsPerSample of a TIFF opened by PIL (8 when it does not say)."""
    bits = getattr(img, "tag_v2", {}).get(258, 8)
    values = bits if isinstance(bits, tuple | list) else (bits,)
    try:
        return max(int(v) for v in values) if values else 8
    except (TypeError, ValueError):
        return 8


def _png_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG's header; None for other files."""
    try:
        with path.open("rb") as handle:
            header = handle.read(24)
    except OSError:
        return None
    if len(header) < 24 or header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
        return None
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def _png16(path: Path) -> bool:
    """Whether a PNG stores 16 bits per channel (PIL reads colour ones as 8 bits)."""
    with path.open("rb") as handle:
        header = handle.read(26)
    return len(header) == 26 and header[12:16] == b"IHDR" and header[24] == 16


def _read_png16(path: Path) -> np.ndarray:
    import cv2

    data = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise DataError("cannot read the 16-bit PNG", where=path, hint="remove or replace the file")
    if data.ndim == 3:
        data = cv2.cvtColor(data, cv2.COLOR_BGRA2RGBA if data.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    result: np.ndarray = data
    return result


def _pil_values(img: Image.Image, channels: int) -> np.ndarray:
    if img.mode in WIDE_MODES:
        return np.asarray(img)
    target = "L" if channels == 1 else "RGB"
    if img.mode != target:
        img = img.convert(target)
    array = np.asarray(img, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def array_to_image(
    array: np.ndarray,
    *,
    channels: int,
    where: str | Path,
    intensity: tuple[float, float] | None = None,
) -> np.ndarray:
    """Turns an ``H x W`` or ``H x W x C`` array into a writable ``H x W x channels`` uint8.

    Values become 8 bits by :func:`to_uint8`. One channel is repeated for RGB, RGB is
    converted to luma for grayscale (as PIL does), a fourth (alpha) channel is dropped.

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
    data = to_uint8(array[:, :, :3] if array.shape[2] == 4 else array, intensity)
    if channels == 1 and data.shape[2] == 3:
        gray = Image.fromarray(np.ascontiguousarray(data), mode="RGB").convert("L")
        return np.asarray(gray, dtype=np.uint8)[:, :, None].copy()
    if channels == 3 and data.shape[2] == 1:
        return np.repeat(data, 3, axis=2)
    # Copied unless already a fresh array: callers may write in place, maps are read-only.
    fresh = data.base is None and data.flags.writeable and data.flags.c_contiguous
    return data if fresh else np.array(data, order="C", copy=True)


def to_uint8(array: np.ndarray, intensity: tuple[float, float] | None = None) -> np.ndarray:
    """Stored values as uint8.

    With ``intensity`` ``(min, max)`` (``data.intensity`` fixed or percentile), every
    value maps to ``round(clip((v - min) / (max - min), 0, 1) * 255)``, whatever the
    type. Without it, uint8 is kept as is and other types are scaled by the array's own
    range. Bool becomes 0 / 255 either way.

    Example:
        >>> values = np.array([[0, 1000, 2000, 5000]], dtype=np.uint16)
        >>> to_uint8(values, (1000.0, 3000.0)).tolist()
        [[0, 0, 128, 255]]
        >>> to_uint8(values).tolist()
        [[0, 51, 102, 255]]
    """
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if intensity is not None:
        return _scaled(array, float(intensity[0]), float(intensity[1]))
    if array.dtype == np.uint8:
        return array
    lo, hi = float(array.min()), float(array.max())
    if not hi > lo:
        return np.zeros(array.shape, dtype=np.uint8)
    return _scaled(array, lo, hi)


#: Values converted to float at a time by :func:`_scaled` (bounds the memory of large
#: and memory-mapped images to the uint8 result).
_BLOCK_VALUES = 1 << 22


def _scaled(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """``round(clip((v - low) / (high - low), 0, 1) * 255)`` as uint8, in row blocks."""
    result = np.empty(array.shape, dtype=np.uint8)
    row_values = max(1, int(np.prod(array.shape[1:], dtype=np.int64)))
    rows = max(1, _BLOCK_VALUES // row_values)
    for start in range(0, array.shape[0], rows):
        block = np.asarray(array[start : start + rows], dtype=np.float64)
        scaled = np.clip((block - low) / (high - low), 0.0, 1.0) * 255
        result[start : start + rows] = scaled.round()
    return result


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
