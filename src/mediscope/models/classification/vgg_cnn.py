"""VGG19 + CNN (S2): VGG19's feature blocks, then extra conv layers, then the head.

The study took this combination from the paper it followed, where it scored best; in
the study it overfitted in the added CNN layers. Those layers form one extra backbone
stage, so ``freeze: 5`` trains only them and the head on top of VGG19's features.

::

    image → VGG19 blocks 1..5 → [conv 3x3 → ... ] → global pool → MLP → logits
             stages 0..4          stage 5 ("CNN")      (head)
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mediscope.models.classification.vgg_skip import (
    VGG19_BLOCKS,
    VGG_WIDTH_FACTORS,
    MLPHead,
    conv_bn,
    vgg_blocks,
)
from mediscope.models.pretrained import load_local_weights
from mediscope.registry import MODELS


def extra_conv_layers(in_chans: int, *, layers: int) -> nn.Sequential:
    """``layers`` 3x3 conv-BN-ReLU layers, halving the channels each time.

    No pooling: VGG19 already reduced the image 32 times, and more pooling would
    reject the small inputs (32 px) the model is meant to accept.
    """
    convs: list[nn.Module] = []
    channels = in_chans
    for _ in range(layers):
        convs.append(conv_bn(channels, channels // 2))
        channels //= 2
    return nn.Sequential(*convs)


class VGGCNN(nn.Module):
    """VGG19 (BN, block shortcuts) followed by extra conv layers and a pooled MLP head.

    Args:
        num_classes: Number of output classes.
        in_chans: Input channels (1 for grayscale, 3 for RGB).
        width: Channels of VGG19's first block (64 in VGG).
        cnn_layers: Extra 3x3 conv layers after VGG19, each halving the channels.
        hidden: Hidden units of the head; by default the channels of the last layer.
        drop_rate: Dropout in the head.
        skip: Shortcuts around VGG19's blocks; False gives plain VGG19.

    Example:
        >>> model = VGGCNN(num_classes=3, width=8)
        >>> model(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int = 3,
        width: int = 64,
        cnn_layers: int = 2,
        hidden: int | None = None,
        drop_rate: float = 0.5,
        skip: bool = True,
    ) -> None:
        super().__init__()
        self.features = vgg_blocks(in_chans=in_chans, width=width, blocks=VGG19_BLOCKS, skip=skip)
        channels = width * VGG_WIDTH_FACTORS[-1]
        self.cnn = extra_conv_layers(channels, layers=cnn_layers)
        channels //= 2**cnn_layers
        self.head = MLPHead(
            in_features=channels,
            hidden=hidden or channels,
            num_classes=num_classes,
            drop_rate=drop_rate,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.cnn(self.features(x)))
        return out

    def backbone_stages(self) -> list[nn.Module]:
        """VGG19's five blocks, then the CNN layers (what ``freeze: N`` counts)."""
        return [*self.features, self.cnn]

    def classifier(self) -> nn.Module:
        """The MLP head, never frozen."""
        return self.head


@MODELS.register(
    "vgg19_cnn",
    task="classification",
    description="VGG19 (BN, block shortcuts) + extra conv layers + MLP head",
)
def build_vgg19_cnn(
    *,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool | str | Path = False,
    width: int = 64,
    cnn_layers: int = 2,
    hidden: int | None = None,
    drop_rate: float = 0.5,
    skip: bool = True,
) -> nn.Module:
    """Builds :class:`VGGCNN`; ``pretrained`` may only be a local weights file."""
    model = VGGCNN(
        num_classes=num_classes,
        in_chans=in_chans,
        width=width,
        cnn_layers=cnn_layers,
        hidden=hidden,
        drop_rate=drop_rate,
        skip=skip,
    )
    load_local_weights(model, pretrained, name="vgg19_cnn")
    return model
