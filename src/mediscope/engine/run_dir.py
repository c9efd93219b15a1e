"""Run directories: ``<run.dir>/<run.name>/<timestamp>/``, never overwritten.

Before training, the folder is checked to be writable (a probe file is written and
removed) and to sit on a disk with room for the checkpoints, so that a read-only or
full disk fails at once with a clear message rather than after an epoch.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

from mediscope.errors import CheckpointError, ConfigError, RunDirError

CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
BEST = "best.ckpt"

#: Room kept beyond the checkpoints: metrics, plots, the report, evaluation files.
SPACE_MARGIN = 50 * 2**20
_PROBE = ".mediscope-write-probe"


def space_needed(parameter_bytes: int) -> int:
    """Free bytes a run needs: three copies of the weights (the checkpoints hold the
    weights and the optimizer state) plus :data:`SPACE_MARGIN`."""
    return 3 * parameter_bytes + SPACE_MARGIN


def _size(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"  # pragma: no cover


def check_run_dir(path: Path, *, need_bytes: int = 0) -> None:
    """Checks that ``path`` (an existing folder) can be written and has ``need_bytes`` free.

    Writes a small probe file, reads the disk's free space and removes the probe.

    Raises:
        RunDirError: when the folder is not writable or the disk too full.
    """
    probe = path / _PROBE
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"mediscope" * 455)  # 4 KB
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        raise RunDirError(
            f"the run folder is not writable ({exc.strerror or exc})",
            where=path,
            hint="check its permissions and that the disk is not full or read-only, "
            "or choose another folder with --set run.dir=PATH",
        ) from None
    try:
        free = shutil.disk_usage(path).free
    finally:
        probe.unlink(missing_ok=True)
    if free < need_bytes:
        raise RunDirError(
            f"only {_size(free)} free on its disk, and the checkpoints and reports need "
            f"about {_size(need_bytes)}",
            where=path,
            hint="free disk space, or choose a folder on a larger disk with --set run.dir=PATH",
        )


def _missing_parents(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists() or folder.is_symlink():
            break
        missing.append(folder)
    return missing


def _remove_created(run: Path | None, created: list[Path]) -> None:
    if run is not None:
        shutil.rmtree(run, ignore_errors=True)
    for folder in created:  # deepest first; only if nothing else appeared in them
        try:
            folder.rmdir()
        except OSError:
            break


def create_run_dir(base: Path, name: str, *, now: float | None = None, need_bytes: int = 0) -> Path:
    """Creates a new, empty run directory; a suffix keeps it unique within a second.

    The folder is checked with :func:`check_run_dir`; when the check fails, every folder
    this call created is removed again.

    Args:
        base: ``run.dir``.
        name: ``run.name``.
        now: The time of the stamp (default: now).
        need_bytes: Free space the run needs on the disk (see :func:`space_needed`).

    Raises:
        RunDirError: when the folder cannot be created or written, or the disk is full.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    parent = base / name
    created = _missing_parents(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_created(None, created)
        raise RunDirError(
            f"cannot create the run folder ({exc.strerror or exc})",
            where=parent,
            hint="check run.dir: its parent must be a writable folder (--set run.dir=PATH)",
        ) from None
    path: Path | None = None
    try:
        for attempt in range(1000):
            candidate = parent / (stamp if attempt == 0 else f"{stamp}-{attempt}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            path = candidate
            break
        if path is None:
            raise RunDirError("too many runs in the same second", where=parent)
        check_run_dir(path, need_bytes=need_bytes)
        (path / CHECKPOINTS).mkdir()
    except OSError as exc:
        _remove_created(path, created)
        raise RunDirError(
            f"cannot create the run folder ({exc.strerror or exc})",
            where=path or parent,
            hint="check the permissions of run.dir, or choose another with --set run.dir=PATH",
        ) from None
    except BaseException:
        _remove_created(path, created)
        raise
    return path


def remove_leftovers(run: Path) -> list[Path]:
    """Deletes the temporary files a killed run may have left in its folder: half-written
    files (``.NAME.XXXX.tmp``), the pending ``last.ckpt`` and the write probe."""
    removed = []
    for item in run.rglob(".*"):
        name = item.name
        if item.is_file() and (name.endswith((".tmp", ".pending")) or name == _PROBE):
            item.unlink(missing_ok=True)
            removed.append(item)
    return removed


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


def run_source(source: Path, checkpoint: Path | None) -> tuple[Path, Path]:
    """The config file and the checkpoint that ``validate``, ``test`` and ``predict`` use.

    ``source`` is a run folder (its ``config.yaml`` and, unless ``checkpoint`` is given,
    its ``checkpoints/best.ckpt``) or a config file (then ``checkpoint`` is required).

    Raises:
        RunDirError: a folder that is not a run folder (its runs are named when it holds
            some, e.g. ``runs/<name>``).
        CheckpointError: a run folder without ``best.ckpt``.
        ConfigError: a config file without ``checkpoint``.
    """
    if not source.is_dir():
        if checkpoint is None:
            raise ConfigError(
                "--checkpoint is required with a config file",
                where="command line",
                hint="give --checkpoint PATH, or a run folder instead of the config",
            )
        return source, checkpoint
    config = source / "config.yaml"
    if not config.is_file():
        runs = sorted(p for p in source.glob("*") if (p / CHECKPOINTS).is_dir())
        hint = (
            f"give one of its {len(runs)} runs, e.g. the newest: {runs[-1]}"
            if runs
            else "give a run folder written by mediscope fit (config.yaml, checkpoints/), "
            "or a config file with --checkpoint"
        )
        raise RunDirError("not a run folder: it holds no config.yaml", where=source, hint=hint)
    if checkpoint is not None:
        return config, checkpoint
    best = source / CHECKPOINTS / BEST
    if not best.is_file():
        last = source / CHECKPOINTS / LAST
        raise CheckpointError(
            "the run has no checkpoints/best.ckpt (did it stop before its first validation?)",
            where=source,
            hint=f"give another checkpoint with --checkpoint, e.g. {last}"
            if last.is_file()
            else "the run holds no checkpoint at all: train it again with mediscope fit",
        )
    return config, best
