"""A small plain CNN: four conv blocks and a pooled linear head (S2's baseline)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mediscope.models.pretrained import load_local_weights
from mediscope.params import forwards_keywords
from mediscope.registry import MODELS


class SimpleCNN(nn.Module):
    """Conv-BN-ReLU blocks, each halving the resolution, then global pooling and a head.

    Args:
        num_classes: Number of output classes.
        in_chans: Input channels.
        width: Channels of the first block; doubled per block.
        depth: Number of blocks.
        drop_rate: Dropout before the head.
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
        blocks: list[nn.Module] = []
        channels = in_chans
        for i in range(depth):
            out = width * 2**i
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(channels, out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(out),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(out, out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(out),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(2),
                )
            )
            channels = out
        self.stages = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.stages(x)).flatten(1)
        out: torch.Tensor = self.head(self.drop(features))
        return out

    def backbone_stages(self) -> list[nn.Module]:
        """The blocks in input → output order (what ``freeze: N`` counts)."""
        return list(self.stages)

    def classifier(self) -> nn.Module:
        """The head, never frozen."""
        return self.head


@MODELS.register("simple_cnn", task="classification", description="small plain CNN, 4 blocks")
@forwards_keywords(SimpleCNN)
def build_simple_cnn(
    *, num_classes: int, in_chans: int = 3, pretrained: bool | str | Path = False, **params: int
) -> nn.Module:
    """Builds :class:`SimpleCNN`; ``pretrained`` may only be a local weights file."""
    model = SimpleCNN(num_classes=num_classes, in_chans=in_chans, **params)
    load_local_weights(model, pretrained, name="simple_cnn")
    return model
