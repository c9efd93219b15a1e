"""Galleries of segmentations: the best and worst images (image / ground truth /
prediction). Class colours, mask PNGs and overlays are in
:mod:`mediscope.inference.pictures`.

Every file is written atomically: a crash or a bad input never leaves half a PNG behind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.patches import Patch

from mediscope.files import write_with
from mediscope.inference.pictures import class_tags, overlay, tag_regions, to_rgb
from mediscope.reports.plotting import plt

#: Gallery geometry, in inches: the height of one row and of the header (title, legend).
ROW_HEIGHT = 2.5
HEADER_HEIGHT = 0.75


@dataclass
class GalleryItem:
    """One gallery row.

    Attributes:
        image: ``(H, W, 3)`` (or grey) uint8 image at its own size.
        target: ``(H, W)`` true class indices, or None when there is no ground truth.
        pred: ``(H, W)`` predicted class indices.
        title: The sample's id.
        score: Its score (Dice), or None.
    """

    image: np.ndarray
    target: np.ndarray | None
    pred: np.ndarray
    title: str
    score: float | None = None


def best_and_worst(scores: Sequence[tuple[str, float]], k: int) -> tuple[list[str], list[str]]:
    """Ids of the ``k`` highest and the ``k`` lowest scores.

    Ties are broken by id (ascending in both lists), so the choice is deterministic.
    Samples without a score (NaN) are left out of both. With fewer than ``k`` samples,
    both lists hold all of them.

    Returns:
        (best ids, highest first; worst ids, lowest first).
    """
    scored = [(str(i), float(s)) for i, s in scores if not math.isnan(float(s))]
    if k <= 0:
        return [], []
    best = sorted(scored, key=lambda item: (-item[1], item[0]))[:k]
    worst = sorted(scored, key=lambda item: (item[1], item[0]))[:k]
    return [i for i, _ in best], [i for i, _ in worst]


def write_gallery(
    path: str | Path,
    items: Sequence[GalleryItem],
    *,
    colors: np.ndarray,
    class_names: Sequence[str],
    title: str,
    score_name: str = "Dice",
    dpi: int = 100,
) -> Path:
    """A PNG grid: one row per item, panels image / ground truth / prediction.

    Each row is titled with the sample's id and score; the header holds ``title`` and a
    legend of the class colours. Rows are :data:`ROW_HEIGHT` inches high at ``dpi``, and
    the figure has a fixed size (no tight cropping), so its pixel size is
    ``(3 * panel width + margins, HEADER_HEIGHT + rows * ROW_HEIGHT) * dpi``.

    Args:
        path: The PNG to write.
        items: The rows, in order.
        colors: ``(K, 3)`` uint8 class colours.
        class_names: Class names, background first.
        title: The figure's title.
        score_name: What the score is, for the row titles.
        dpi: Pixels per inch.

    Returns:
        ``path``.
    """
    colors = np.asarray(colors, dtype=np.uint8)
    aspect = max((item.image.shape[1] / item.image.shape[0] for item in items), default=1.0)
    panel = ROW_HEIGHT * min(max(aspect, 0.6), 2.5)  # very wide or tall images get a cap
    width = 3 * panel + 0.3
    height = HEADER_HEIGHT + ROW_HEIGHT * max(len(items), 1)
    # padding around every row, so that a row's title stays clear of the row above
    layout = ConstrainedLayoutEngine(h_pad=0.1)
    fig = plt.figure(figsize=(width, height), dpi=dpi, layout=layout)
    parts = fig.subfigures(
        2, 1, squeeze=False, height_ratios=[HEADER_HEIGHT, height - HEADER_HEIGHT]
    )
    header, body = parts[0, 0], parts[1, 0]
    tags = class_tags(class_names)
    _header(header, title, colors, class_names, tags)
    if items:
        # one subfigure per row, so each row gets its own title above its three panels
        rows = body.subfigures(len(items), 1, squeeze=False)[:, 0]
        for row, item in zip(rows, items, strict=True):
            _row(row, item, colors, tags, score_name, round((ROW_HEIGHT - 0.45) * dpi))
    else:
        body.text(0.5, 0.5, "no images", ha="center", va="center", fontsize=10)
    try:
        return write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    finally:
        plt.close(fig)


def _header(
    fig: Any, title: str, colors: np.ndarray, class_names: Sequence[str], tags: Sequence[str]
) -> None:
    fig.suptitle(title, fontsize=11, fontweight="bold")
    handles = [
        Patch(
            facecolor=colors[i] / 255.0,
            edgecolor="black",
            linewidth=0.5,
            label=name if tags[i] == name else f"{name} ({tags[i]})",
        )
        for i, name in enumerate(class_names)
        if 0 < i < len(colors)
    ]
    if handles:
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=min(len(handles), 6),
            fontsize=9,
            frameon=False,
            title="fill, outline and tag per class; background unmarked",
            title_fontsize=8,
        )


def _row(
    fig: Any,
    item: GalleryItem,
    colors: np.ndarray,
    tags: Sequence[str],
    score_name: str,
    pixels: int,
) -> None:
    image, target, pred = _display_size(item, pixels)
    label = _shorten(item.title)
    if item.score is not None:
        label = f"{label}   {score_name} {item.score:.3f}"
    fig.suptitle(label, fontsize=9)

    def drawn(mask: np.ndarray) -> np.ndarray:
        return tag_regions(overlay(image, mask, colors, thickness=2), mask, colors, tags)

    axes = fig.subplots(1, 3)
    panels = [
        (image, "image"),
        (None if target is None else drawn(target), "ground truth"),
        (drawn(pred), "prediction"),
    ]
    for ax, (picture, name) in zip(axes, panels, strict=True):
        ax.set_title(name, fontsize=8, pad=2)
        ax.set_xticks([])
        ax.set_yticks([])
        if picture is None:
            ax.imshow(image, alpha=0.3)
            ax.text(0.5, 0.5, "no ground truth", transform=ax.transAxes, ha="center", va="center")
        else:
            ax.imshow(picture, interpolation="nearest")


def _display_size(
    item: GalleryItem, pixels: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Image and masks resized to about ``pixels`` high, so that contours drawn on them are
    1-2 px on screen whatever the image's own size (a 3000 px photograph or a 32 px crop)."""
    image = to_rgb(item.image)
    height, width = image.shape[:2]
    scale = pixels / height
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    shrink = scale < 1

    def resize_mask(mask: np.ndarray | None) -> np.ndarray | None:
        if mask is None:
            return None
        mask = np.asarray(mask)
        if mask.shape != (height, width):
            raise ValueError(f"mask {mask.shape} and image {(height, width)} differ in size")
        return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)

    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_NEAREST)
    pred = resize_mask(item.pred)
    assert pred is not None
    return resized, resize_mask(item.target), pred


def _shorten(text: str, limit: int = 70) -> str:
    if len(text) <= limit:
        return text
    half = (limit - 1) // 2
    return f"{text[:half]}…{text[-half:]}"
