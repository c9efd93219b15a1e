"""Any input size for networks that need sides divisible by a multiple."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PadToMultiple(nn.Module):
    """Pads the input to a multiple of ``multiple`` (reflect), runs ``net``, crops back.

    Args:
        net: A network whose output has the (padded) input's height and width.
        multiple: The side multiple ``net`` needs (``2 ** depth``, 32 for smp encoders).
    """

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net = net
        self.multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h = (-height) % self.multiple
        pad_w = (-width) % self.multiple
        if pad_h or pad_w:
            # reflect needs the pad to be smaller than the side; replicate always works
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        out: torch.Tensor = self.net(x)
        return out[..., :height, :width]

    def backbone_stages(self) -> list[nn.Module]:
        """The wrapped network's encoder stages (for ``freeze``)."""
        stages = getattr(self.net, "backbone_stages", None)
        if callable(stages):
            return list(stages())
        encoder = getattr(self.net, "encoder", None)
        return [encoder] if isinstance(encoder, nn.Module) else []

    def classifier(self) -> nn.Module:
        """The wrapped network's output layer, never frozen."""
        head = getattr(self.net, "classifier", None)
        if callable(head) and not isinstance(head, nn.Module):
            found = head()
            if isinstance(found, nn.Module):
                return found
        segmentation_head = getattr(self.net, "segmentation_head", None)
        return segmentation_head if isinstance(segmentation_head, nn.Module) else nn.Identity()
