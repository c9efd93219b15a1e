"""Convolution blocks shared by the study networks."""

from __future__ import annotations

from torch import nn


def conv_bn_relu(in_ch: int, out_ch: int, *, dilation: int = 1) -> list[nn.Module]:
    """3x3 convolution (same size), batch norm, ReLU."""
    return [
        nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    ]


class DoubleConv(nn.Sequential):
    """Two 3x3 conv + BN + ReLU layers."""

    def __init__(self, in_ch: int, out_ch: int, *, dilation: int = 1) -> None:
        super().__init__(
            *conv_bn_relu(in_ch, out_ch, dilation=dilation),
            *conv_bn_relu(out_ch, out_ch, dilation=dilation),
        )
