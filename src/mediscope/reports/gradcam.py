"""Grad-CAM heatmaps of a classifier for a sample of images (the ``grad-cam`` library).

The target layer is found by running the model once: the last module whose output is
still a spatial feature map (4-D, more than one pixel) before pooling. That is the last
convolutional stage of every classifier mediscope builds (timm, VGG, U-Net encoder,
EfficientNet-Lite, the small CNN).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mediscope.reports.plotting import plt, save_figure


@dataclass
class CamItem:
    """One image, its heatmap and what the model said about it."""

    image: np.ndarray  # H x W x 3, 0..1
    heatmap: np.ndarray  # H x W, 0..1
    title: str
    truth: int
    pred: int
    prob: float


def choose_images(labels: np.ndarray, preds: np.ndarray, count: int) -> list[int]:
    """Up to ``count`` image indices, classes in turn, a wrong prediction first in each.

    Mistakes are what a reader wants to see explained, but right predictions show what
    the model looks at when it works; each class gets its share.
    """
    if count <= 0 or len(labels) == 0:
        return []
    queues: list[list[int]] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        wrong = [int(i) for i in members if preds[i] != c]
        right = [int(i) for i in members if preds[i] == c]
        queues.append(_interleave(wrong, right))
    chosen: list[int] = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return chosen


def _interleave(first: list[int], second: list[int]) -> list[int]:
    out = []
    for i in range(max(len(first), len(second))):
        out += first[i : i + 1] + second[i : i + 1]
    return out


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, weight: float = 0.55) -> np.ndarray:
    """``image`` (H x W x 3, 0..1) blended with the jet-coloured ``heatmap``."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = np.clip(image, 0, 1).astype(np.float32)
    return show_cam_on_image(rgb, heatmap, use_rgb=True, image_weight=weight)


def write_gradcam_grid(
    path: Path, items: Sequence[CamItem], class_names: Sequence[str], *, title: str
) -> Path | None:
    """A grid of image / heatmap pairs, titled with truth, prediction and probability."""
    if not items:
        return None
    columns = min(3, len(items))
    rows = (len(items) + columns - 1) // columns
    fig, axes = plt.subplots(
        rows, 2 * columns, figsize=(2.6 * 2 * columns, 3.2 * rows), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for i, item in enumerate(items):
        row, col = divmod(i, columns)
        right = item.truth == item.pred
        colour = "#1a7f37" if right else "#c62828"
        axes[row, 2 * col].imshow(np.clip(item.image, 0, 1))
        axes[row, 2 * col].set_title(_shorten(item.title), fontsize=9)
        axes[row, 2 * col + 1].imshow(overlay_heatmap(item.image, item.heatmap))
        verdict = "right" if right else "wrong"
        axes[row, 2 * col + 1].set_title(
            f"true {class_names[item.truth]}\npred {class_names[item.pred]} "
            f"{item.prob:.2f} ({verdict})",
            fontsize=9,
            color=colour,
        )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _shorten(text: str, limit: int = 34) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]
