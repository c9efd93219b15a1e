"""SegNet (S4): the encoder's max-pool indices are passed to the decoder's max-unpooling.

::

    image → [double conv → max-pool ──indices──┐] x depth
                                               ↓
    logits ← 1x1 conv ← [double conv ← max-unpool] x depth

No feature maps cross from the encoder to the decoder, only the positions of the maxima,
so the decoder puts each value back where the encoder found it: boundaries stay sharp
at a fraction of a U-Net's memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mediscope.models.pretrained import load_local_weights
from mediscope.models.segmentation.blocks import DoubleConv
from mediscope.models.segmentation.keywords import check_width_depth, reject_unknown_params
from mediscope.models.segmentation.padding import crop_to, pad_to_multiple
from mediscope.registry import MODELS


class SegNet(nn.Module):
    """Encoder-decoder where only the pooling indices cross over; any input size.

    Args:
        num_classes: Output channels (classes, background included).
        in_chans: Input channels.
        width: Channels of the first level, doubled per level.
        depth: Number of pool / unpool pairs; the input is padded to a multiple of
            ``2 ** depth`` and the output cropped back.

    Example:
        >>> model = SegNet(num_classes=2, width=4, depth=2)
        >>> model(torch.zeros(1, 3, 37, 53)).shape
        torch.Size([1, 2, 37, 53])
    """

    def __init__(
        self, *, num_classes: int, in_chans: int = 3, width: int = 32, depth: int = 4
    ) -> None:
        super().__init__()
        self.multiple = 2**depth
        channels = [width * 2**i for i in range(depth)]
        self.encoders = nn.ModuleList(
            DoubleConv(c_in, c_out)
            for c_in, c_out in zip([in_chans, *channels[:-1]], channels, strict=True)
        )
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2)
        # The decoder mirrors the encoder: level i goes from channels[i] to channels[i-1].
        reversed_channels = channels[::-1]
        self.decoders = nn.ModuleList(
            DoubleConv(c_in, c_out)
            for c_in, c_out in zip(
                reversed_channels, [*reversed_channels[1:], channels[0]], strict=True
            )
        )
        self.head = nn.Conv2d(channels[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = pad_to_multiple(x, self.multiple)
        indices = []
        for encoder in self.encoders:
            x, index = self.pool(encoder(x))
            indices.append(index)
        for decoder in self.decoders:
            x = decoder(self.unpool(x, indices.pop()))
        return crop_to(self.head(x), height, width)

    def backbone_stages(self) -> list[nn.Module]:
        """The encoder levels, input → output (what ``freeze: N`` counts)."""
        return list(self.encoders)

    def classifier(self) -> nn.Module:
        """The 1x1 output convolution, never frozen."""
        return self.head


@MODELS.register(
    "segnet",
    task="segmentation",
    description="SegNet: max-pool indices passed to max-unpooling (width 32, depth 4)",
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
    """Builds :class:`SegNet`; ``pretrained`` may only be a local weights file.

    Raises:
        ConfigError: An unknown keyword, a bad width or depth, or ``pretrained: true``.
    """
    reject_unknown_params("segnet", params)
    check_width_depth(width, depth)
    model = SegNet(num_classes=num_classes, in_chans=in_chans, width=width, depth=depth)
    load_local_weights(model, pretrained, name="segnet")
    return model
