"""Classification models; importing this package registers them."""

from __future__ import annotations

from mediscope.models.classification import (
    efficientnet_lite,
    simple_cnn,
    timm_models,
    unet_classifier,
    vgg_cnn,
    vgg_skip,
)

__all__ = [
    "efficientnet_lite",
    "simple_cnn",
    "timm_models",
    "unet_classifier",
    "vgg_cnn",
    "vgg_skip",
]
