"""A synthetic whole slide: planted tissue regions with H&E-like textures on glass.

:func:`write_slide` writes a tiled pyramidal TIFF (level 0 and halvings, an mpp in its
resolution tags) tile by tile, each level straight from the region shapes, so that even
a 40,000 x 40,000 px slide is written in the memory of a few tiles. :class:`Region` and
:func:`label_at` give the ground truth: the class at any level-0 point and the planted
areas, for tests, benchmarks and the documentation's picture.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: The classes of the synthetic slide and their textures' colours (RGB): background
#: stain, nuclei, fibres.
CLASSES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]] = {
    "tumour": ((150, 80, 170), (60, 25, 110), (120, 60, 150)),
    "stroma": ((235, 150, 190), (170, 90, 160), (215, 110, 160)),
    "lymphocytes": ((205, 180, 225), (45, 40, 140), (190, 160, 215)),
}
GLASS = (242, 242, 238)
#: The colour of planted objects (``dots``): near black.
DOT = (15, 15, 15)
TILE = 256
PERIOD = 256  # texture period in level-0 pixels


@dataclass(frozen=True)
class Region:
    """A planted region: an ellipse or a rectangle, in fractions of the slide's size.

    Attributes:
        label: The class name (a key of :data:`CLASSES`).
        shape: ``ellipse`` or ``rect``.
        cx, cy: Centre.
        rx, ry: Half-width and half-height.
    """

    label: str
    shape: str
    cx: float
    cy: float
    rx: float
    ry: float

    def area(self, width: int, height: int) -> float:
        """Area in level-0 pixels."""
        w, h = 2 * self.rx * width, 2 * self.ry * height
        return w * h * (math.pi / 4 if self.shape == "ellipse" else 1.0)


#: Three separate regions on a square slide.
DEFAULT_REGIONS = (
    Region("tumour", "ellipse", 0.30, 0.30, 0.20, 0.17),
    Region("stroma", "rect", 0.72, 0.34, 0.16, 0.22),
    Region("lymphocytes", "ellipse", 0.45, 0.76, 0.26, 0.15),
)


def label_at(
    xs: np.ndarray, ys: np.ndarray, width: int, height: int, regions: Sequence[Region]
) -> np.ndarray:
    """The class index (into ``regions``' labels as ordered in :data:`CLASSES`) at level-0
    points ``xs``, ``ys`` (broadcast together); -1 on glass."""
    names = list(CLASSES)
    fx = np.asarray(xs, dtype=np.float64) / width
    fy = np.asarray(ys, dtype=np.float64) / height
    out = np.full(np.broadcast(fx, fy).shape, -1, dtype=np.int16)
    for region in regions:
        dx, dy = (fx - region.cx) / region.rx, (fy - region.cy) / region.ry
        if region.shape == "ellipse":
            inside = dx * dx + dy * dy <= 1
        else:
            inside = (np.abs(dx) <= 1) & (np.abs(dy) <= 1)
        out[inside] = names.index(region.label)
    return out


def _texture(colours: tuple[tuple[int, int, int], ...], period: int, seed: int) -> np.ndarray:
    """A periodic ``period x period`` texture: stain with fibres and round nuclei."""
    rng = np.random.default_rng(seed)
    base, nucleus, fibre = (np.array(c, dtype=np.float32) for c in colours)
    y, x = np.mgrid[0:PERIOD, 0:PERIOD].astype(np.float32)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * (3 * x + 2 * y) / PERIOD + rng.uniform(0, 6))
    img = base + (fibre - base) * wave[..., None] * 0.6
    spacing = 12
    for cy in range(0, PERIOD, spacing):
        for cx in range(0, PERIOD, spacing):
            if rng.random() < 0.55:
                py, px = cy + rng.uniform(0, spacing), cx + rng.uniform(0, spacing)
                r = rng.uniform(2.5, 4.5)
                dy = np.minimum(np.abs(y - py), PERIOD - np.abs(y - py))
                dx = np.minimum(np.abs(x - px), PERIOD - np.abs(x - px))
                img[(dx * dx + dy * dy) <= r * r] = nucleus
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    level0 = np.clip(img, 0, 255).astype(np.uint8)
    if period == PERIOD:
        return level0
    import cv2

    return cv2.resize(level0, (period, period), interpolation=cv2.INTER_AREA)


def level_sizes(width: int, height: int, min_side: int = 512) -> list[tuple[int, int]]:
    """``(width, height)`` of level 0 and its halvings down to about ``min_side``."""
    sizes = [(width, height)]
    while max(sizes[-1]) > 2 * min_side:
        w, h = sizes[-1]
        sizes.append(((w + 1) // 2, (h + 1) // 2))
    return sizes


def _tiles(
    width: int,
    height: int,
    downsample: int,
    regions: Sequence[Region],
    textures: list[np.ndarray],
    dots: Sequence[tuple[float, float, float]] = (),
) -> Iterator[np.ndarray]:
    """The tiles of one level, rows first."""
    level_w, level_h = (
        (width + downsample - 1) // downsample,
        (height + downsample - 1) // downsample,
    )
    period = textures[0].shape[0]
    glass = np.array(GLASS, dtype=np.uint8)
    plain = np.empty((TILE, TILE, 3), dtype=np.uint8)
    plain[:] = glass
    boxes = [
        (
            (r.cx - r.rx) * width / downsample,
            (r.cy - r.ry) * height / downsample,
            (r.cx + r.rx) * width / downsample,
            (r.cy + r.ry) * height / downsample,
        )
        for r in regions
    ]
    boxes += [
        ((x - r) / downsample, (y - r) / downsample, (x + r) / downsample, (y + r) / downsample)
        for x, y, r in dots
    ]
    for top in range(0, level_h, TILE):
        for left in range(0, level_w, TILE):
            if not any(
                x0 <= left + TILE and x1 >= left and y0 <= top + TILE and y1 >= top
                for x0, y0, x1, y1 in boxes
            ):
                yield plain  # glass only
                continue
            ys = np.arange(top, top + TILE)
            xs = np.arange(left, left + TILE)
            labels = label_at(
                (xs * downsample)[None, :], (ys * downsample)[:, None], width, height, regions
            )
            tile = np.empty((TILE, TILE, 3), dtype=np.uint8)
            tile[:] = glass
            rows, cols = (ys % period)[:, None], (xs % period)[None, :]
            for index, texture in enumerate(textures):
                inside = labels == index
                if inside.any():
                    tile[inside] = texture[rows, cols][inside]
            for dx, dy, radius in dots:
                cx, cy, r = dx / downsample - left, dy / downsample - top, radius / downsample
                if -r <= cx <= TILE + r and -r <= cy <= TILE + r:
                    inside = (xs[None, :] - left - cx) ** 2 + (ys[:, None] - top - cy) ** 2
                    tile[inside <= r * r] = DOT
            yield tile


def write_slide(
    path: str | Path,
    width: int,
    height: int,
    *,
    mpp: float | None = 0.5,
    regions: Sequence[Region] = DEFAULT_REGIONS,
    compression: str | None = "jpeg",
    seed: int = 0,
    dots: Sequence[tuple[float, float, float]] = (),
) -> list[tuple[int, int]]:
    """Writes a synthetic pyramidal TIFF slide, tile by tile.

    Args:
        path: The ``.tif`` to write.
        width, height: Level-0 size in pixels.
        mpp: Microns per level-0 pixel (stored in the resolution tags; None: none).
        regions: The planted regions.
        compression: TIFF compression (``jpeg``, ``zlib`` or None).
        seed: Texture seed.
        dots: Near-black discs ``(x, y, radius)`` in level-0 pixels (objects to detect).

    Returns:
        The ``(width, height)`` of each level.
    """
    import tifffile

    sizes = level_sizes(width, height)
    options: dict[str, Any] = {
        "tile": (TILE, TILE),
        "photometric": "rgb",
        "compression": compression,
        "dtype": np.uint8,
    }
    if compression == "jpeg":
        options["compressionargs"] = {"level": 90}
    with tifffile.TiffWriter(path, bigtiff=width * height * 3 > 2**31) as tif:
        for level, (level_w, level_h) in enumerate(sizes):
            downsample = 2**level
            period = max(4, PERIOD // downsample)
            textures = [
                _texture(colours, period, seed + i) for i, colours in enumerate(CLASSES.values())
            ]
            if mpp is not None:
                per_cm = 1e4 / (mpp * downsample)
                options.update(resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
            tif.write(
                _tiles(width, height, downsample, regions, textures, dots),
                shape=(level_h, level_w, 3),
                subifds=len(sizes) - 1 if level == 0 else None,
                subfiletype=1 if level else 0,
                **options,
            )
    return sizes


def grid_truth(
    width: int,
    height: int,
    cell: float,
    regions: Sequence[Region] = DEFAULT_REGIONS,
    samples: int = 8,
) -> np.ndarray:
    """The majority class of each ``cell x cell`` level-0 pixel cell of the slide's grid
    (rows, columns), -1 where glass is the majority."""
    rows, cols = int(height // cell), int(width // cell)
    offsets = (np.arange(samples) + 0.5) / samples * cell
    ys = (np.arange(rows)[:, None] * cell + offsets[None, :]).reshape(-1)
    xs = (np.arange(cols)[:, None] * cell + offsets[None, :]).reshape(-1)
    labels = label_at(xs[None, :], ys[:, None], width, height, regions)
    labels = labels.reshape(rows, samples, cols, samples).transpose(0, 2, 1, 3)
    labels = labels.reshape(rows, cols, samples * samples).astype(np.int64) + 1
    counts = np.stack([(labels == k).sum(axis=2) for k in range(len(CLASSES) + 1)], axis=-1)
    return counts.argmax(axis=-1) - 1


def regions_geojson(
    width: int, height: int, regions: Sequence[Region] = DEFAULT_REGIONS, points: int = 96
) -> dict[str, object]:
    """The planted regions as a GeoJSON FeatureCollection of classified polygons (level-0
    pixels, QuPath's layout): the annotations a pathologist would draw."""
    features = []
    for region in regions:
        cx, cy = region.cx * width, region.cy * height
        rx, ry = region.rx * width, region.ry * height
        if region.shape == "ellipse":
            angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
            ring = [[cx + rx * math.cos(a), cy + ry * math.sin(a)] for a in angles]
        else:
            ring = [[cx - rx, cy - ry], [cx + rx, cy - ry], [cx + rx, cy + ry], [cx - rx, cy + ry]]
        ring.append(ring[0])
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"classification": {"name": region.label}},
            }
        )
    return {"type": "FeatureCollection", "features": features}
