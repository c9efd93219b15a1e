"""U-Net and the study's variants: ``unet`` (max-pool down, upsampling up), ``unet2``
(stride-2 convolution down, transposed convolution up) and ``dilated_unet`` (unet2 with
dilation 2 in the down and up blocks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mediscope.errors import ConfigError
from mediscope.models.pretrained import load_local_weights
from mediscope.models.segmentation.blocks import DoubleConv
from mediscope.models.segmentation.padding import PadToMultiple
from mediscope.registry import MODELS


class UNet(nn.Module):
    """Encoder-decoder with skip connections.

    Args:
        num_classes: Output channels (classes, background included).
        in_chans: Input channels.
        width: Channels of the first level, doubled per level.
        depth: Number of downsamplings (the input side must divide by ``2 ** depth``;
            wrap in :class:`PadToMultiple` for any size).
        strided: Stride-2 convolutions down and transposed convolutions up (UNet2)
            instead of max-pooling and bilinear upsampling.
        dilation: Dilation of the convolutions in the down and up blocks.
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
        channels = [width * 2**i for i in range(depth + 1)]
        self.stem = DoubleConv(in_chans, channels[0])
        self.downs = nn.ModuleList()
        self.down_blocks = nn.ModuleList()
        for i in range(depth):
            if strided:
                down: nn.Module = nn.Conv2d(channels[i], channels[i], 3, stride=2, padding=1)
            else:
                down = nn.MaxPool2d(2)
            self.downs.append(down)
            self.down_blocks.append(DoubleConv(channels[i], channels[i + 1], dilation=dilation))
        self.ups = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for i in reversed(range(depth)):
            if strided:
                up: nn.Module = nn.ConvTranspose2d(channels[i + 1], channels[i], 2, stride=2)
            else:
                up = nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                    nn.Conv2d(channels[i + 1], channels[i], 1),
                )
            self.ups.append(up)
            self.up_blocks.append(DoubleConv(2 * channels[i], channels[i], dilation=dilation))
        self.head = nn.Conv2d(channels[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = [x]
        for down, block in zip(self.downs, self.down_blocks, strict=True):
            x = block(down(x))
            skips.append(x)
        skips.pop()
        for up, block in zip(self.ups, self.up_blocks, strict=True):
            x = block(torch.cat([up(x), skips.pop()], dim=1))
        out: torch.Tensor = self.head(x)
        return out

    def backbone_stages(self) -> list[nn.Module]:
        """The encoder levels, input → output (what ``freeze: N`` counts)."""
        return [
            self.stem,
            *(nn.Sequential(d, b) for d, b in zip(self.downs, self.down_blocks, strict=True)),
        ]

    def classifier(self) -> nn.Module:
        """The 1x1 output convolution, never frozen."""
        return self.head


def _check_params(name: str, params: dict[str, Any]) -> None:
    if params:
        raise ConfigError(
            f"{name} has no parameter '{next(iter(params))}'",
            where=f"model.params.{next(iter(params))}",
            hint="valid: width, depth",
        )


def _build(
    name: str,
    *,
    num_classes: int,
    in_chans: int,
    pretrained: bool | str | Path,
    width: int,
    depth: int,
    strided: bool,
    dilation: int,
    params: dict[str, Any],
) -> nn.Module:
    _check_params(name, params)
    if width < 1 or depth < 1:
        raise ConfigError("width and depth must be at least 1", where="model.params")
    net = UNet(
        num_classes=num_classes,
        in_chans=in_chans,
        width=width,
        depth=depth,
        strided=strided,
        dilation=dilation,
    )
    model = PadToMultiple(net, 2**depth)
    load_local_weights(model, pretrained, name=name)
    return model


@MODELS.register("unet", task="segmentation", description="U-Net: max-pool down, upsample up")
def build_unet(
    *,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool | str | Path = False,
    width: int = 32,
    depth: int = 4,
    **params: Any,
) -> nn.Module:
    """U-Net for inputs of any size."""
    return _build(
        "unet",
        num_classes=num_classes,
        in_chans=in_chans,
        pretrained=pretrained,
        width=width,
        depth=depth,
        strided=False,
        dilation=1,
        params=params,
    )


@MODELS.register(
    "unet2", task="segmentation", description="U-Net: stride-2 conv down, transposed conv up"
)
def build_unet2(
    *,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool | str | Path = False,
    width: int = 32,
    depth: int = 4,
    **params: Any,
) -> nn.Module:
    """UNet2 (the study's): strided convolutions instead of pooling and upsampling."""
    return _build(
        "unet2",
        num_classes=num_classes,
        in_chans=in_chans,
        pretrained=pretrained,
        width=width,
        depth=depth,
        strided=True,
        dilation=1,
        params=params,
    )


@MODELS.register(
    "dilated_unet", task="segmentation", description="UNet2 with dilation 2 in its blocks"
)
def build_dilated_unet(
    *,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool | str | Path = False,
    width: int = 32,
    depth: int = 4,
    **params: Any,
) -> nn.Module:
    """DilatedUNet (the study's): UNet2 with dilation 2 in the down and up blocks."""
    return _build(
        "dilated_unet",
        num_classes=num_classes,
        in_chans=in_chans,
        pretrained=pretrained,
        width=width,
        depth=depth,
        strided=True,
        dilation=2,
        params=params,
    )
