"""Reading mask files into ``H x W`` arrays of class indices.

Masks come as class-index PNGs (mode L, or P whose pixel values are the indices), as
binary masks (0/255 or 0/1), or as RGB images whose colours map to classes through a
palette. Values that are neither a class nor ``ignore_index`` are an error naming the
file: a wrong mask must not train silently.

:func:`read_mask` runs for every sample in every epoch, so it stays vectorised: the
values present are counted with one ``bincount`` (no sort), and RGB colours are looked up
with one ``searchsorted`` over the palette's sorted colour codes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from mediscope.config.loader import locate
from mediscope.data.images import pixel_limit_error
from mediscope.errors import ConfigError, DataError

if TYPE_CHECKING:
    from mediscope.config.schema import DatasetConfig

MaskMode = Literal["auto", "index", "binary", "palette"]
Palette = Mapping[str, Sequence[int]] | Sequence[Sequence[int]]
#: Marks colours not in the palette; palette_table keeps class indices below it.
UNKNOWN = 255
MASK_HINT = "check data.classes / data.ignore_index / data.palette"


def read_mask(
    path: str | Path,
    *,
    num_classes: int,
    palette: Palette | None = None,
    classes: list[str] | None = None,
    ignore_index: int | None = None,
    mode: MaskMode = "auto",
) -> np.ndarray:
    """Reads a mask file as ``H x W`` uint8 class indices (``ignore_index`` kept as is).

    Args:
        path: The mask image.
        num_classes: Number of classes, background included.
        palette: RGB colour per class, ``{name: [r, g, b]}`` or a list in class order.
        classes: Class names (to resolve a palette given by name).
        ignore_index: A value that is neither class nor error (e.g. 255). Colours that
            are not in the palette become this value when it is set.
        mode: ``index``, ``binary`` (0/255 or 0/1 → 0/1), ``palette``, or ``auto``:
            palette for RGB masks, binary for 2 classes whose values are a subset of
            {0, 255} (unless ``ignore_index`` is 255), index otherwise.

    Returns:
        The class index of every pixel, uint8.

    Raises:
        DataError: naming the file, for unreadable masks, colours not in the palette and
            values outside the classes.

    Example:
        >>> mask = read_mask("labels/train/case1.png", num_classes=2)  # doctest: +SKIP
        >>> mask.shape, mask.dtype  # doctest: +SKIP
        ((512, 512), dtype('uint8'))
    """
    path = Path(path)
    raw = _load(path)
    if raw.ndim == 3:
        if mode in ("auto", "palette") and palette is not None:
            table = palette_table(palette, classes=classes, num_classes=num_classes)
            return map_colours(raw, table, where=path, ignore_index=ignore_index)
        raw = _gray(raw, path)
    top = int(raw.max()) if raw.size else 0
    if mode != "binary" and top < num_classes and (raw.dtype == np.uint8 or raw.min() >= 0):
        return raw if raw.dtype == np.uint8 else raw.astype(np.uint8)  # the common case, fast
    present = _present_values(raw)
    if mode == "binary" or (mode == "auto" and _looks_binary(present, num_classes, ignore_index)):
        return _binary(raw, present, path)
    ignored = -1 if ignore_index is None else ignore_index
    bad = present[((present >= num_classes) | (present < 0)) & (present != ignored)]
    if len(bad):
        raise DataError(
            f"mask values {_show(bad)} are not classes 0..{num_classes - 1}",
            where=path,
            hint=MASK_HINT,
        )
    return raw if raw.dtype == np.uint8 else raw.astype(np.uint8)


def _load(path: Path) -> np.ndarray:
    """The pixel values as stored: indices for L and P, RGB for colour images."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "P":
                return np.asarray(img)  # the palette indices are the classes
            if img.mode == "PA":
                return np.asarray(img)[..., 0]
            if img.mode in ("RGB", "RGBA"):
                array = np.asarray(img)
                return array[..., :3] if img.mode == "RGBA" else array
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(img).astype(np.int64)
            # 1 (bilevel) → 0/255, LA → L
            return np.asarray(img if img.mode == "L" else img.convert("L"))
    except FileNotFoundError:
        raise DataError("mask file not found", where=path) from None
    except Image.DecompressionBombError as exc:
        raise pixel_limit_error(exc, path) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"unreadable or truncated mask ({exc})", where=path, hint="re-export this mask"
        ) from None


def _present_values(raw: np.ndarray) -> np.ndarray:
    """Distinct values of ``raw``; a bincount is linear where np.unique sorts."""
    if raw.dtype == np.uint8:
        return np.flatnonzero(np.bincount(raw.ravel(), minlength=256))
    return np.unique(raw)


def _looks_binary(present: np.ndarray, num_classes: int, ignore_index: int | None) -> bool:
    if num_classes != 2 or ignore_index == 255 or 255 not in present:
        return False
    return bool(np.isin(present, (0, 255)).all())


def _binary(raw: np.ndarray, present: np.ndarray, path: Path) -> np.ndarray:
    if not np.isin(present, (0, 1, 255)).all():
        raise DataError(
            f"binary mask with values {_show(present)}",
            where=path,
            hint="a binary mask holds 0 and 255 (or 0 and 1); check data.mask_mode",
        )
    return (raw > 0).astype(np.uint8)


def _gray(rgb: np.ndarray, path: Path) -> np.ndarray:
    """The gray values of an RGB mask whose channels are equal (a gray mask saved as RGB)."""
    gray = rgb[..., 0]
    if np.array_equal(gray, rgb[..., 1]) and np.array_equal(gray, rgb[..., 2]):
        return np.ascontiguousarray(gray)
    raise DataError(
        "colour mask but no palette",
        where=path,
        hint="give data.palette: {class: [r, g, b]} or save class-index PNGs",
    )


def palette_table(
    palette: Palette, *, classes: list[str] | None, num_classes: int
) -> dict[tuple[int, int, int], int]:
    """Colour → class index, from ``{name: [r, g, b]}`` or a list in class order.

    Raises:
        DataError: for names not in ``classes``, colours that are not three 0..255
            values, a colour given twice, or more colours than classes.
    """
    if isinstance(palette, Mapping):
        if classes is None:
            raise DataError("a palette by class name needs the class names", where="data.classes")
        unknown = [name for name in palette if name not in classes]
        if unknown:
            raise DataError(
                f"palette classes {', '.join(unknown)} are not in data.classes",
                where="data.palette",
                hint=f"data.classes: {', '.join(classes)}",
            )
        items = [(classes.index(name), colour) for name, colour in palette.items()]
    else:
        items = list(enumerate(palette))
    if not items:
        raise DataError("the palette is empty", where="data.palette")
    table: dict[tuple[int, int, int], int] = {}
    for index, colour in items:
        rgb = tuple(int(c) for c in colour)
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise DataError(f"palette colour {list(colour)} is not [r, g, b]", where="data.palette")
        if index >= min(num_classes, UNKNOWN):
            raise DataError(
                f"palette has {index + 1}+ colours for {num_classes} classes", where="data.palette"
            )
        if rgb in table:
            raise DataError(f"palette colour {list(rgb)} is given twice", where="data.palette")
        table[(rgb[0], rgb[1], rgb[2])] = index
    return table


def map_colours(
    rgb: np.ndarray,
    table: Mapping[tuple[int, int, int], int],
    *,
    where: str | Path,
    ignore_index: int | None = None,
) -> np.ndarray:
    """Maps an ``H x W x 3`` uint8 colour mask to uint8 class indices through ``table``.

    Raises:
        DataError: naming ``where`` and the first colour not in ``table`` (unless
            ``ignore_index`` is set: such pixels then get ``ignore_index``).
    """
    codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8)
    codes |= rgb[..., 2]
    lut = _colour_lut(
        tuple(sorted(((r << 16) | (g << 8) | b, i) for (r, g, b), i in table.items()))
    )
    out = np.take(lut, codes)
    if out.size and int(out.max()) == UNKNOWN:
        unknown = out == UNKNOWN
        if ignore_index is None:
            code = int(codes[unknown].flat[0])
            colour = [(code >> 16) & 255, (code >> 8) & 255, code & 255]
            raise DataError(
                f"colour {colour} is not in the palette",
                where=where,
                hint="add it to data.palette, or set data.ignore_index to ignore it",
            )
        out[unknown] = ignore_index
    return out


@functools.lru_cache(maxsize=4)
def _colour_lut(items: tuple[tuple[int, int], ...]) -> np.ndarray:
    """A class index for each of the 2**24 colour codes (16 MB, built once per palette):
    one gather per mask instead of a sort."""
    lut = np.full(1 << 24, UNKNOWN, dtype=np.uint8)
    for code, index in items:
        lut[code] = index
    return lut


def _show(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (", ..." if len(values) > limit else "")


def mask_decoder(config: DatasetConfig, classes: list[str]) -> Callable[[str], np.ndarray]:
    """Reads a mask file into class indices as training does (``data.palette``,
    ``data.ignore_index``, ``data.mask_mode``)."""
    data = config.data
    if data.ignore_index is not None and data.ignore_index < len(classes):
        error = ConfigError(
            f"{data.ignore_index} is the index of the class '{classes[data.ignore_index]}': "
            "its pixels would be ignored by the loss and the metrics",
            where="data.ignore_index",
            hint=f"use a value that no class has (e.g. 255), above {len(classes) - 1}",
        )
        raise locate(error, config)
    palette = {k: list(v) for k, v in data.palette.items()} if data.palette else None
    return functools.partial(
        read_mask,
        num_classes=len(classes),
        palette=palette,
        classes=classes,
        ignore_index=data.ignore_index,
        mode=data.mask_mode,
    )


def count_mask_pixels(
    masks: Iterable[np.ndarray], num_classes: int, ignore_index: int | None = None
) -> np.ndarray:
    """Pixels per class over class-index ``masks``.

    Pixels equal to ``ignore_index`` are not counted, nor are values outside
    ``0..num_classes - 1`` (decoding the masks is where those are reported).

    Returns:
        An int64 array ``(num_classes,)``.
    """
    counts = np.zeros(num_classes, dtype=np.int64)
    for mask in masks:
        values = np.asarray(mask).ravel().astype(np.int64)
        keep = (values >= 0) & (values < num_classes)
        if ignore_index is not None:
            keep &= values != ignore_index
        counts += np.bincount(values[keep], minlength=num_classes)
    return counts
