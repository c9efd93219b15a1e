"""Classifiers from timm: registered short names and any ``timm:<name>``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from mediscope.models.pretrained import ensure_weights_reachable, load_weights_file
from mediscope.registry import MODELS

# Registered short name → timm architecture.
TIMM_ALIASES: dict[str, str] = {
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "mobilenet_v2": "mobilenetv2_100",
    "mobilenetv3_small": "mobilenetv3_small_100",
    **{f"efficientnet_b{i}": f"efficientnet_b{i}" for i in range(8)},
}


def build_timm_classifier(
    arch: str,
    *,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool | str | Path = False,
    **params: Any,
) -> nn.Module:
    """Creates timm's ``arch`` with a fresh head of ``num_classes`` outputs.

    ``pretrained=True`` uses timm's download (cached weights first, then the network,
    failing at once when offline); a path loads a local file.
    """
    import timm

    if pretrained is True:
        model = _create_downloaded(arch, num_classes=num_classes, in_chans=in_chans, **params)
    else:
        model = timm.create_model(arch, num_classes=num_classes, in_chans=in_chans, **params)
        if pretrained:
            load_weights_file(model, Path(pretrained))
    return model


def _create_downloaded(arch: str, **kwargs: Any) -> nn.Module:
    import timm

    saved = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # the cache first: no network needed if it is there
    try:
        return timm.create_model(arch, pretrained=True, **kwargs)
    except Exception:
        pass
    finally:
        if saved is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved
    ensure_weights_reachable(f"timm model '{arch}'")
    return timm.create_model(arch, pretrained=True, **kwargs)


def _register(name: str, arch: str) -> None:
    def build(
        *,
        num_classes: int,
        in_chans: int = 3,
        pretrained: bool | str | Path = False,
        **params: Any,
    ) -> nn.Module:
        return build_timm_classifier(
            arch, num_classes=num_classes, in_chans=in_chans, pretrained=pretrained, **params
        )

    MODELS.register(name, build, task="classification", description=f"timm {arch}")


for _name, _arch in TIMM_ALIASES.items():
    _register(_name, _arch)
