"""What slide prediction writes: pictures over a thumbnail, CSV, GeoJSON, area tables."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mediscope.files import write_text_atomic

#: Class colours (RGB), in class order, repeated past the tenth.
PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)


def colour(index: int) -> tuple[int, int, int]:
    """The colour of class ``index``."""
    return PALETTE[index % len(PALETTE)]


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """Writes a CSV atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def write_geojson(path: Path, features: list[dict[str, Any]]) -> Path:
    """Writes a GeoJSON FeatureCollection (level-0 pixel coordinates, as QuPath reads)."""
    collection = {"type": "FeatureCollection", "features": features}
    return write_text_atomic(path, json.dumps(collection, separators=(",", ":")) + "\n")


def box_feature(
    box: Sequence[float] | np.ndarray, label: str, index: int, properties: dict[str, Any]
) -> dict[str, Any]:
    """A GeoJSON polygon of an ``x0, y0, x1, y1`` box with a QuPath classification."""
    x0, y0, x1, y1 = (round(float(v), 2) for v in box)
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {
            "objectType": "tile",
            "classification": {"name": label, "color": list(colour(index))},
            **properties,
        },
    }


def overlay_cells(
    view: np.ndarray,
    view_downsample: float,
    cells: np.ndarray,
    cell_downsample: float,
    classes: Sequence[str],
    *,
    alpha: float = 0.5,
    max_side: int = 1024,
) -> np.ndarray:
    """A picture of class cells over a view of the slide, with a legend.

    Args:
        view: ``H x W x 3`` RGB view of the slide.
        view_downsample: Level-0 pixels per view pixel.
        cells: ``(rows, cols)`` class indices, -1 where nothing is drawn.
        cell_downsample: Level-0 pixels per cell.
        classes: The class names (legend).
        alpha: Opacity of the colours.
        max_side: Longer side of the picture.
    """
    import cv2

    factor = min(1.0, max_side / max(view.shape[:2]))
    if factor < 1:
        size = (max(1, round(view.shape[1] * factor)), max(1, round(view.shape[0] * factor)))
        view = cv2.resize(view, size, interpolation=cv2.INTER_AREA)
        view_downsample /= factor
    height, width = view.shape[:2]
    rows, cols = cells.shape
    # the cells' extent in picture pixels
    span_w = min(width, round(cols * cell_downsample / view_downsample))
    span_h = min(height, round(rows * cell_downsample / view_downsample))
    picture = view.astype(np.float32)
    if span_w > 0 and span_h > 0:
        up = cv2.resize(
            cells.astype(np.int16), (span_w, span_h), interpolation=cv2.INTER_NEAREST
        ).astype(np.int64)
        colours = np.array([colour(i) for i in range(max(len(classes), 1))], dtype=np.float32)
        drawn = up >= 0
        region = picture[:span_h, :span_w]
        region[drawn] = (1 - alpha) * region[drawn] + alpha * colours[up[drawn]]
    return add_legend(picture.astype(np.uint8), classes)


def add_legend(picture: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """``picture`` with a white band below naming each class's colour."""
    import cv2

    width = picture.shape[1]
    scale, line = 0.5, 22
    entries, x, y = [], 8, 0
    for index, name in enumerate(classes):
        (text_w, _), _ = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        need = 14 + 6 + text_w + 16
        if x + need > width and x > 8:
            x, y = 8, y + line
        entries.append((index, name, x, y))
        x += need
    band = np.full((y + line + 6, width, 3), 255, dtype=np.uint8)
    for index, name, ex, ey in entries:
        top = ey + 6
        cv2.rectangle(band, (ex, top), (ex + 14, top + 14), colour(index), -1)
        cv2.putText(
            band,
            name,
            (ex + 20, top + 12),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return np.concatenate([picture, band], axis=0)


def area_rows(
    classes: Sequence[str], counts: Sequence[int], unit_mm2: float | None
) -> list[list[Any]]:
    """Rows ``class, units, area_mm2, percent`` of a class count table (percent of the
    counted total; the area blank without a resolution)."""
    total = sum(counts) or 1
    rows = []
    for name, count in zip(classes, counts, strict=True):
        area = "" if unit_mm2 is None else round(count * unit_mm2, 6)
        rows.append([name, int(count), area, round(100.0 * count / total, 3)])
    return rows
