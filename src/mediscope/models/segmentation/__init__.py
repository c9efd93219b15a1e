"""Segmentation models; importing this package registers them.

The four of the skin-lesion study (``segnet``, ``unet``, ``unet2``, ``dilated_unet``)
are built here; any segmentation_models_pytorch architecture is ``smp:<Arch>`` (see
:mod:`.smp_models`). All of them take inputs of any size and return logits
``(B, num_classes, H, W)`` at the input's height and width.
"""

from __future__ import annotations

from mediscope.models.segmentation import segnet, smp_models, unet

__all__ = ["segnet", "smp_models", "unet"]
