"""Convolution blocks shared by the study networks (SegNet and the U-Nets)."""

from __future__ import annotations

from torch import nn


def conv_bn_relu(in_ch: int, out_ch: int, *, dilation: int = 1) -> list[nn.Module]:
    """A 3x3 convolution that keeps the size (padding = dilation), batch norm, ReLU.

    The convolution has no bias: the batch norm right after it has one.
    """
    return [
        nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    ]


class DoubleConv(nn.Sequential):
    """U-Net's unit: two 3x3 conv-BN-ReLU layers at one resolution.

    Args:
        in_ch: Input channels.
        out_ch: Output channels of both convolutions.
        dilation: Dilation of both convolutions (2 in the dilated U-Net).
    """

    def __init__(self, in_ch: int, out_ch: int, *, dilation: int = 1) -> None:
        super().__init__(
            *conv_bn_relu(in_ch, out_ch, dilation=dilation),
            *conv_bn_relu(out_ch, out_ch, dilation=dilation),
        )
