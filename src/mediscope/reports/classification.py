"""Classification outputs: confusion matrix (CSV and PNG), ROC and PR curves, reliability
diagram, results.npz."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    roc_curve,
)

from mediscope.files import write_text_atomic, write_with
from mediscope.metrics.calibration import reliability
from mediscope.reports.plotting import plt, save_figure


def confusion_table(labels: np.ndarray, preds: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Counts, rows = true class, columns = predicted class."""
    cm = confusion_matrix(labels, preds, labels=list(range(len(classes))))
    frame = pd.DataFrame(cm, index=classes, columns=classes)
    frame.index.name = "true \\ predicted"
    return frame


def plot_confusion(table: pd.DataFrame, out: Path, *, title: str) -> Path:
    """Two panels: counts, and rows normalised to 1 (sensitivity on the diagonal)."""
    counts = table.to_numpy()
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts, dtype=float), where=rows > 0)
    n = len(table)
    size = max(4.0, 0.7 * n + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, size), layout="constrained")
    panels = ((counts, "counts", "d"), (normalised, "row-normalised", ".2f"))
    for ax, (values, name, fmt) in zip(axes, panels, strict=True):
        ax.imshow(values, cmap="Blues", vmin=0)
        ax.set_xticks(range(n), table.columns, rotation=45, ha="right")
        ax.set_yticks(range(n), table.index)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
        top = values.max() if values.size else 0
        for i in range(n):
            for j in range(n):
                colour = "white" if top and values[i, j] > 0.6 * top else "black"
                ax.text(j, i, format(values[i, j], fmt), ha="center", va="center", color=colour)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, out)


def plot_roc(
    labels: np.ndarray, probs: np.ndarray, classes: list[str], out: Path, *, title: str
) -> Path:
    """One-vs-rest ROC curve per class (classes absent from ``labels`` are skipped)."""
    from sklearn.metrics import auc

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for c, name in enumerate(classes):
        positives = labels == c
        if positives.all() or not positives.any():
            continue
        fpr, tpr, _ = roc_curve(positives, probs[:, c])
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, out)


def plot_pr(
    labels: np.ndarray, probs: np.ndarray, classes: list[str], out: Path, *, title: str
) -> Path:
    """One-vs-rest precision-recall curve per class with its average precision."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for c, name in enumerate(classes):
        positives = labels == c
        if positives.all() or not positives.any():
            continue
        precision, recall, _ = precision_recall_curve(positives, probs[:, c])
        ap = average_precision_score(positives, probs[:, c])
        line = ax.step(recall, precision, where="post", label=f"{name} (AP {ap:.3f})")
        prevalence = positives.mean()
        ax.axhline(prevalence, color=line[0].get_color(), lw=0.8, ls=":")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision")
    ax.set_title(title + "\n(dotted: prevalence, the precision of chance)", fontsize=10)
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, out)


def plot_reliability(labels: np.ndarray, probs: np.ndarray, out: Path, *, title: str) -> Path:
    """Reliability diagram of the top-1 probability, with the ECE and a histogram."""
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(5.5, 6), height_ratios=[3, 1], sharex=True, layout="constrained"
    )
    _reliability_panel(ax, hist, labels, probs, title=title)
    return save_figure(fig, out)


def plot_calibration(
    labels: np.ndarray, raw: np.ndarray, calibrated: np.ndarray, out: Path, *, title: str
) -> Path:
    """Reliability diagrams before and after calibration, side by side, with their ECE."""
    fig, axes = plt.subplots(
        2, 2, figsize=(10, 6), height_ratios=[3, 1], sharex=True, layout="constrained"
    )
    _reliability_panel(axes[0, 0], axes[1, 0], labels, raw, title="before calibration")
    _reliability_panel(axes[0, 1], axes[1, 1], labels, calibrated, title="after calibration")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, out)


def _reliability_panel(
    ax: Any, hist: Any, labels: np.ndarray, probs: np.ndarray, *, title: str
) -> None:
    bins = reliability(labels, probs)
    centres = (bins.edges[:-1] + bins.edges[1:]) / 2
    width = bins.edges[1] - bins.edges[0]
    used = bins.counts > 0
    ax.bar(
        centres[used],
        bins.accuracy[used],
        width=width,
        edgecolor="black",
        lw=0.5,
        color="#4c72b0",
        label="accuracy",
    )
    gap_low = np.minimum(bins.accuracy[used], bins.confidence[used])
    gap = np.abs(bins.accuracy[used] - bins.confidence[used])
    ax.bar(
        centres[used],
        gap,
        bottom=gap_low,
        width=width,
        color="#dd8452",
        alpha=0.5,
        hatch="//",
        edgecolor="#dd8452",
        lw=0,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="calibrated")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(
        f"{title}\nECE {bins.ece:.3f} ({len(centres)} bins, {len(labels)} images)", fontsize=10
    )
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    hist.bar(centres, bins.counts, width=width, color="grey", edgecolor="black", lw=0.5)
    hist.set_xlabel("top-1 probability (confidence)")
    hist.set_ylabel("images")
    hist.set_xlim(0, 1)


def save_results(
    out: Path, labels: np.ndarray, probs: np.ndarray, paths: list[str], classes: list[str]
) -> Path:
    """``results.npz`` with labels, probabilities, predictions, paths and class names."""

    def write(tmp: Path) -> None:
        with tmp.open("wb") as file:
            np.savez(
                file,
                labels=labels,
                probs=probs.astype(np.float32),
                preds=probs.argmax(axis=1),
                paths=np.array(paths),
                classes=np.array(classes),
            )

    return write_with(out, write)


def write_classification_outputs(
    run_dir: Path,
    split: str,
    labels: np.ndarray,
    probs: np.ndarray,
    paths: list[str],
    classes: list[str],
) -> dict[str, Path]:
    """Confusion matrix CSV + PNG, ROC, PR and reliability PNGs and results.npz of a split."""
    table = confusion_table(labels, probs.argmax(axis=1), classes)
    csv = write_text_atomic(run_dir / f"{split}_confusion_matrix.csv", table.to_csv())
    plots = run_dir / "plots"
    return {
        "confusion_csv": csv,
        "confusion_png": plot_confusion(
            table, plots / f"{split}_confusion_matrix.png", title=f"{split}: confusion matrix"
        ),
        "roc_png": plot_roc(
            labels, probs, classes, plots / f"{split}_roc.png", title=f"{split}: ROC"
        ),
        "pr_png": plot_pr(
            labels, probs, classes, plots / f"{split}_pr.png", title=f"{split}: precision-recall"
        ),
        "reliability_png": plot_reliability(
            labels, probs, plots / f"{split}_reliability.png", title=f"{split}: reliability"
        ),
        "results": save_results(run_dir / f"{split}_results.npz", labels, probs, paths, classes),
    }
