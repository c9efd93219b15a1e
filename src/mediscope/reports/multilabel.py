"""Multi-label plots: ROC and precision-recall per label, reliability of the label
probabilities (all image-label pairs) before and after calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

from mediscope.metrics.calibration import ECE_BINS
from mediscope.metrics.multilabel import binary_ece
from mediscope.reports.plotting import plt, save_figure


def plot_label_curves(
    targets: np.ndarray, probs: np.ndarray, classes: list[str], plots: Path, *, split: str
) -> dict[str, Path]:
    """``<split>_roc.png`` and ``<split>_pr.png``: one curve per label (labels with both
    positives and negatives)."""
    roc_fig, roc_ax = plt.subplots(figsize=(5.5, 5))
    pr_fig, pr_ax = plt.subplots(figsize=(5.5, 5))
    for c, name in enumerate(classes):
        y = targets[:, c].astype(bool)
        if y.all() or not y.any():
            continue
        fpr, tpr, _ = roc_curve(y, probs[:, c])
        roc_ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
        precision, recall, _ = precision_recall_curve(y, probs[:, c])
        ap = average_precision_score(y, probs[:, c])
        pr_ax.step(recall, precision, where="post", label=f"{name} (AP {ap:.3f})")
    roc_ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    roc_ax.set_xlabel("1 - specificity")
    roc_ax.set_ylabel("sensitivity")
    roc_ax.set_title(f"{split}: ROC per label", fontsize=10)
    pr_ax.set_xlabel("recall (sensitivity)")
    pr_ax.set_ylabel("precision")
    pr_ax.set_title(f"{split}: precision-recall per label", fontsize=10)
    for ax in (roc_ax, pr_ax):
        ax.legend(loc="best", fontsize=7)
        ax.grid(alpha=0.3)
    return {
        "roc_png": save_figure(roc_fig, plots / f"{split}_roc.png"),
        "pr_png": save_figure(pr_fig, plots / f"{split}_pr.png"),
    }


def _panel(ax: Any, targets: np.ndarray, probs: np.ndarray, title: str) -> None:
    t, p = targets.ravel().astype(float), probs.ravel().astype(float)
    index = np.clip(np.ceil(p * ECE_BINS).astype(int) - 1, 0, ECE_BINS - 1)
    counts = np.bincount(index, minlength=ECE_BINS)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(index, weights=p, minlength=ECE_BINS) / counts
        freq = np.bincount(index, weights=t, minlength=ECE_BINS) / counts
    used = counts > 0
    ax.plot(conf[used], freq[used], "o-", color="#4c72b0", label="labels")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="calibrated")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("label probability")
    ax.set_ylabel("share present")
    ax.set_title(f"{title}: ECE {binary_ece(targets, probs):.3f}", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)


def plot_label_calibration(
    targets: np.ndarray, raw: np.ndarray, calibrated: np.ndarray, out: Path, *, title: str
) -> Path:
    """Reliability of the label probabilities before and after calibration."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), layout="constrained")
    _panel(axes[0], targets, raw, "before calibration")
    _panel(axes[1], targets, calibrated, "after calibration")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, out)
