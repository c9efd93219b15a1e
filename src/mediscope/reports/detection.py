"""Detection reports: precision-recall curves, the detection confusion matrix, the error
breakdown, and galleries of the best and worst images.

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
from mediscope.metrics.detection_errors import DETECTION_ERRORS, KINDS, DetectionErrors
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


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def plot_detection_confusion(
    errors: DetectionErrors, path: str | Path, *, title: str | None = None
) -> Path:
    """The detection confusion matrix at the counting threshold, as a heatmap of counts.

    Rows are the true classes and ``background`` (detections of no object), columns the
    predicted classes and ``missed`` (objects not found); the colour is the share of the
    row, so a row's colours read as "where did this class's objects go".
    """
    counts = errors.confusion
    names = errors.classes
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    n = len(counts)
    size = max(4.2, 0.75 * n + 2.6)
    fig, ax = plt.subplots(figsize=(size + 0.8, size), layout="constrained")
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), [*names, "missed"], rotation=45, ha="right")
    ax.set_yticks(range(n), [*names, "background"])
    ax.set_xlabel("predicted class (missed: no detection)")
    ax.set_ylabel("true class (background: no object)")
    for i in range(n):
        for j in range(n):
            if i == n - 1 and j == n - 1:
                ax.text(j, i, "–", ha="center", va="center", color="0.5")
                continue
            colour = "white" if shares[i, j] > 0.6 else "black"
            ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", color=colour)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the row")
    if title is None:
        title = f"detection confusion at score ≥ {errors.score_threshold:.2f}, IoU 0.5"
    ax.set_title(title, fontsize=10)
    return save_figure(fig, Path(path))


#: Bar colours of the error kinds.
_ERROR_COLOURS = {
    "localisation": "#dd8452",
    "classification": "#c44e52",
    "duplicate": "#8172b3",
    "background": "#937860",
    "both": "#da8bc3",
    "missed": "#4c72b0",
}


def plot_error_breakdown(
    errors: DetectionErrors, path: str | Path, *, title: str | None = None
) -> Path:
    """Bars of the error kinds (TIDE's) at the counting threshold, with their counts.

    The five detection errors are shares of the kept detections, ``missed`` a share of
    the true objects; each bar is labelled with its count.
    """
    totals = dict(zip(KINDS, errors.kinds.sum(axis=0).tolist(), strict=True))
    kinds = [*DETECTION_ERRORS, "missed"]
    shares = [
        totals[k] / totals["objects" if k == "missed" else "detections"]
        if totals["objects" if k == "missed" else "detections"]
        else 0.0
        for k in kinds
    ]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    y = np.arange(len(kinds))[::-1]
    ax.barh(y, shares, color=[_ERROR_COLOURS[k] for k in kinds])
    top = max(max(shares), 0.05)
    for yi, kind, share in zip(y, kinds, shares, strict=True):
        ax.text(share + 0.01 * top, yi, f"{totals[kind]} ({share:.1%})", va="center", fontsize=9)
    labels = [f"{k} (of objects)" if k == "missed" else k for k in kinds]
    ax.set_yticks(y, labels)
    ax.set_xlim(0, top * 1.3)
    ticks = [t for t in ax.get_xticks() if 0 <= t <= min(top * 1.3, 1.0) + 1e-9]
    ax.set_xticks(ticks, [f"{t:.0%}" for t in ticks])
    ax.set_xlabel("share of the kept detections (missed: of the true objects)")
    ax.grid(axis="x", alpha=0.3)
    if title is None:
        title = (
            f"errors at score ≥ {errors.score_threshold:.2f}: "
            f"{_plural(totals['detections'], 'detection')} ({totals['correct']} correct), "
            f"{_plural(totals['objects'], 'object')}"
        )
    ax.set_title(title, fontsize=10)
    return save_figure(fig, Path(path))


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
