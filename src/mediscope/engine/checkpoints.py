"""Reading mediscope checkpoints safely (``weights_only=True``: no pickled code runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mediscope.errors import CheckpointError
from mediscope.tasks.base import CHECKPOINT_KEY


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Loads a Lightning checkpoint written by mediscope.

    Raises:
        CheckpointError: when the file is missing, not a checkpoint, carries pickled
            objects, or was not written by mediscope.
    """
    if not path.is_file():
        raise CheckpointError("checkpoint not found", where=path, hint="check the path")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"not a loadable checkpoint ({type(exc).__name__})",
            where=path,
            hint="give a .ckpt written by 'mediscope fit'; files with pickled code are refused",
        ) from None
    if not isinstance(data, dict) or "state_dict" not in data or CHECKPOINT_KEY not in data:
        raise CheckpointError(
            "not a mediscope checkpoint", where=path, hint="give a .ckpt from a run's checkpoints/"
        )
    return data


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
