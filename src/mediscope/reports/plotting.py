"""Matplotlib set-up shared by the reports: a file backend, no fonts to fetch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a display

import matplotlib.pyplot as plt

from mediscope.files import write_with


def save_figure(fig: Any, path: Path) -> Path:
    """Saves ``fig`` as a PNG atomically and closes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


__all__ = ["plt", "save_figure"]
