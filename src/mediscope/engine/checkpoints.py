"""Reading and writing mediscope checkpoints safely.

Reading uses ``weights_only=True``: no pickled code runs, and a file that carries some
is refused with a clear error. Writing goes to a temporary file beside the target,
flushed to the disk and then renamed, so a kill or a full disk never leaves a truncated
``best.ckpt`` or ``last.ckpt``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mediscope.engine.run_dir import run_dir_of
from mediscope.errors import CheckpointError, RunDirError
from mediscope.files import atomic_path, read_torch_file
from mediscope.tasks.base import CHECKPOINT_KEY

#: errno values that mean "the disk (or the user's quota) is full".
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Loads a Lightning checkpoint written by mediscope.

    Raises:
        CheckpointError: when the file is missing, not a checkpoint, carries pickled
            objects, was not written by mediscope, or its metadata is not of the shape
            mediscope writes (see :func:`_meta_problem`).
    """
    data = read_torch_file(path, what="checkpoint")
    if not isinstance(data, dict) or "state_dict" not in data or CHECKPOINT_KEY not in data:
        raise CheckpointError(
            "not a mediscope checkpoint", where=path, hint="give a .ckpt from a run's checkpoints/"
        )
    problem = _meta_problem(data[CHECKPOINT_KEY])
    if problem is None and not isinstance(data.get("epoch", 0), int):
        problem = f"'epoch' is {str(data['epoch'])[:40]!r}, not a number"
    if problem is not None:
        raise CheckpointError(
            f"its mediscope metadata is damaged: {problem}",
            where=path,
            hint="give a .ckpt written by mediscope fit (a run's checkpoints/)",
        )
    return data


def checkpoint_epoch(path: Path) -> int | None:
    """The epoch a readable checkpoint finished, or None when there is none at ``path``."""
    if not path.is_file():
        return None
    try:
        return int(read_torch_file(path).get("epoch", -1))
    except (CheckpointError, AttributeError):
        return None


def checkpoint_meta(data: dict[str, Any]) -> dict[str, Any]:
    """What mediscope stored: config, classes, class counts, normalisation, version
    (checked by :func:`read_checkpoint`)."""
    meta: dict[str, Any] = data[CHECKPOINT_KEY]
    return meta


def _is_numbers(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    )


def _meta_problem(meta: Any) -> str | None:
    """What is wrong with a checkpoint's metadata, or None: it must be a mapping whose
    classes are a list of names, class counts a list of numbers, normalisation two lists
    of numbers (mean and std)."""
    if not isinstance(meta, dict):
        return f"'{CHECKPOINT_KEY}' holds a {type(meta).__name__}, not a mapping"
    classes = meta.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        return f"'classes' must be a list of class names, got {str(classes)[:60]!r}"
    if not isinstance(meta.get("config", {}), dict):
        return "'config' is not a mapping"
    counts = meta.get("class_counts")
    if counts is not None and not _is_numbers(counts):
        return f"'class_counts' must be a list of numbers, got {str(counts)[:60]!r}"
    stats = meta.get("normalization")
    if stats is not None and not (
        isinstance(stats, list | tuple)
        and len(stats) == 2
        and all(_is_numbers(list(s)) if isinstance(s, list | tuple) else False for s in stats)
        and len(stats[0]) == len(stats[1])
    ):
        return f"'normalization' must be [mean list, std list], got {str(stats)[:60]!r}"
    return None


def load_task_weights(task: torch.nn.Module, data: dict[str, Any], path: Path) -> None:
    """Loads the checkpoint's weights into ``task`` (strict: same architecture)."""
    try:
        task.load_state_dict(data["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(
            f"the checkpoint does not fit the configured model ({first[0] if first else exc})",
            where=path,
            hint="use the config the checkpoint was trained with",
        ) from None


def write_error(exc: OSError, path: Path) -> RunDirError:
    """A one-line error for an OSError raised while writing ``path``."""
    if exc.errno in _NO_SPACE:
        run = run_dir_of(path)
        return RunDirError(
            "no space left on the device while writing it",
            where=path,
            hint="free disk space (or set run.dir to a larger disk), then continue the run "
            f"with --resume {run or 'last'}",
        )
    reason = exc.strerror or str(exc)
    return RunDirError(
        f"cannot write it ({reason})", where=path, hint="check the run folder's permissions"
    )


def save_checkpoint_file(
    checkpoint: dict[str, Any],
    path: Path,
    *,
    save: Callable[[Any, Any], None] | None = None,
) -> None:
    """Writes ``checkpoint`` to ``path`` atomically: temporary file, fsync, rename.

    Args:
        checkpoint: What ``torch.save`` writes.
        path: The target; the previous file there stays intact until the rename.
        save: The writer, ``torch.save`` by default.

    Raises:
        RunDirError: when the disk is full or the folder not writable.
    """
    save = save or torch.save
    try:
        # A Python file object, so that a full disk raises OSError (ENOSPC) rather than
        # an opaque error of torch's C++ writer.
        with atomic_path(path) as tmp, open(tmp, "wb") as file:
            save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:
        raise write_error(exc, path) from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO writing atomically and reading with ``weights_only=True``."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        """Writes to a temporary name beside ``path``, then renames it to ``path``."""
        if storage_options is not None:
            raise TypeError("storage_options are not supported by mediscope's checkpoint IO")
        save_checkpoint_file(checkpoint, Path(path))

    def load_checkpoint(
        self,
        path: _PATH,
        map_location: Any | None = None,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Reads a checkpoint; pickled code is refused whatever ``weights_only`` says."""
        data = read_torch_file(Path(path), what="checkpoint")
        if not isinstance(data, dict):
            raise CheckpointError("not a checkpoint", where=path)
        return data
