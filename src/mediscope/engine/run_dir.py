"""Run directories: ``<run.dir>/<run.name>/<timestamp>/``, never overwritten."""

from __future__ import annotations

import os
import time
from pathlib import Path

from mediscope.errors import CheckpointError, RunDirError

CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
BEST = "best.ckpt"


def create_run_dir(base: Path, name: str, *, now: float | None = None) -> Path:
    """Creates a new, empty run directory; a suffix keeps it unique within a second."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    parent = base / name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"cannot create the run folder: {exc.strerror}", where=parent) from None
    if not os.access(parent, os.W_OK):
        raise RunDirError("the run folder is not writable", where=parent, hint="check run.dir")
    for attempt in range(1000):
        path = parent / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        (path / CHECKPOINTS).mkdir()
        return path
    raise RunDirError("too many runs in the same second", where=parent)


def latest_run(base: Path, name: str) -> Path:
    """The most recent run of ``name`` that has a ``last.ckpt``."""
    parent = base / name
    runs = sorted(
        (p for p in parent.glob("*") if (p / CHECKPOINTS / LAST).is_file()),
        key=lambda p: (p / CHECKPOINTS / LAST).stat().st_mtime,
    )
    if not runs:
        raise CheckpointError(
            "no run with a last.ckpt to resume",
            where=parent,
            hint="start with 'mediscope fit CONFIG', or give --resume PATH",
        )
    return runs[-1]


def resolve_checkpoint(value: str | Path, *, base: Path, name: str) -> Path:
    """``last`` → the newest run's last.ckpt; a run folder → its last.ckpt; else a file."""
    if str(value) == "last":
        return latest_run(base, name) / CHECKPOINTS / LAST
    path = Path(value)
    if path.is_dir():
        candidate = path / CHECKPOINTS / LAST
        if not candidate.is_file():
            raise CheckpointError("the folder holds no checkpoints/last.ckpt", where=path)
        return candidate
    if not path.is_file():
        raise CheckpointError("checkpoint not found", where=path, hint="check the path")
    return path


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run directory holding ``checkpoint``, if it sits in one."""
    parent = checkpoint.resolve().parent
    if parent.name == CHECKPOINTS and (parent.parent / "config.yaml").is_file():
        return parent.parent
    return None
