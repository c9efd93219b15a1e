"""Byte counts: the read size, human-readable sizes and the free disk space check."""

from __future__ import annotations

import shutil
from pathlib import Path

from mediscope.errors import DownloadError

CHUNK = 1 << 20


def check_space(folder: Path, needed: int) -> None:
    """Raises DownloadError when ``folder``'s disk has fewer than ``needed`` bytes free."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DownloadError(
            f"not enough disk space in {folder}: {human(needed)} needed, {human(free)} free",
            hint="free some space or choose another DST",
        )


def size_note(size: int | None) -> str:
    """`` (11.7 GB)`` for a known size, ``""`` otherwise."""
    return f" ({human(size)})" if size else ""


def human(size: float) -> str:
    """Formats a byte count as ``"11.7 GB"``."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def human_size(size: int | None) -> str:
    """Formats a byte count as ``"11.7 GB"``; None gives ``"?"``."""
    return "?" if size is None else human(size)
