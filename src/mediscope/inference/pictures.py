"""Pictures of predictions: class colours, palette mask PNGs, overlays with contours,
probability maps, and boxes drawn on images with their class and score.

The drawing itself (colours, overlays, boxes) lives in :mod:`mediscope.runtime.drawing`,
free of torch and matplotlib, and is re-exported here; this module writes the files.

Prediction writes them beside its files and the reports show them; every file is
written atomically: a crash or a bad input never leaves half a PNG behind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mediscope.errors import DataError
from mediscope.runtime.drawing import (
    DENSE,
    OKABE_ITO,
    TAB20,
    UNLABELLED,
    class_colors,
    class_tags,
    contour_thickness,
    draw_detections,
    draw_truth_boxes,
    font_size,
    labelled_overlay,
    legend_band,
    line_width,
    overlay,
    tag_regions,
    to_rgb,
)
from mediscope.runtime.outputs import save_mask_png, save_probability_map

__all__ = [
    "DENSE",
    "OKABE_ITO",
    "TAB20",
    "UNLABELLED",
    "class_colors",
    "class_tags",
    "contour_thickness",
    "draw_detections",
    "draw_truth_boxes",
    "font_size",
    "labelled_overlay",
    "legend_band",
    "line_width",
    "load_probability_map",
    "overlay",
    "save_mask_png",
    "save_probability_map",
    "tag_regions",
    "to_rgb",
]


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
