"""segmentation_models_pytorch architectures as ``smp:<Arch>`` with any encoder.

``model: {name: smp:Unet, encoder: resnet34}``; timm encoders are ``tu-<timm name>``
(e.g. ``tu-efficientnet_b0``). The architectures are those of the installed smp
(``smp:Unet``, ``smp:FPN``, ``smp:DeepLabV3Plus``, ...). Nothing downloads unless
``pretrained: true``: then the encoder's ImageNet weights, from the cache or, after a
quick check that the weight host answers, from the network. A path loads a local file.

smp models want sides divisible by the encoder's output stride (32 for most), and some
more than that; :class:`SMPSegmenter` pads to what the model needs and crops back.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mediscope.errors import CheckpointError, ConfigError, DownloadError, UnknownNameError
from mediscope.models.pretrained import ensure_weights_reachable, load_weights_file
from mediscope.models.segmentation.encoder_stages import stages_by_feature
from mediscope.models.segmentation.padding import crop_to, pad_to_multiple
from mediscope.registry import did_you_mean, unknown_name_hint

SMP_PREFIX = "smp:"

#: Keywords mediscope sets itself, and where the user sets them instead.
_RESERVED = {
    "encoder_name": "model.encoder",
    "encoder_weights": "model.pretrained",
    "in_channels": "data.channels",
    "classes": "data.classes",
}
#: Keywords that would change what the model returns (mediscope needs raw logits).
_REFUSED = {
    "activation": "the model must return logits; losses and predictions apply softmax",
    "aux_params": "the classification head makes the model return a tuple",
}
# PAN's feature pyramid attention halves the stride-32 map three more times; below
# 4 x 4 there (128 px in) its pooling has nothing left to pool.
_MIN_SIDE = {"PAN": 128}
# DPT's decoder resamples its ViT's patch grid by 2 before fusing it with the finer
# maps, so the grid must have even sides: multiples of twice the patch stride.
_STRIDE_FACTOR = {"DPT": 2}
# ...and a ViT takes other sizes than the one it was made for only when timm is told so.
_DEFAULTS: dict[str, dict[str, Any]] = {"DPT": {"dynamic_img_size": True}}


def smp_architectures() -> list[str]:
    """The architecture class names of the installed segmentation_models_pytorch."""
    import segmentation_models_pytorch as smp

    return [cls.__name__ for cls in smp.MODEL_ARCHITECTURES_MAPPING.values()]


def check_architecture(arch: str) -> str:
    """Returns smp's spelling of ``arch`` (any case); UnknownNameError if smp lacks it.

    Example:
        >>> check_architecture("deeplabv3plus")
        'DeepLabV3Plus'
    """
    names = smp_architectures()
    for name in names:
        if name.lower() == arch.lower():
            return name
    raise UnknownNameError(
        f"unknown segmentation_models_pytorch architecture '{arch}'",
        hint=unknown_name_hint(SMP_PREFIX + arch, [SMP_PREFIX + n for n in names]),
    )


def check_encoder(encoder: Any) -> str:
    """Returns ``encoder`` if smp knows it (or timm, for ``tu-<name>``); else ConfigError."""
    import segmentation_models_pytorch as smp

    if not isinstance(encoder, str) or not encoder:
        raise ConfigError(
            f"the encoder must be a name, got {encoder!r}",
            where="model.encoder",
            hint="e.g. resnet34, or tu-<timm model> such as tu-efficientnet_b0",
        )
    if encoder.startswith("tu-"):
        import timm

        if not timm.is_model(encoder[3:]):
            raise ConfigError(
                f"unknown timm encoder '{encoder[3:]}'",
                where="model.encoder",
                hint=unknown_name_hint(encoder[3:], timm.list_models(), limit=10)
                + " (any timm model with features_only support, after 'tu-')",
            )
        return encoder
    names = smp.encoders.get_encoder_names()
    if encoder not in names:
        raise ConfigError(
            f"unknown encoder '{encoder}'",
            where="model.encoder",
            hint=unknown_name_hint(encoder, names, limit=20) + ", or tu-<any timm model>",
        )
    return encoder


def check_smp_params(arch: str, encoder: str, params: dict[str, Any]) -> None:
    """Raises ConfigError naming a keyword ``smp.<arch>`` would refuse or ignore.

    Keywords the architecture does not name go to the encoder, which only timm's
    (``tu-``) encoders read: for smp's own encoders they would be silently dropped.
    """
    import segmentation_models_pytorch as smp

    cls = smp.MODEL_ARCHITECTURES_MAPPING[arch.lower()]
    skip = {"self", "kwargs", *_RESERVED, *_REFUSED}
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in skip]
    for key in params:
        if key in _RESERVED:
            raise ConfigError(
                f"smp:{arch}: '{key}' is set by mediscope",
                where=f"model.params.{key}",
                hint=f"set {_RESERVED[key]} instead",
            )
        if key in _REFUSED:
            raise ConfigError(
                f"smp:{arch}: '{key}' is not supported",
                where=f"model.params.{key}",
                hint=_REFUSED[key],
            )
        if key not in valid and not encoder.startswith("tu-"):
            guess = did_you_mean(key, valid)
            raise ConfigError(
                f"smp:{arch} has no parameter '{key}'",
                where=f"model.params.{key}",
                hint=(f"did you mean '{guess}'? " if guess else "") + f"valid: {', '.join(valid)}",
            )


class SMPSegmenter(nn.Module):
    """An smp model for inputs of any size: padded to what it needs, cropped back.

    Args:
        net: The smp model (``encoder`` → ``decoder`` → ``segmentation_head``).
        multiple: The side multiple ``net`` needs (its encoder's output stride).
        min_side: The smallest side ``net`` takes.
        in_chans: Input channels (for the probe that finds the encoder's stages).
    """

    def __init__(self, net: nn.Module, *, multiple: int, min_side: int = 1, in_chans: int = 3):
        super().__init__()
        self.net = net
        self.multiple = multiple
        self.min_side = min_side
        self.in_chans = in_chans
        self._stage_names: list[list[str]] | None = None

    @property
    def encoder(self) -> nn.Module:
        """The smp encoder (the backbone that ``freeze`` freezes)."""
        encoder = self.net.encoder
        assert isinstance(encoder, nn.Module)
        return encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        out = self.net(pad_to_multiple(x, self.multiple, min_side=self.min_side))
        return crop_to(out, height, width)

    def backbone_stages(self) -> list[nn.Module]:
        """The encoder's stages by resolution, input → output (what ``freeze: N`` counts).

        Found once by a probe forward of the encoder; see :mod:`.encoder_stages`.
        """
        if self._stage_names is None:
            side = 2 * max(self.multiple, 32)
            self._stage_names = stages_by_feature(self.encoder, in_chans=self.in_chans, side=side)
        params = dict(self.encoder.named_parameters())
        return [nn.ParameterList([params[n] for n in stage]) for stage in self._stage_names]

    def classifier(self) -> nn.Module:
        """The segmentation head, never frozen."""
        head = self.net.segmentation_head
        assert isinstance(head, nn.Module)
        return head


def build_smp_model(
    arch: str,
    *,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool | str | Path = False,
    encoder: str = "resnet34",
    **params: Any,
) -> nn.Module:
    """Builds ``smp.<arch>`` with ``encoder``, for inputs of any size.

    Args:
        arch: An architecture class name, e.g. ``Unet``, ``FPN``, ``DeepLabV3Plus``.
        num_classes: Output channels (classes, background included).
        in_chans: Input channels.
        pretrained: False (random weights), True (the encoder's ImageNet weights, from
            the cache or downloaded) or a local weights file (a mediscope checkpoint or
            an smp model's state dict).
        encoder: An smp encoder name, or ``tu-<timm name>``.
        **params: Further keywords of the architecture (``decoder_channels``,
            ``encoder_depth``, ...; for ``tu-`` encoders also timm's).

    Raises:
        UnknownNameError: smp has no such architecture.
        ConfigError: An unknown encoder or keyword, or no ImageNet weights to use.
        DownloadError: Weights are needed and the host cannot be reached.

    Example:
        >>> model = build_smp_model("Unet", num_classes=2, encoder="resnet18")
        >>> model(torch.zeros(1, 3, 37, 53)).shape
        torch.Size([1, 2, 37, 53])
    """
    import segmentation_models_pytorch as smp

    arch = check_architecture(arch)
    check_encoder(encoder)
    params = {**_DEFAULTS.get(arch, {}), **params}
    check_smp_params(arch, encoder, params)
    weights = _encoder_weights(encoder) if pretrained is True else None
    cls = smp.MODEL_ARCHITECTURES_MAPPING[arch.lower()]
    try:
        net = cls(
            encoder_name=encoder,
            encoder_weights=weights,
            in_channels=in_chans,
            classes=num_classes,
            **params,
        )
    except (TypeError, ValueError, KeyError, AssertionError, RuntimeError) as exc:
        raise ConfigError(
            f"smp:{arch} with encoder {encoder}: {exc}", where="model.params"
        ) from None
    except Exception as exc:  # the weight download (hub, HTTP) failed half-way
        if weights is None:
            raise
        raise DownloadError(
            f"the ImageNet weights of encoder {encoder} could not be downloaded "
            f"({type(exc).__name__}: {exc})",
            hint="retry, or use 'pretrained: PATH' with a local weights file",
        ) from None
    stride = int(getattr(net.encoder, "output_stride", 32) or 32)
    model = SMPSegmenter(
        net,
        multiple=stride * _STRIDE_FACTOR.get(arch, 1),
        min_side=_MIN_SIDE.get(arch, 1),
        in_chans=in_chans,
    )
    if pretrained is not True and pretrained:
        load_smp_weights(model, Path(pretrained))
    return model


def _encoder_weights(encoder: str) -> str | bool:
    """What smp needs to fetch ``encoder``'s ImageNet weights; checks they can be had.

    Fails at once, before anything is built, when the weights do not exist or would need
    a download from a host that cannot be reached.
    """
    if encoder.startswith("tu-"):
        import timm.models

        if not timm.models.is_model_pretrained(encoder[3:]):
            raise ConfigError(
                f"timm has no pretrained weights for encoder '{encoder[3:]}'",
                where="model.pretrained",
                hint="use pretrained: false, a local weights file, or another encoder",
            )
        if not _timm_weights_cached(encoder[3:]):
            ensure_weights_reachable(f"encoder {encoder}")
        return True  # smp fetches tu- encoders through timm: True, not a weights name
    import segmentation_models_pytorch as smp

    available = smp.encoders.encoders[encoder]["pretrained_settings"]
    if "imagenet" not in available:
        raise ConfigError(
            f"smp has no ImageNet weights for encoder '{encoder}' (only {', '.join(available)})",
            where="model.pretrained",
            hint="use pretrained: false, a local weights file, or another encoder",
        )
    setting = available["imagenet"]
    files = ("config.json", "model.safetensors")
    if not _hub_cached(setting["repo_id"], files, setting["revision"]):
        ensure_weights_reachable(f"encoder {encoder}")
    return "imagenet"


def _hub_cached(repo_id: str, files: tuple[str, ...], revision: str | None = None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return all(
        isinstance(try_to_load_from_cache(repo_id, name, revision=revision), str) for name in files
    )


def _timm_weights_cached(name: str) -> bool:
    import timm.models

    cfg = timm.models.get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        return False
    return _hub_cached(repo, ("model.safetensors",)) or _hub_cached(repo, ("pytorch_model.bin",))


def load_smp_weights(model: SMPSegmenter, path: Path) -> list[str]:
    """Loads a weights file into ``model``; returns the keys left as they were.

    The file may come from mediscope (a checkpoint or state dict of the padded model,
    keys ``net.…``) or from smp itself (the bare model's state dict, keys ``encoder.…``).
    """
    try:
        return load_weights_file(model, path)
    except CheckpointError as exc:
        if "no tensor" not in exc.message:
            raise  # unreadable: the bare layout would not read it either
    return load_weights_file(model.net, path)
