"""Loading pretrained weights: from a local file, or downloaded through timm.

Nothing downloads unless the user asked (``pretrained: true``). Before a download we
check in a few seconds that the weight host answers, so that an offline machine gets a
clear error at once instead of a hang.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mediscope.errors import CheckpointError, DownloadError
from mediscope.files import read_torch_file

log = logging.getLogger(__name__)

WEIGHTS_HOST = ("huggingface.co", 443)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Reads a state dict from a ``.pt/.pth/.bin``, a Lightning ``.ckpt`` or ``.safetensors``.

    Loading never runs pickled code: torch files are read with ``weights_only=True``,
    and one that carries pickled code is refused (:func:`mediscope.files.read_torch_file`).
    """
    if not path.is_file():
        raise CheckpointError("weights file not found", where=path, hint="check the path")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        except Exception as exc:  # any format error is the file's fault
            raise CheckpointError(
                f"not a readable weights file ({type(exc).__name__})",
                where=path,
                hint="give a state dict, a mediscope checkpoint or a .safetensors file",
            ) from None
    else:
        state = read_torch_file(path, what="weights file")
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise CheckpointError("the file holds no state dict of tensors", where=path)
    # Lightning prefixes the network's keys with the task attribute name.
    return {_strip(k): v for k, v in state.items()}


def _strip(key: str) -> str:
    return key[len("model.") :] if key.startswith("model.") else key


def load_weights_file(model: nn.Module, path: Path) -> list[str]:
    """Loads matching tensors from ``path`` into ``model``; returns the skipped keys.

    Tensors whose shape differs (typically the classifier head of another number of
    classes) are skipped with a log line, so a checkpoint can initialise a model for a
    new dataset.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise CheckpointError(
            "no tensor of the file matches the model",
            where=path,
            hint="was it saved from another architecture?",
        )
    model.load_state_dict(usable, strict=False)
    skipped = sorted(set(own) - set(usable))
    if skipped:
        log.info("weights from %s: %d tensors not loaded (%s)", path, len(skipped), skipped[:4])
    return skipped


def ensure_weights_reachable(what: str, *, timeout: float = 3.0) -> None:
    """Fails at once with a clear message when weights would need an unreachable host."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise DownloadError(
            f"pretrained weights of {what} are not cached and HF_HUB_OFFLINE=1",
            hint="use 'pretrained: PATH' with a local weights file, or 'pretrained: false'",
        )
    try:
        with socket.create_connection(WEIGHTS_HOST, timeout=timeout):
            pass
    except OSError:
        raise DownloadError(
            f"pretrained weights of {what} need a download from {WEIGHTS_HOST[0]}, "
            "which cannot be reached",
            hint="use 'pretrained: PATH' with a local weights file, or 'pretrained: false'",
        ) from None


def load_local_weights(model: nn.Module, pretrained: bool | str | Path, *, name: str) -> None:
    """Applies ``pretrained`` to a model that has no published weights.

    False leaves the random initialisation, a path loads that local file, and True is
    refused: there is nothing to download for models built in mediscope.
    """
    if pretrained is True:
        from mediscope.errors import ConfigError

        raise ConfigError(
            f"{name} has no published pretrained weights",
            where="model.pretrained",
            hint="use false, or the path of a weights file",
        )
    if pretrained:
        load_weights_file(model, Path(pretrained))
