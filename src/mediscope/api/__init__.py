"""The importable API behind the command line: fit, validate, test, cross-validation.

Example:
    >>> from mediscope.api import fit, test  # doctest: +SKIP
    >>> result = fit(load_config("configs/demo/gram-crops.yaml"))  # doctest: +SKIP
"""

from __future__ import annotations

from mediscope.api.evaluate import (
    Evaluation,
    evaluate_and_write,
    evaluate_checkpoint,
    test,
    validate,
    write_run_report,
)
from mediscope.api.fit import FitResult, fit
from mediscope.models import model_names


def list_models(task: str | None = None) -> list[str]:
    """Registered model names (``timm:<name>`` works for any timm classifier too)."""
    return model_names(task)


__all__ = [
    "Evaluation",
    "FitResult",
    "evaluate_and_write",
    "evaluate_checkpoint",
    "fit",
    "list_models",
    "test",
    "validate",
    "write_run_report",
]
