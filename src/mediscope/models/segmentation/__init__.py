"""Segmentation models; importing this package registers them.

The four of the skin-lesion study (``segnet``, ``unet``, ``unet2``, ``dilated_unet``)
are built here; any segmentation_models_pytorch architecture is ``smp:<Arch>``.
"""

from __future__ import annotations

from mediscope.models.segmentation import segnet, smp_models, unet

__all__ = ["segnet", "smp_models", "unet"]
