"""Model names, for ``mediscope list models`` and notebooks."""

from __future__ import annotations

from mediscope.models import model_names


def list_models(task: str | None = None) -> list[str]:
    """Registered model names (``timm:<name>`` works for any timm classifier too)."""
    return model_names(task)
