"""Training curves from a run's ``metrics.csv``: loss and the main metric per epoch."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.ticker import MaxNLocator

from mediscope.reports.plotting import plt, save_figure


def epoch_table(metrics_csv: Path) -> pd.DataFrame:
    """One row per epoch: Lightning writes train and val values on separate rows."""
    frame = pd.read_csv(metrics_csv)
    frame = frame.dropna(subset=["epoch"])
    return frame.groupby("epoch").last().sort_index()


def plot_training_curves(metrics_csv: Path, out: Path, *, metric: str) -> Path | None:
    """Writes a two-panel PNG (loss; ``metric``), train against validation per epoch."""
    if not metrics_csv.is_file():
        return None
    table = epoch_table(metrics_csv)
    if table.empty:
        return None
    name = metric.split("/", 1)[-1]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for ax, key in zip(axes, ("loss", name), strict=True):
        for split, style in (("train", "-o"), ("val", "-s")):
            column = f"{split}/{key}"
            if column in table and table[column].notna().any():
                series = table[column].dropna()
                ax.plot(series.index, series.values, style, ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(key.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend()
    run = f"{metrics_csv.parent.parent.name}/{metrics_csv.parent.name}"
    fig.suptitle(f"training curves: {run}", fontsize=10)
    return save_figure(fig, out)
