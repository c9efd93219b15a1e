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
            objects, or was not written by mediscope.
    """
    data = read_torch_file(path, what="checkpoint")
    if not isinstance(data, dict) or "state_dict" not in data or CHECKPOINT_KEY not in data:
        raise CheckpointError(
            "not a mediscope checkpoint", where=path, hint="give a .ckpt from a run's checkpoints/"
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
    """What mediscope stored: config, classes, class counts, normalisation, version."""
    meta: dict[str, Any] = data[CHECKPOINT_KEY]
    return meta


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
