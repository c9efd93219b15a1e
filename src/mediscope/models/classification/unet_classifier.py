"""A UNet encoder used as a classifier (S2): double-conv stages, then a pooled linear head.

The study tried UNet's contracting path as an image classifier. Only the encoder is
built here: a classifier has no use for the decoder, whose job is per-pixel output.

::

    image → [double conv] → pool → [double conv] → ... → global pool → linear → logits
              stage 0                 stage 1            (head)
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import torch
from torch import nn

from mediscope.models.pretrained import load_local_weights
from mediscope.registry import MODELS


def double_conv(in_chans: int, out_chans: int) -> nn.Sequential:
    """UNet's unit: two 3x3 conv-BN-ReLU layers at one resolution."""
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_chans),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_chans),
        nn.ReLU(inplace=True),
    )


class UNetClassifier(nn.Module):
    """UNet's encoder (double convs, max-pool between them) with a pooled linear head.

    Stage 0 works at full resolution; every later stage halves the resolution with a
    max-pool and doubles the channels, as in UNet's contracting path.

    Args:
        num_classes: Number of output classes.
        in_chans: Input channels (1 for grayscale, 3 for RGB).
        width: Channels of the first stage; doubled per stage (32 → 64 → 128 → 256).
        depth: Number of encoder stages.
        drop_rate: Dropout before the linear head.

    Example:
        >>> model = UNetClassifier(num_classes=3, in_chans=1, width=8)
        >>> model(torch.zeros(2, 1, 48, 40)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int = 3,
        width: int = 32,
        depth: int = 4,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        widths = [width * 2**i for i in range(depth)]
        stages: list[nn.Module] = [double_conv(in_chans, widths[0])]
        for previous, current in pairwise(widths):
            # ceil_mode keeps the last row/column of odd-sized maps instead of dropping it.
            stages.append(
                nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), double_conv(previous, current))
            )
        self.encoder = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.encoder(x)).flatten(1)
        out: torch.Tensor = self.head(self.drop(features))
        return out

    def backbone_stages(self) -> list[nn.Module]:
        """The encoder stages in input → output order (what ``freeze: N`` counts)."""
        return list(self.encoder)

    def classifier(self) -> nn.Module:
        """The linear head, never frozen."""
        return self.head


@MODELS.register(
    "unet_classifier",
    task="classification",
    description="UNet encoder (double convs, 32..256) with a pooled linear head",
)
def build_unet_classifier(
    *,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool | str | Path = False,
    width: int = 32,
    depth: int = 4,
    drop_rate: float = 0.0,
) -> nn.Module:
    """Builds :class:`UNetClassifier`; ``pretrained`` may only be a local weights file."""
    model = UNetClassifier(
        num_classes=num_classes, in_chans=in_chans, width=width, depth=depth, drop_rate=drop_rate
    )
    load_local_weights(model, pretrained, name="unet_classifier")
    return model
