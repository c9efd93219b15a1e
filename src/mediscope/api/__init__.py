"""The importable API behind the command line: fit, validate, test, cross-validation,
and :func:`mediscope.load` (:mod:`mediscope.api.loading`).

Names are imported when first used, so that loading an exported model does not import
the training stack (torch, Lightning).

Example:
    >>> from mediscope.api import fit, test  # doctest: +SKIP
    >>> result = fit(load_config("configs/demo/gram-crops.yaml"))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "Evaluation": "mediscope.api.evaluate",
    "evaluate_and_write": "mediscope.api.evaluate",
    "evaluate_checkpoint": "mediscope.api.evaluate",
    "test": "mediscope.api.evaluate",
    "validate": "mediscope.api.evaluate",
    "write_run_report": "mediscope.api.evaluate",
    "FitResult": "mediscope.api.fitting",
    "fit": "mediscope.api.fitting",
    "list_models": "mediscope.api.models",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mediscope.api' has no attribute {name!r}")


__all__ = sorted(_LAZY)
