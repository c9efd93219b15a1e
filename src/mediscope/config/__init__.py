"""Config schemas, YAML loading, ``--set`` overrides and config errors."""

from __future__ import annotations

from mediscope.config.loader import (
    apply_override,
    config_from_dict,
    config_from_text,
    dump_config,
    load_config,
    parse_override_value,
)
from mediscope.config.schema import Config

__all__ = [
    "Config",
    "apply_override",
    "config_from_dict",
    "config_from_text",
    "dump_config",
    "load_config",
    "parse_override_value",
]
