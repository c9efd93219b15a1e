"""Checks of the keywords given to the study networks' builders (``model.params``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mediscope.errors import ConfigError
from mediscope.registry import unknown_name_hint

#: The keywords every study network takes besides num_classes, in_chans and pretrained.
STUDY_PARAMS = ("width", "depth")


def reject_unknown_params(name: str, params: Mapping[str, Any]) -> None:
    """Raises ConfigError naming the first keyword the study network ``name`` lacks."""
    if not params:
        return
    key = next(iter(params))
    if key == "encoder":
        raise ConfigError(
            f"{name} has no encoder to choose",
            where="model.encoder",
            hint="model.encoder is for smp:<Arch> models (e.g. smp:Unet); "
            f"{name} takes {', '.join(STUDY_PARAMS)}",
        )
    raise ConfigError(
        f"{name} has no parameter '{key}'",
        where=f"model.params.{key}",
        hint=unknown_name_hint(key, list(STUDY_PARAMS)),
    )


def check_width_depth(width: Any, depth: Any) -> None:
    """Raises ConfigError unless ``width`` and ``depth`` are whole numbers >= 1."""
    for key, value in (("width", width), ("depth", depth)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"{key} must be a whole number >= 1, got {value!r}",
                where=f"model.params.{key}",
                hint="width: channels of the first level (e.g. 16 or 32); "
                "depth: number of downsamplings (e.g. 4)",
            )
