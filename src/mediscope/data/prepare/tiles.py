"""Tiling a detection dataset: large images cut into overlapping tiles with their boxes.

Microscopy and slide images are often much larger than what a detector sees at once;
resizing them whole shrinks small objects (bacteria, cells) to a few pixels. The
pre-pass :func:`tile_dataset` (``mediscope data tile``) cuts every image into
``size x size`` tiles that overlap by ``overlap`` of a tile; along each side the tiles
start every ``round(size * (1 - overlap))`` pixels and the last one is aligned to the
image edge, so that every pixel is in a tile and no tile is padded. An image side
shorter than ``size`` is kept whole (the tile is narrower there): padding would add
black borders the detector never sees at prediction time, and training resizes or
crops the tiles anyway.

Boxes are clipped to each tile they overlap. A clipped box is kept when at least
``min_visibility`` of its area is inside the tile, else dropped from that tile (a sliver
of a cell at the edge is not a cell); with the overlap, an object cut by one tile edge is
usually whole in the next tile. A box larger than ``size / sqrt(min_visibility)`` may be
kept in no tile at all: the summary counts these as ``lost`` and a warning names how many.

The output is a YOLO dataset (``images/<split>/`` + ``labels/<split>/`` +
``data.yaml``) keeping the source's splits and sub-folders; tiles are named
``<stem>_<x>_<y><suffix>`` after their top-left corner in the source image, and keep the
source's file type (JPEG at quality 95). Outputs are complete or absent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mediscope.data.formats.boxes import sample_boxes
from mediscope.data.formats.layout import image_plan
from mediscope.data.formats.yolo import label_path, write_data_yaml, write_label
from mediscope.data.samples import Sample, SampleSet
from mediscope.errors import ConfigError, DataError
from mediscope.files import refuse_overlap, staged_dir
from mediscope.registry import FORMATS, unknown_name_hint

log = logging.getLogger(__name__)

JPEG_SUFFIXES = (".jpg", ".jpeg")


@dataclass
class TileSummary:
    """What :func:`tile_dataset` wrote.

    Attributes:
        root: The output folder.
        images: Source images read.
        tiles: Tiles written.
        boxes_kept: Boxes written, counted once per tile they are in.
        boxes_dropped: Box-tile pairs overlapping but with less than ``min_visibility``
            of the box inside the tile.
        boxes_lost: Source boxes kept in no tile (larger than a tile allows).
        empty_skipped: Tiles without boxes left out (``keep_empty=False``).
        splits: Tiles written per split (``none`` for a dataset without splits).
    """

    root: Path
    images: int = 0
    tiles: int = 0
    boxes_kept: int = 0
    boxes_dropped: int = 0
    boxes_lost: int = 0
    empty_skipped: int = 0
    splits: dict[str, int] = field(default_factory=dict)


def tile_starts(length: int, size: int, step: int) -> list[int]:
    """Start offsets of the tiles along a side of ``length`` pixels.

    Every ``step`` pixels, and a last tile aligned to the end; ``[0]`` when the side is
    not longer than a tile.

    Example:
        >>> tile_starts(1000, 640, 512), tile_starts(1500, 640, 512), tile_starts(300, 640, 512)
        ([0, 360], [0, 512, 860], [0])
    """
    if length <= size:
        return [0]
    starts = list(range(0, length - size, step))
    return [*starts, length - size]


def tile_boxes(
    boxes: np.ndarray, labels: np.ndarray, window: tuple[int, int, int, int], min_visibility: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The boxes of one tile ``(x0, y0, x1, y1)``, in tile pixels.

    Returns:
        The kept boxes (clipped, shifted to the tile's corner) and labels, a mask of the
        kept source boxes, and the number of overlapping boxes dropped for visibility.

    Example:
        >>> boxes = np.array([[0.0, 0.0, 10.0, 10.0], [8.0, 0.0, 20.0, 10.0]])
        >>> kept, labels, mask, dropped = tile_boxes(boxes, np.array([0, 1]), (0, 0, 10, 10), 0.5)
        >>> kept.tolist(), labels.tolist(), dropped
        ([[0.0, 0.0, 10.0, 10.0]], [0], 1)
    """
    x0, y0, x1, y1 = window
    clipped = np.stack(
        [
            np.clip(boxes[:, 0], x0, x1),
            np.clip(boxes[:, 1], y0, y1),
            np.clip(boxes[:, 2], x0, x1),
            np.clip(boxes[:, 3], y0, y1),
        ],
        axis=1,
    ).reshape(-1, 4)
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    overlapping = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    keep = overlapping & (inside >= min_visibility * area * (1 - 1e-9))
    shifted = clipped[keep] - np.array([x0, y0, x0, y0], dtype=np.float64)
    return shifted, labels[keep], keep, int((overlapping & ~keep).sum())


def tile_dataset(
    src: Path,
    dst: Path,
    *,
    size: int = 640,
    overlap: float = 0.2,
    format: str = "yolo",
    min_visibility: float = 0.5,
    keep_empty: bool = True,
    overwrite: bool = False,
    classes: list[str] | None = None,
    on_bad_label: str = "error",
) -> TileSummary:
    """Cuts the images of a detection dataset into overlapping tiles (see the module doc).

    Args:
        src: The dataset, in ``format``.
        dst: The output folder (YOLO layout); written completely or not at all.
        size: Tile side in pixels.
        overlap: Share of a tile that neighbouring tiles share, in ``[0, 1)``.
        format: The source format: ``yolo``, ``coco`` or ``voc``.
        min_visibility: Share of a box's area that must be inside a tile to keep it.
        keep_empty: Write tiles without boxes too (negatives); else leave them out.
        overwrite: Replace a non-empty ``dst``.
        classes: Class names, passed to the reader (default: the source's).
        on_bad_label: The reader's handling of bad labels, ``error`` or ``skip``.

    Returns:
        The counts of images, tiles and boxes (:class:`TileSummary`).

    Raises:
        ConfigError: for a bad size, overlap, visibility or format, or a ``dst`` that is
            the source, inside it or above it (``overwrite`` or not).
        DataError: for an unreadable source (naming the file), samples with and without
            a split mixed, or a non-empty ``dst`` without ``overwrite``.

    Example:
        >>> summary = tile_dataset(Path("slides"), Path("tiles"), size=640)  # doctest: +SKIP
        >>> summary.tiles, summary.boxes_kept  # doctest: +SKIP
        (1204, 8731)
    """
    step = _check_options(size, overlap, min_visibility)
    fitting = [e.name for e in FORMATS.entries() if "detection" in e.tags.get("tasks", ())]
    if format not in fitting:
        known = format in FORMATS
        raise ConfigError(
            f"format '{format}' holds no boxes" if known else f"unknown format '{format}'",
            where="format",
            hint=unknown_name_hint(format, fitting),
        )
    refuse_overlap(dst, [src], option="DST")
    entry = FORMATS.entry(format)
    samples: SampleSet = entry.obj(
        src, classes=classes, task="detection", root=None, on_bad_label=on_bad_label
    )
    refuse_overlap(dst, [s.image for s in samples.samples], option="DST")
    plan = image_plan(samples)
    summary = TileSummary(root=dst, images=len(plan))
    labels_written: dict[Path, str] = {}
    splits: list[str | None] = []
    with staged_dir(dst, overwrite=overwrite) as tmp:
        for sample, name in plan:
            for tile in _tile_image(sample, name, size, step, min_visibility, summary):
                if not keep_empty and (tile.box_labels is None or not len(tile.box_labels)):
                    summary.empty_skipped += 1
                    continue
                image_name, image = tile.split_name, tile.image
                label = label_path(image_name)
                if label in labels_written:
                    raise DataError(
                        f"two tiles would share the label file {label.as_posix()}: from "
                        f"{labels_written[label]} and {sample.image}",
                        where=sample.image,
                        hint="rename one of the images (same stem, other suffix?)",
                    )
                labels_written[label] = sample.image
                _save_tile(image, tmp / image_name)
                write_label(tmp, image_name, tile.as_sample(tmp / image_name), len(samples.classes))
                summary.tiles += 1
                key = sample.split or "none"
                summary.splits[key] = summary.splits.get(key, 0) + 1
                splits.append(sample.split)
        write_data_yaml(tmp, samples.classes, splits)
    if summary.boxes_lost:
        log.warning(
            "%s: %d boxes are kept in no tile (less than %g of them fits a %d px tile); "
            "use a larger --size or a lower --min-visibility",
            src,
            summary.boxes_lost,
            min_visibility,
            size,
        )
    return summary


def _check_options(size: int, overlap: float, min_visibility: float) -> int:
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"tile size {size} is not a positive integer", where="size")
    if not 0 <= overlap < 1:
        raise ConfigError(f"overlap {overlap} is not in [0, 1)", where="overlap")
    if not 0 <= min_visibility <= 1:
        raise ConfigError(
            f"min_visibility {min_visibility} is not in [0, 1]", where="min_visibility"
        )
    return max(1, round(size * (1 - overlap)))


@dataclass
class _Tile:
    image: Image.Image
    split_name: Path
    boxes: np.ndarray
    box_labels: np.ndarray

    def as_sample(self, path: Path) -> Sample:
        return Sample(str(path), boxes=self.boxes, box_labels=self.box_labels)


def _tile_image(
    sample: Sample, name: Path, size: int, step: int, min_visibility: float, summary: TileSummary
) -> Iterator[_Tile]:
    """The tiles of one image with their boxes, one at a time; counts boxes in ``summary``."""
    image = _open(sample.image)
    boxes, labels = sample_boxes(sample)
    width, height = image.size
    kept_anywhere = np.zeros(len(boxes), dtype=bool)
    for y0 in tile_starts(height, size, step):
        for x0 in tile_starts(width, size, step):
            window = (x0, y0, min(x0 + size, width), min(y0 + size, height))
            kept, kept_labels, mask, dropped = tile_boxes(boxes, labels, window, min_visibility)
            kept_anywhere |= mask
            summary.boxes_kept += len(kept)
            summary.boxes_dropped += dropped
            tile_name = name.with_name(f"{name.stem}_{x0}_{y0}{name.suffix}")
            yield _Tile(image.crop(window), tile_name, kept, kept_labels)
    summary.boxes_lost += int((~kept_anywhere).sum())


def _open(path: str) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            return (
                img.copy()
                if img.mode != "P"
                else img.convert("RGBA" if "transparency" in img.info else "RGB")
            )
    except FileNotFoundError:
        raise DataError("image not found", where=path) from None
    except Image.DecompressionBombError as exc:
        raise DataError(
            f"image too large for PIL's safety limit ({exc})",
            where=path,
            hint="raise PIL.Image.MAX_IMAGE_PIXELS in a script calling tile_dataset",
        ) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(
            f"cannot read the image ({exc})", where=path, hint="remove or replace the file"
        ) from None


def _save_tile(tile: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in JPEG_SUFFIXES:
        if tile.mode not in ("RGB", "L", "CMYK"):
            tile = tile.convert("RGB")
        tile.save(path, quality=95)
    else:
        tile.save(path)
