"""Reading mask files into ``H x W`` arrays of class indices.

Masks come as class-index PNGs (mode L, or P whose pixel values are the indices), as
binary masks (0/255 or 0/1), or as RGB images whose colours map to classes through a
palette. Values that are neither a class nor ``ignore_index`` are an error naming the
file: a wrong mask must not train silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from mediscope.errors import DataError

MaskMode = Literal["auto", "index", "binary", "palette"]
Palette = Mapping[str, Sequence[int]] | Sequence[Sequence[int]]


def _palette_table(
    palette: Palette, classes: list[str] | None, num_classes: int
) -> dict[tuple[int, int, int], int]:
    """Colour → class index."""
    if isinstance(palette, Mapping):
        names = classes or []
        table = {}
        for name, colour in palette.items():
            if name not in names:
                raise DataError(f"palette class '{name}' is not in data.classes", where="data.palette")
            table[tuple(int(c) for c in colour)] = names.index(name)
        return table  # type: ignore[return-value]
    return {tuple(int(c) for c in colour): i for i, colour in enumerate(palette)}  # type: ignore[misc]


def _load(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "P":
                return np.asarray(img)  # the palette indices are the classes
            if img.mode in ("RGB", "RGBA"):
                return np.asarray(img.convert("RGB"))
            if img.mode in ("I;16", "I;16B", "I", "F"):
                return np.asarray(img).astype(np.int64)
            return np.asarray(img.convert("L"))
    except FileNotFoundError:
        raise DataError("mask file not found", where=path) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(
            f"unreadable or truncated mask ({exc})", where=path, hint="re-export this mask"
        ) from None


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
        ignore_index: A value that is neither class nor error (e.g. 255).
        mode: ``index``, ``binary`` (0/255 or 0/1 → 0/1), ``palette``, or ``auto``:
            palette for RGB masks, binary for 2 classes whose values are 0 and 255, index
            otherwise.

    Raises:
        DataError: naming the file, for unreadable masks, colours not in the palette and
            values outside the classes.
    """
    path = Path(path)
    raw = _load(path)
    if raw.ndim == 3:
        if mode not in ("auto", "palette") or palette is None:
            # An RGB mask whose channels are equal is a gray one saved as RGB.
            if (raw[..., 0] == raw[..., 1]).all() and (raw[..., 1] == raw[..., 2]).all():
                raw = raw[..., 0]
            else:
                raise DataError(
                    "colour mask but no palette",
                    where=path,
                    hint="give data.palette: {class: [r, g, b]} or save class-index PNGs",
                )
        else:
            return _map_palette(raw, _palette_table(palette, classes, num_classes), path, ignore_index)
    values = np.unique(raw)
    if mode == "binary" or (
        mode == "auto"
        and num_classes == 2
        and ignore_index != 255
        and 255 in values
        and set(values.tolist()) <= {0, 255}
    ):
        if not set(values.tolist()) <= {0, 1, 255}:
            raise DataError(
                f"binary mask with values {_show(values)}", where=path, hint="use 0 and 255 (or 0 and 1)"
            )
        return (raw > 0).astype(np.uint8)
    bad = values[(values >= num_classes) & (values != (ignore_index if ignore_index is not None else -1))]
    if len(bad):
        raise DataError(
            f"mask values {_show(bad)} are not classes 0..{num_classes - 1}",
            where=path,
            hint="check data.classes, data.ignore_index and data.mask_mode",
        )
    return raw.astype(np.uint8)


def _map_palette(
    rgb: np.ndarray,
    table: dict[tuple[int, int, int], int],
    path: Path,
    ignore_index: int | None,
) -> np.ndarray:
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    lookup = {(r << 16) | (g << 8) | b: index for (r, g, b), index in table.items()}
    unique, inverse = np.unique(codes, return_inverse=True)
    mapped = np.empty(len(unique), dtype=np.int64)
    for i, code in enumerate(unique.tolist()):
        if code in lookup:
            mapped[i] = lookup[code]
        elif ignore_index is not None:
            mapped[i] = ignore_index
        else:
            colour = [(code >> 16) & 255, (code >> 8) & 255, code & 255]
            raise DataError(
                f"colour {colour} is not in the palette",
                where=path,
                hint="add it to data.palette, or set data.ignore_index to ignore it",
            )
    return mapped[inverse].reshape(codes.shape).astype(np.uint8)


def _show(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (", ..." if len(values) > limit else "")
