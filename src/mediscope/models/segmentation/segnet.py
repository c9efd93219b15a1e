"""SegNet: the encoder's max-pool indices are passed to the decoder's max-unpooling."""

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


class SegNet(nn.Module):
    """Encoder-decoder without skip features: only the pooling indices cross over.

    Args:
        num_classes: Output channels.
        in_chans: Input channels.
        width: Channels of the first level, doubled per level.
        depth: Number of pool / unpool pairs.
    """

    def __init__(self, *, num_classes: int, in_chans: int = 3, width: int = 32, depth: int = 4):
        super().__init__()
        channels = [width * 2**i for i in range(depth)]
        ins = [in_chans, *channels[:-1]]
        self.encoders = nn.ModuleList(DoubleConv(i, o) for i, o in zip(ins, channels, strict=True))
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2)
        outs = [*channels[:-1][::-1], channels[0]]
        self.decoders = nn.ModuleList(
            DoubleConv(i, o) for i, o in zip(channels[::-1], outs, strict=True)
        )
        self.head = nn.Conv2d(channels[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        indices = []
        for encoder in self.encoders:
            x, index = self.pool(encoder(x))
            indices.append(index)
        for decoder in self.decoders:
            x = decoder(self.unpool(x, indices.pop()))
        out: torch.Tensor = self.head(x)
        return out

    def backbone_stages(self) -> list[nn.Module]:
        """The encoder levels, input → output."""
        return list(self.encoders)

    def classifier(self) -> nn.Module:
        """The 1x1 output convolution, never frozen."""
        return self.head


@MODELS.register(
    "segnet", task="segmentation", description="SegNet: max-pool indices passed to unpooling"
)
def build_segnet(
    *,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool | str | Path = False,
    width: int = 32,
    depth: int = 4,
    **params: Any,
) -> nn.Module:
    """SegNet for inputs of any size."""
    if params:
        key = next(iter(params))
        raise ConfigError(
            f"segnet has no parameter '{key}'",
            where=f"model.params.{key}",
            hint="valid: width, depth",
        )
    model = PadToMultiple(
        SegNet(num_classes=num_classes, in_chans=in_chans, width=width, depth=depth), 2**depth
    )
    load_local_weights(model, pretrained, name="segnet")
    return model
