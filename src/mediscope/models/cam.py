"""Grad-CAM heatmaps of a classifier (the ``grad-cam`` library).

The target layer is found by running the model once: the last module whose output is
still a spatial feature map (4-D, more than one pixel) before pooling. That is the last
convolutional stage of every classifier mediscope builds (timm, VGG, U-Net encoder,
EfficientNet-Lite, the small CNN).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


def target_layer(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """The last module producing a spatial (N x C x H x W, H·W > 1) feature map.

    Raises:
        ValueError: The model has no spatial feature map (e.g. a plain MLP).
    """
    found: list[nn.Module] = []
    hooks = []

    def remember(module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor) and output.ndim == 4 and output.shape[-2:].numel() > 1:
            found.append(module)

    for module in model.modules():
        if module is not model and not list(module.children()):  # leaves only
            hooks.append(module.register_forward_hook(remember))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    if not found:
        raise ValueError(f"{type(model).__name__} has no spatial feature map for Grad-CAM")
    return found[-1]


def grad_cam(
    model: nn.Module,
    inputs: torch.Tensor,
    classes: Sequence[int],
) -> np.ndarray:
    """Grad-CAM maps ``(N, H, W)`` in 0..1 of ``inputs`` (N x C x H x W) for ``classes``."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    was_training = model.training
    model.eval()
    layer = target_layer(model, inputs[:1])
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    try:
        with torch.enable_grad(), GradCAM(model=model, target_layers=[layer]) as cam:
            maps = cam(input_tensor=inputs, targets=targets)
    finally:
        model.train(was_training)
    return np.asarray(maps, dtype=np.float32)
