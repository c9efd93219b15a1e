"""Config schemas, YAML reading, ``--set`` overrides and config errors.

This package is the bottom layer: it knows the schema, not the registries. Names of
tasks, models, losses, optimizers and formats, and the task's defaults, are checked and
filled by :func:`mediscope.tasks.validate.validate`; :func:`mediscope.load_config`
reads and validates in one call.
"""

from __future__ import annotations

from mediscope.config.loader import (
    ConfigSource,
    apply_override,
    dump_config,
    locate,
    parse_config_dict,
    parse_config_text,
    parse_dataset_dict,
    parse_override_value,
    read_config,
    read_dataset_config,
)
from mediscope.config.schema import Config, DatasetConfig

__all__ = [
    "Config",
    "ConfigSource",
    "DatasetConfig",
    "apply_override",
    "dump_config",
    "locate",
    "parse_config_dict",
    "parse_config_text",
    "parse_dataset_dict",
    "parse_override_value",
    "read_config",
    "read_dataset_config",
]
