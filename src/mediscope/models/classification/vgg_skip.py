"""VGG16 / VGG19 with skip connections (S2's best single models).

The study's VGGs carried "many skip connections", which it credits for converging and
for overfitting less than the plain networks. Here every VGG block gets a shortcut
from its input to its output (a 1x1 projection where the channels change), added
before the block's max-pool, so each block is residual and gradients reach the stem.

::

    image → block 1 → block 2 → block 3 → block 4 → block 5 → global pool → MLP → logits
            x ─→ convs ─→ (+) ─→ ReLU → max-pool
            └─ 1x1 conv ─┘
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mediscope.models.pretrained import load_local_weights
from mediscope.registry import MODELS

# Convolutions per block; the channels are width × (1, 2, 4, 8, 8) as in VGG.
VGG16_BLOCKS = (2, 2, 3, 3, 3)
VGG19_BLOCKS = (2, 2, 4, 4, 4)
VGG_WIDTH_FACTORS = (1, 2, 4, 8, 8)


def conv_bn(in_chans: int, out_chans: int, *, relu: bool = True) -> nn.Sequential:
    """A 3x3 convolution with batch norm, followed by ReLU unless ``relu`` is False."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_chans),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SkipBlock(nn.Module):
    """A VGG block (``convs`` 3x3 conv-BN layers) with a shortcut, then a 2x2 max-pool.

    Args:
        in_chans: Input channels.
        out_chans: Output channels of every convolution.
        convs: Number of 3x3 convolutions.
        skip: Add the shortcut; without it the block is plain VGG.
    """

    def __init__(self, *, in_chans: int, out_chans: int, convs: int, skip: bool = True) -> None:
        super().__init__()
        inputs = [in_chans] + [out_chans] * (convs - 1)
        # The last conv's ReLU comes after the addition, as in a residual block.
        self.body = nn.Sequential(
            *(conv_bn(c, out_chans, relu=i < convs - 1) for i, c in enumerate(inputs))
        )
        self.shortcut: nn.Module | None = None
        if skip:
            self.shortcut = (
                nn.Identity()
                if in_chans == out_chans
                else nn.Sequential(
                    nn.Conv2d(in_chans, out_chans, 1, bias=False), nn.BatchNorm2d(out_chans)
                )
            )
        self.act = nn.ReLU(inplace=True)
        # ceil_mode keeps the last row/column of odd-sized maps instead of dropping it.
        self.pool = nn.MaxPool2d(2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        pooled: torch.Tensor = self.pool(self.act(out))
        return pooled


def vgg_blocks(
    *, in_chans: int, width: int, blocks: tuple[int, ...], skip: bool = True
) -> nn.Sequential:
    """VGG's five blocks (BN variant) with ``blocks[i]`` convolutions in block ``i``."""
    stages: list[nn.Module] = []
    channels = in_chans
    for convs, factor in zip(blocks, VGG_WIDTH_FACTORS, strict=True):
        stages.append(
            SkipBlock(in_chans=channels, out_chans=width * factor, convs=convs, skip=skip)
        )
        channels = width * factor
    return nn.Sequential(*stages)


class MLPHead(nn.Module):
    """Global average pooling, then Linear-ReLU-Dropout-Linear (VGG's head, smaller).

    Pooling first (instead of VGG's flatten of a 7x7 map) frees the input size and
    removes most of VGG's head parameters.

    Args:
        in_features: Channels of the last feature map.
        hidden: Units of the hidden layer.
        num_classes: Number of output classes.
        drop_rate: Dropout after the hidden layer.
    """

    def __init__(
        self, *, in_features: int, hidden: int, num_classes: int, drop_rate: float = 0.5
    ) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.mlp = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.mlp(self.pool(features).flatten(1))
        return out


class VGGSkip(nn.Module):
    """VGG (BN) whose blocks have shortcuts, with a pooled MLP head.

    Args:
        num_classes: Number of output classes.
        in_chans: Input channels (1 for grayscale, 3 for RGB).
        blocks: Convolutions per block: :data:`VGG16_BLOCKS` or :data:`VGG19_BLOCKS`.
        width: Channels of the first block (64 in VGG); later blocks have 2, 4, 8, 8 ×.
        hidden: Hidden units of the head; by default the channels of the last block.
        drop_rate: Dropout in the head.
        skip: Shortcuts around every block; False gives plain VGG.

    Example:
        >>> model = VGGSkip(num_classes=3, blocks=VGG16_BLOCKS, width=8)
        >>> model(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int = 3,
        blocks: tuple[int, ...] = VGG19_BLOCKS,
        width: int = 64,
        hidden: int | None = None,
        drop_rate: float = 0.5,
        skip: bool = True,
    ) -> None:
        super().__init__()
        self.features = vgg_blocks(in_chans=in_chans, width=width, blocks=blocks, skip=skip)
        channels = width * VGG_WIDTH_FACTORS[-1]
        self.head = MLPHead(
            in_features=channels,
            hidden=hidden or channels,
            num_classes=num_classes,
            drop_rate=drop_rate,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out

    def backbone_stages(self) -> list[nn.Module]:
        """The five VGG blocks in input → output order (what ``freeze: N`` counts)."""
        return list(self.features)

    def classifier(self) -> nn.Module:
        """The MLP head, never frozen."""
        return self.head


def _register_vgg(name: str, blocks: tuple[int, ...], description: str) -> None:
    def build(
        *,
        num_classes: int,
        in_chans: int = 3,
        pretrained: bool | str | Path = False,
        width: int = 64,
        hidden: int | None = None,
        drop_rate: float = 0.5,
        skip: bool = True,
    ) -> nn.Module:
        model = VGGSkip(
            num_classes=num_classes,
            in_chans=in_chans,
            blocks=blocks,
            width=width,
            hidden=hidden,
            drop_rate=drop_rate,
            skip=skip,
        )
        load_local_weights(model, pretrained, name=name)
        return model

    build.__doc__ = f"Builds {name} (:class:`VGGSkip`); ``pretrained`` may only be a local file."
    MODELS.register(name, build, task="classification", description=description)


_register_vgg("vgg16_skip", VGG16_BLOCKS, "VGG16 (BN) with a shortcut around every block")
_register_vgg("vgg19_skip", VGG19_BLOCKS, "VGG19 (BN) with a shortcut around every block")
