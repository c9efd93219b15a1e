"""The ``mediscope`` command line: a thin typer layer over the importable API."""

from __future__ import annotations

import importlib.util


def require_training_stack() -> None:
    """Raises ModuleNotFoundError (told as "pip install 'mediscope[train]'") when torch or
    Lightning is missing: a training command says so before it reads its config, which it
    does before it imports them (a mistake in the config is told at once)."""
    for name in ("torch", "lightning"):
        if importlib.util.find_spec(name) is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
