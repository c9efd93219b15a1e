"""Necks: an FPN with lateral (skip) connections to the backbone, or an hourglass without."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_norm_act(channels_in: int, channels_out: int, kernel: int = 3) -> nn.Sequential:
    """Conv → GroupNorm → SiLU (GroupNorm: batches of a few images train well)."""
    groups = 32 if channels_out % 32 == 0 else 8 if channels_out % 8 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, kernel, padding=kernel // 2, bias=False),
        nn.GroupNorm(groups, channels_out),
        nn.SiLU(inplace=True),
    )


class FPN(nn.Module):
    """Feature pyramid: top-down pathway plus 1x1 lateral connections to each level.

    Args:
        in_channels: Channels of the backbone levels, fine to coarse.
        channels: Channels of every output level.
        skip: Lateral connections from the backbone (FPN). Without them the coarsest
            map alone is upsampled level by level (an hourglass decoder).
    """

    def __init__(self, in_channels: list[int], channels: int = 64, *, skip: bool = True) -> None:
        super().__init__()
        self.skip = skip
        if skip:
            self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        else:
            self.lateral = nn.ModuleList([nn.Conv2d(in_channels[-1], channels, 1)])
        self.smooth = nn.ModuleList(conv_norm_act(channels, channels) for _ in in_channels)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        top = self.lateral[-1](features[-1])
        outputs = [self.smooth[-1](top)]
        for i in range(len(features) - 2, -1, -1):
            size = features[i].shape[-2:]
            top = F.interpolate(top, size=size, mode="nearest")
            if self.skip:
                top = top + self.lateral[i](features[i])
            outputs.insert(0, self.smooth[i](top))
            top = outputs[0] if not self.skip else top
        return outputs
