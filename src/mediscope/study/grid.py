"""The command line's grid: ``--grid KEY=V1,V2`` values and ``--seeds`` lists."""

from __future__ import annotations

import json
from collections.abc import Sequence

from mediscope.config.loader import parse_override_value
from mediscope.errors import ConfigError


def split_values(text: str) -> list[str]:
    """Splits ``a,b,[1, 2],{x: 1, y: 2}`` at the commas outside brackets and quotes."""
    values, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    return values


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """``["model.name=unet,segnet", "loss.name=DiceLoss"]`` → ``{key: [values]}``.

    Raises:
        ConfigError: for a missing ``=``, an empty or repeated key or value.
    """
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"'{item}' is not KEY=V1,V2",
                where="--grid",
                hint="e.g. --grid model.name=unet,segnet",
            )
        if key in grid:
            raise ConfigError(
                f"'{key}' is given twice", where="--grid", hint=f"list all values once: {key}=a,b,c"
            )
        values = split_values(text)
        if any(not v for v in values):
            raise ConfigError(
                f"{key}: empty value in '{text}'", where="--grid", hint="separate values by commas"
            )
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise ConfigError(f"{key}: values repeat: {', '.join(dupes)}", where="--grid")
        for other in grid:
            if other.startswith(f"{key}.") or key.startswith(f"{other}."):
                parent, child = sorted((key, other), key=len)
                raise ConfigError(
                    f"'{parent}' and '{child}' are both grid keys: the child would override "
                    f"the parent's '{child.rsplit('.', 1)[1]}' and the rows be labelled wrongly",
                    where="--grid",
                    hint=f"vary one of them: '{child}', or the whole '{parent}' section",
                )
        _refuse_equal_values(key, values)
        grid[key] = values
    return grid


def _refuse_equal_values(key: str, values: Sequence[str]) -> None:
    """Refuses values that differ as text but are one value once parsed as ``--set``
    parses them (``0.001`` and ``1.0e-3``).

    Raises:
        ConfigError: naming the key and the equal values.
    """
    seen: dict[str, str] = {}
    for text in values:
        parsed = json.dumps(
            parse_override_value(text, where=f"--grid {key}"), sort_keys=True, default=str
        )
        if parsed in seen:
            raise same_values_error(key, seen[parsed], text)
        seen[parsed] = text


def same_values_error(key: str, first: str, second: str) -> ConfigError:
    """The error for two grid values of ``key`` that give the same config."""
    return ConfigError(
        f"'{first}' and '{second}' are the same value: both cells would train the same "
        "config and rank as different",
        where=f"--grid {key}",
        hint="list each value once",
    )


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``.

    Raises:
        ConfigError: for anything but distinct non-negative integers.
    """
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"'{text}' is not a list of integers", where="--seeds", hint="e.g. --seeds 0,1,2"
        ) from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(
            f"'{text}': give distinct seeds >= 0", where="--seeds", hint="e.g. --seeds 0,1,2"
        )
    return seeds
