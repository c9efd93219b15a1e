"""U-Net and the S4 variants built on it.

* ``unet``: max-pool down, bilinear upsampling + 1x1 convolution up.
* ``unet2``: stride-2 convolution down, transposed convolution up (learned resampling).
* ``dilated_unet``: ``unet2`` with dilation 2 in the down and up blocks, so each block
  sees a wider context at the same cost.

::

    image → stem ──────────────────────────────────────→ cat → block → 1x1 → logits
             └→ down → block ─────────────────→ cat → block → up ┘
                        └→ down → block → up ┘         (depth levels)

Every level doubles the channels (``width``, ``2 width``, ... ``2**depth width``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mediscope.models.pretrained import load_local_weights
from mediscope.models.segmentation.blocks import DoubleConv
from mediscope.models.segmentation.keywords import check_width_depth, reject_unknown_params
from mediscope.models.segmentation.padding import crop_to, pad_to_multiple
from mediscope.registry import MODELS


def downsample(channels: int, *, strided: bool) -> nn.Module:
    """Halves the resolution: a 2x2 max-pool, or a learned 3x3 stride-2 convolution."""
    if strided:
        return nn.Conv2d(channels, channels, 3, stride=2, padding=1)
    return nn.MaxPool2d(2)


def upsample(in_ch: int, out_ch: int, *, strided: bool) -> nn.Module:
    """Doubles the resolution and maps ``in_ch`` to ``out_ch`` channels.

    Either a 2x2 transposed convolution (learned), or bilinear interpolation followed by
    a 1x1 convolution; the double conv after the skip concatenation does the smoothing.
    """
    if strided:
        return nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Conv2d(in_ch, out_ch, 1),
    )


class UNet(nn.Module):
    """Encoder-decoder with skip concatenations; any input size.

    Args:
        num_classes: Output channels (classes, background included).
        in_chans: Input channels.
        width: Channels of the first level, doubled per level.
        depth: Number of downsamplings; the input is padded to a multiple of
            ``2 ** depth`` and the output cropped back.
        strided: Stride-2 convolutions down and transposed convolutions up (UNet2)
            instead of max-pooling and bilinear upsampling.
        dilation: Dilation of the convolutions in the down and up blocks.

    Example:
        >>> model = UNet(num_classes=3, width=4, depth=2)
        >>> model(torch.zeros(1, 3, 37, 53)).shape
        torch.Size([1, 3, 37, 53])
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int = 3,
        width: int = 32,
        depth: int = 4,
        strided: bool = False,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.multiple = 2**depth
        channels = [width * 2**i for i in range(depth + 1)]
        self.stem = DoubleConv(in_chans, channels[0])
        self.downs = nn.ModuleList(
            nn.Sequential(
                downsample(channels[i], strided=strided),
                DoubleConv(channels[i], channels[i + 1], dilation=dilation),
            )
            for i in range(depth)
        )
        # Deepest level first, as the decoder runs.
        self.ups = nn.ModuleList(
            upsample(channels[i + 1], channels[i], strided=strided) for i in reversed(range(depth))
        )
        self.up_blocks = nn.ModuleList(
            DoubleConv(2 * channels[i], channels[i], dilation=dilation)
            for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(channels[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = self.stem(pad_to_multiple(x, self.multiple))
        skips = []
        for down in self.downs:
            skips.append(x)
            x = down(x)
        for up, block in zip(self.ups, self.up_blocks, strict=True):
            x = block(torch.cat([up(x), skips.pop()], dim=1))
        return crop_to(self.head(x), height, width)

    def backbone_stages(self) -> list[nn.Module]:
        """The encoder levels, input → output (what ``freeze: N`` counts)."""
        return [self.stem, *self.downs]

    def classifier(self) -> nn.Module:
        """The 1x1 output convolution, never frozen."""
        return self.head


def unet_builder(name: str, *, strided: bool, dilation: int) -> Callable[..., nn.Module]:
    """The builder of one U-Net variant; ``pretrained`` may only be a local weights file.

    The builder raises ConfigError for an unknown keyword, a bad width or depth, or
    ``pretrained: true``.
    """

    def build(
        *,
        num_classes: int,
        in_chans: int = 3,
        pretrained: bool | str | Path = False,
        width: int = 32,
        depth: int = 4,
        **params: Any,
    ) -> nn.Module:
        reject_unknown_params(name, params)
        check_width_depth(width, depth)
        model = UNet(
            num_classes=num_classes,
            in_chans=in_chans,
            width=width,
            depth=depth,
            strided=strided,
            dilation=dilation,
        )
        load_local_weights(model, pretrained, name=name)
        return model

    return build


MODELS.register(
    "unet",
    unet_builder("unet", strided=False, dilation=1),
    task="segmentation",
    description="U-Net: max-pool down, bilinear upsampling up (width 32, depth 4)",
)
MODELS.register(
    "unet2",
    unet_builder("unet2", strided=True, dilation=1),
    task="segmentation",
    description="U-Net with stride-2 conv down and transposed conv up (width 32, depth 4)",
)
MODELS.register(
    "dilated_unet",
    unet_builder("dilated_unet", strided=True, dilation=2),
    task="segmentation",
    description="UNet2 with dilation 2 in the down and up blocks (width 32, depth 4)",
)
