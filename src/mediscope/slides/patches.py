"""Patch sets from slides: tissue-only patches at a resolution, labelled by annotations.

``mediscope data tile SLIDE... DST --mpp 0.5 --size 224`` cuts each slide's tissue into
patches (an NCT-CRC-HE-style set from one's own slides). With a GeoJSON of annotated
regions (QuPath's export: polygons with a ``classification`` name) each patch goes into
the folder of the class covering most of it, making an imagefolder dataset.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mediscope.errors import DataError
from mediscope.slides.reader import Resolution, Slide
from mediscope.slides.tissue import tissue_mask, write_png

#: Samples per patch side when checking which annotation covers a patch.
SAMPLES = 8


@dataclass
class TileSummary:
    """What :func:`tile_slides` wrote.

    Attributes:
        slides: Slides cut.
        patches: Patches written.
        classes: Patches per class folder (the slide's name without annotations).
        skipped: Tissue patches outside any annotated region.
        root: The output folder.
    """

    slides: int = 0
    patches: int = 0
    classes: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    root: Path = Path()


def read_annotations(path: Path) -> list[tuple[str, list[np.ndarray]]]:
    """The labelled polygons of a GeoJSON file: ``(class, [ring, ...])`` per feature
    (level-0 pixels; holes are not subtracted).

    Raises:
        DataError: naming the file when it is not GeoJSON or a feature has no class.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"not a GeoJSON file ({exc})", where=path) from None
    features = data.get("features", []) if isinstance(data, dict) else data
    shapes = []
    for number, feature in enumerate(features):
        props = feature.get("properties") or {}
        label = (props.get("classification") or {}).get("name") or props.get("label")
        label = label or props.get("name")
        if not label:
            raise DataError(
                f"feature {number} has no class",
                where=path,
                hint="give each region properties.classification.name (QuPath) or label",
            )
        geometry = feature.get("geometry") or {}
        kind, coords = geometry.get("type"), geometry.get("coordinates", [])
        polygons = [coords] if kind == "Polygon" else coords if kind == "MultiPolygon" else []
        rings = [np.asarray(polygon[0], dtype=np.float64) for polygon in polygons if polygon]
        if rings:
            shapes.append((str(label), rings))
    return shapes


def _label_grid(
    shapes: list[tuple[str, list[np.ndarray]]],
    classes: list[str],
    resolution: Resolution,
    grid: tuple[int, int],
    stride: int,
) -> np.ndarray:
    """The class index covering the most of each grid cell (-1: none), by rasterising
    the polygons at ``SAMPLES`` points per cell side."""
    import cv2

    rows, cols = grid
    scale = SAMPLES / (stride * resolution.downsample)  # samples per level-0 pixel
    votes = np.zeros((len(classes) + 1, rows * SAMPLES, cols * SAMPLES), dtype=np.uint8)
    for label, rings in shapes:
        canvas = votes[classes.index(label) + 1]
        points = [np.round(ring * scale).astype(np.int32).reshape(-1, 1, 2) for ring in rings]
        cv2.fillPoly(canvas, points, 1)
    counts = votes.reshape(len(classes) + 1, rows, SAMPLES, cols, SAMPLES).sum(axis=(2, 4))
    counts[0] = SAMPLES * SAMPLES // 2  # a class must cover at least half the cell
    return np.asarray(counts.argmax(axis=0) - 1)


def tile_slides(
    slides: Sequence[Path],
    dst: Path,
    *,
    size: int = 224,
    mpp: float | None = None,
    level: int | None = None,
    stride: int | None = None,
    min_tissue: float = 0.5,
    annotations: Path | None = None,
    progress: bool = False,
) -> TileSummary:
    """Cuts the tissue of slides into ``size x size`` PNG patches at ``mpp``.

    Args:
        slides: The slides.
        dst: The output folder: ``<slide name>/`` per slide, or ``<class>/`` per class
            with ``annotations``.
        size: Patch side in pixels.
        mpp: Microns per pixel of the patches; None: ``level``.
        level: The pyramid level without ``mpp`` (None: 0).
        stride: Pixels between patches (default: ``size``, side by side).
        min_tissue: Share of a patch that must be tissue.
        annotations: A GeoJSON of classified regions (level-0 pixels), for all slides.
        progress: Draw a progress bar.

    Returns:
        What was written.
    """
    from mediscope.slides.progress import Bar

    step = int(stride or size)
    shapes = read_annotations(annotations) if annotations is not None else None
    classes = sorted({label for label, _ in shapes}) if shapes else []
    summary = TileSummary(root=dst)
    dst.mkdir(parents=True, exist_ok=True)
    for path in slides:
        with Slide(path) as slide:
            res = slide.resolution(mpp, level)
            mask, _ = tissue_mask(slide)
            keep = mask.window_fractions(res, (size, size), (step, step)) >= min_tissue
            labels = None
            if shapes is not None:
                labels = _label_grid(shapes, classes, res, keep.shape, step)
                summary.skipped += int((keep & (labels < 0)).sum())
                keep &= labels >= 0
            cells = np.argwhere(keep)
            bar = Bar(path.name, len(cells), show=progress)
            try:
                for r, c in cells:
                    x, y = int(c) * step, int(r) * step
                    folder = path.stem if labels is None else classes[int(labels[r, c])]
                    x0, y0 = round(x * res.downsample), round(y * res.downsample)
                    name = f"{path.stem}_x{x0}_y{y0}.png"
                    write_png(dst / folder / name, _patch(slide, res, x, y, size, dst / folder))
                    summary.classes[folder] += 1
                    summary.patches += 1
                    bar.advance(1)
            finally:
                bar.close()
        summary.slides += 1
    return summary


def _patch(slide: Slide, res: Resolution, x: int, y: int, size: int, folder: Path) -> Any:
    folder.mkdir(parents=True, exist_ok=True)
    return slide.read(res, x, y, size, size)
