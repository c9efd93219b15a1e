"""Detection reports: precision-recall curves and galleries of the best and worst images.

The prediction files and their readers are in :mod:`mediscope.runtime.detection_files`,
boxes are drawn by :func:`mediscope.inference.pictures.draw_detections`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mediscope.inference.pictures import class_colors, class_tags
from mediscope.metrics.detection import DetectionReport
from mediscope.reports.plotting import plt, save_figure

# -- pictures ---------------------------------------------------------------------------


def plot_pr_curves(report: DetectionReport, path: str | Path, *, title: str | None = None) -> Path:
    """Precision-recall curves at IoU 0.5, one per class with its AP in the legend.

    Each curve is the interpolated precision (the envelope whose 101-point mean is the
    AP50) against recall, over the detections sorted by score; the legend gives AP at
    IoU 0.5 and COCO's AP (0.5:0.95) and the number of true boxes. Classes without
    ground truth are listed as such.

    Args:
        report: The evaluation (:func:`mediscope.metrics.detection.evaluate_detections`).
        path: The PNG to write.
        title: The figure's title; default: the mAP values.

    Returns:
        ``path``.
    """
    metrics = report.metrics
    colours = class_colors(len(report.classes) + 1)[1:] / 255.0
    fig, ax = plt.subplots(figsize=(6.4, 5.2), layout="constrained")
    for k, name in enumerate(report.classes):
        curve = report.curves.get(name)
        if curve is None:
            ax.plot([], [], color="0.6", ls=":", label=f"{name}: no ground truth")
            continue
        # dark-outlined lines, so that light class colours (yellow) stay visible on white
        recall = np.concatenate([[0.0], curve.recall])
        precision = np.concatenate(
            [[curve.precision[0] if len(curve.precision) else 0.0], curve.precision]
        )
        label = (
            f"{name}: AP50 {metrics[f'ap50/{name}']:.3f}, AP {metrics[f'ap/{name}']:.3f} "
            f"(n={int(metrics[f'gt/{name}'])})"
        )
        ax.step(recall, precision, where="post", color="0.15", lw=3.2)
        ax.step(recall, precision, where="post", color=colours[k], lw=2.0, label=label)
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.03)
    ax.set_xlabel("recall (share of true boxes found)")
    ax.set_ylabel("precision (share of boxes that are right)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    if title is None:
        title = (
            f"precision-recall at IoU 0.5: mAP50 {_fmt(metrics.get('map_50'))}, "
            f"mAP {_fmt(metrics.get('map'))}"
        )
    ax.set_title(title, fontsize=10)
    return save_figure(fig, Path(path))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


# -- prediction files -------------------------------------------------------------------


@dataclass
class DetectionGalleryItem:
    """One gallery panel: the image drawn with its boxes, and what to say about it."""

    picture: np.ndarray  # H x W x 3 uint8, ground truth and detections drawn
    title: str
    score: float  # F1 of the image's detections at the counting threshold
    found: int
    labelled: int


def write_detection_gallery(
    path: str | Path,
    items: Sequence[DetectionGalleryItem],
    *,
    title: str,
    columns: int = 4,
    panel: float = 3.6,
    classes: Sequence[str] | None = None,
) -> Path:
    """A PNG grid of drawn images, each titled with its id, F1 and counts.

    With ``classes``, a legend under the images (outside them) names the box
    colours, the class initials of crowded images and the ground truth's outline.
    """
    from matplotlib.layout_engine import ConstrainedLayoutEngine
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.patheffects import withStroke

    n = max(1, len(items))
    columns = min(columns, n)
    rows = (n + columns - 1) // columns
    # room between a row's images and the next row's two-line titles
    layout = ConstrainedLayoutEngine(h_pad=0.12, hspace=0.04)
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(panel * columns, panel * rows + 1.0),
        squeeze=False,
        layout=layout,
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, item in zip(axes.flat, items, strict=False):
        ax.imshow(_thumbnail(item.picture, 900))
        name = item.title if len(item.title) <= 40 else "…" + item.title[-39:]
        ax.set_title(
            f"{name}\nF1 {item.score:.2f}: {item.found} found, {item.labelled} labelled",
            fontsize=10,
        )
    if not items:
        axes[0, 0].text(0.5, 0.5, "no images", ha="center", va="center")
    fig.suptitle(title, fontsize=12)
    if classes:
        colours = class_colors(len(classes) + 1)[1:] / 255.0
        tags = class_tags(classes)
        handles: list[Patch | Line2D] = [
            Patch(facecolor=c, edgecolor="black", linewidth=0.5, label=f"{name} ({tag})")
            for name, tag, c in zip(classes, tags, colours, strict=True)
        ]
        handles.append(
            Line2D(
                [],
                [],
                color="white",
                linewidth=2,
                path_effects=[withStroke(linewidth=4.5, foreground="black")],
                label="ground truth",
            )
        )
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncol=min(len(handles), 6),
            fontsize=9,
            frameon=False,
        )
    return save_figure(fig, Path(path))


def _thumbnail(image: np.ndarray, longest: int) -> np.ndarray:
    """``image`` shrunk (area averaging) so its longer side is at most ``longest``."""
    import cv2

    height, width = image.shape[:2]
    scale = longest / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
