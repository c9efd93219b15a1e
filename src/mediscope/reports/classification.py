"""Classification outputs: confusion matrix (CSV and PNG), ROC curves, results.npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, roc_curve

from mediscope.files import write_text_atomic, write_with
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
    """Confusion matrix CSV + PNG, ROC PNG and results.npz of one split."""
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
        "results": save_results(run_dir / f"{split}_results.npz", labels, probs, paths, classes),
    }
