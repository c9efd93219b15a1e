"""Detection models: ``retinanet`` (S1's one-stage detector) and torchvision's FCOS and
Faster R-CNN over the same timm backbones."""

from __future__ import annotations

from mediscope.models.detection import retinanet, torchvision_models

__all__ = ["retinanet", "torchvision_models"]
