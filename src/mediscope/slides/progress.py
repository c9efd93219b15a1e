"""Resumable work on a slide: a state file of finished items, and a progress bar."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from mediscope.files import write_with

STATE = "state.npz"


class State:
    """Arrays saved now and then under ``folder``, with the key of the work they belong
    to; a rerun with the same key picks them up, another key starts afresh.

    Args:
        folder: Where the state file lives (created).
        key: What the work is (slide, model, grid); compared as JSON.
        every: Seconds between saves made by :meth:`maybe_save`.
    """

    def __init__(self, folder: Path, key: dict[str, Any], *, every: float = 10.0) -> None:
        self.folder = folder
        self.key = json.dumps(key, sort_keys=True, default=str)
        self.every = every
        self._saved = time.monotonic()
        self.arrays: dict[str, np.ndarray] = {}

    @property
    def path(self) -> Path:
        """The state file."""
        return self.folder / STATE

    def load(self) -> dict[str, np.ndarray] | None:
        """The saved arrays of the same work, or None."""
        if not self.path.is_file():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as data:
                if str(data["key"]) != self.key:
                    return None
                return {name: data[name] for name in data.files if name != "key"}
        except (OSError, ValueError, KeyError):  # a damaged state: start again
            return None

    def save(self) -> None:
        """Writes :attr:`arrays` (atomically)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        arrays = {**self.arrays, "key": np.array(self.key)}

        def write(tmp: Path) -> None:
            with tmp.open("wb") as handle:
                np.savez(handle, **arrays)  # type: ignore[arg-type]

        write_with(self.path, write)
        self._saved = time.monotonic()

    def maybe_save(self) -> None:
        """Saves when :attr:`every` seconds have passed since the last save."""
        if time.monotonic() - self._saved >= self.every:
            self.save()


class Bar:
    """A progress bar with done / total and the time left (rich), or nothing.

    Args:
        label: What is counted (``patches``, ``tiles``).
        total: Items in all.
        done: Items already done (a resumed run).
        show: Whether to draw it.
    """

    def __init__(self, label: str, total: int, done: int = 0, *, show: bool = True) -> None:
        self._progress: Any = None
        if not show:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(label, total=total, completed=done)

    def advance(self, count: int) -> None:
        """Counts ``count`` more items done."""
        if self._progress is not None:
            self._progress.advance(self._task, count)

    def close(self) -> None:
        """Removes the bar."""
        if self._progress is not None:
            self._progress.stop()
