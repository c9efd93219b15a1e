"""segmentation_models_pytorch architectures as ``smp:<Arch>`` with any encoder.

``model: {name: smp:Unet, encoder: resnet34}``; timm encoders are ``tu-<timm name>``
(e.g. ``tu-efficientnet_b0``). Nothing downloads unless ``pretrained: true`` (then the
encoder's ImageNet weights, after a quick check that the host answers); a path loads a
local weights file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from mediscope.errors import ConfigError, UnknownNameError
from mediscope.models.pretrained import ensure_weights_reachable, load_weights_file
from mediscope.models.segmentation.padding import PadToMultiple
from mediscope.registry import unknown_name_hint

SMP_PREFIX = "smp:"


def smp_architectures() -> list[str]:
    """The architecture class names of the installed segmentation_models_pytorch."""
    import segmentation_models_pytorch as smp

    names = []
    for key in smp.MODEL_ARCHITECTURES_MAPPING:
        cls = smp.MODEL_ARCHITECTURES_MAPPING[key]
        names.append(cls.__name__)
    return names


def check_architecture(arch: str) -> None:
    """Raises UnknownNameError for an architecture smp does not have."""
    names = smp_architectures()
    if arch not in names:
        raise UnknownNameError(
            f"unknown segmentation_models_pytorch architecture '{arch}'",
            hint=unknown_name_hint(SMP_PREFIX + arch, [SMP_PREFIX + n for n in names]),
        )


def _check_encoder(encoder: str) -> None:
    import segmentation_models_pytorch as smp

    if encoder.startswith("tu-"):
        import timm

        if not timm.is_model(encoder[3:]):
            raise ConfigError(
                f"unknown timm encoder '{encoder[3:]}'",
                where="model.encoder",
                hint=unknown_name_hint(encoder[3:], timm.list_models(), limit=10),
            )
        return
    names = smp.encoders.get_encoder_names()
    if encoder not in names:
        raise ConfigError(
            f"unknown encoder '{encoder}'",
            where="model.encoder",
            hint=unknown_name_hint(encoder, names, limit=20) + ", or tu-<any timm model>",
        )


def build_smp_model(
    arch: str,
    *,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool | str | Path = False,
    encoder: str = "resnet34",
    **params: Any,
) -> nn.Module:
    """Builds ``smp.<arch>`` for inputs of any size (padded to a multiple of 32).

    Args:
        arch: An architecture class name, e.g. ``Unet``, ``FPN``, ``DeepLabV3Plus``.
        num_classes: Output channels.
        in_chans: Input channels.
        pretrained: False, True (the encoder's ImageNet weights, downloaded) or a file.
        encoder: An smp encoder name, or ``tu-<timm name>``.
        **params: Further keywords of the architecture (``decoder_channels``, ...).
    """
    import segmentation_models_pytorch as smp

    check_architecture(arch)
    _check_encoder(encoder)
    weights = None
    if pretrained is True:
        ensure_weights_reachable(f"encoder {encoder}")
        weights = "imagenet"
    try:
        net = smp.create_model(
            arch,
            encoder_name=encoder,
            encoder_weights=weights,
            in_channels=in_chans,
            classes=num_classes,
            **params,
        )
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"smp:{arch}: {exc}", where="model.params") from None
    stride = int(getattr(net.encoder, "output_stride", 32) or 32)
    model = PadToMultiple(net, stride)
    if pretrained and pretrained is not True:
        load_weights_file(model, Path(pretrained))
    return model
