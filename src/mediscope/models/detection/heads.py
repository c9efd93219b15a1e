"""The decoupled head: separate classification, box and quality (objectness) branches."""

from __future__ import annotations

import math

import torch
from torch import nn

from mediscope.models.detection.necks import conv_norm_act


class DecoupledHead(nn.Module):
    """Shared over levels: a class tower and a box tower; quality from the box tower.

    Args:
        channels: Input channels (the neck's).
        num_classes: Object classes (no background).
        anchors: Anchors per cell.
        depth: Convolutions per tower.
        prior: Initial foreground probability (focal-loss bias initialisation).
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        anchors: int,
        *,
        depth: int = 2,
        prior: float = 0.01,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.anchors = anchors
        self.cls_tower = nn.Sequential(*(conv_norm_act(channels, channels) for _ in range(depth)))
        self.box_tower = nn.Sequential(*(conv_norm_act(channels, channels) for _ in range(depth)))
        self.cls_out = nn.Conv2d(channels, anchors * num_classes, 3, padding=1)
        self.box_out = nn.Conv2d(channels, anchors * 4, 3, padding=1)
        self.quality_out = nn.Conv2d(channels, anchors, 3, padding=1)
        bias = -math.log((1 - prior) / prior)
        for conv in (self.cls_out, self.quality_out):
            nn.init.normal_(conv.weight, std=0.01)
            assert conv.bias is not None
            nn.init.constant_(conv.bias, bias)
        nn.init.normal_(self.box_out.weight, std=0.01)
        assert self.box_out.bias is not None
        nn.init.zeros_(self.box_out.bias)

    def forward(
        self, features: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Class logits (B, A, C), box deltas (B, A, 4), quality logits (B, A)."""
        cls, box, quality = [], [], []
        for x in features:
            b = x.shape[0]
            c, t = self.cls_tower(x), self.box_tower(x)
            cls.append(self.cls_out(c).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes))
            box.append(self.box_out(t).permute(0, 2, 3, 1).reshape(b, -1, 4))
            quality.append(self.quality_out(t).permute(0, 2, 3, 1).reshape(b, -1))
        return torch.cat(cls, 1), torch.cat(box, 1), torch.cat(quality, 1)
