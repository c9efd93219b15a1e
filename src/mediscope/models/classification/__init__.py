"""Classification models; importing this package registers them."""

from __future__ import annotations

from mediscope.models.classification import simple_cnn, timm_models

__all__ = ["simple_cnn", "timm_models"]
