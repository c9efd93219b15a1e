"""Segmentation models: the four study architectures and smp:<Arch>, any input size."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from mediscope.errors import CheckpointError, ConfigError, DownloadError, UnknownNameError
from mediscope.models import build_model, model_names, resolve_model
from mediscope.models import pretrained as pretrained_module
from mediscope.models.freeze import apply_freeze, backbone_stages
from mediscope.models.segmentation import smp_models

STUDY = ("segnet", "unet", "unet2", "dilated_unet")
TINY = {"width": 4, "depth": 3}
# A small smp model that builds in a fraction of a second, offline.
SMP_TINY: dict[str, Any] = {
    "encoder": "resnet18",
    "encoder_depth": 3,
    "decoder_channels": [32, 16, 8],
}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # These models are tiny: on a busy shared CPU, extra threads only wait for each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def seg(name: str, num_classes: int = 2, **params: Any) -> nn.Module:
    return build_model(name, task="segmentation", num_classes=num_classes, **params)


def modules(model: nn.Module, kind: type[nn.Module]) -> list[Any]:
    return [m for m in model.modules() if isinstance(m, kind)]


def closed_port() -> int:
    with socket.socket() as probe:  # a port nobody listens on once this closes
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- registry -------------------------------------------------------------------------


def test_study_models_are_registered_for_segmentation(cli: Any) -> None:
    assert model_names("segmentation")[:4] == list(STUDY)
    assert not set(STUDY) & set(model_names("classification"))
    listing = cli("list", "models")
    assert listing.code == 0
    for name in STUDY:
        assert any(
            line.split()[:2] == [name, "segmentation"] for line in listing.out.splitlines()
        ), name


def test_default_study_models_stay_small() -> None:
    # Width 32 and 4 levels: small enough to train on a laptop CPU.
    counts = {name: sum(p.numel() for p in seg(name).parameters()) for name in STUDY}
    assert counts["segnet"] < 2_000_000
    assert all(count < 9_000_000 for count in counts.values()), counts


# -- any input size -------------------------------------------------------------------


@pytest.mark.parametrize("name", STUDY)
@pytest.mark.parametrize("size", [(64, 64), (37, 53), (5, 9), (1, 1)])
def test_any_input_size_gives_logits_of_that_size(name: str, size: tuple[int, int]) -> None:
    model = seg(name, num_classes=3, **TINY).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 3, *size)
    assert torch.isfinite(out).all()


def test_cropping_keeps_the_image_where_it_was() -> None:
    # Padding only at the bottom and right: the top-left pixels of a padded input give
    # the same logits as the input of the exact multiple they were cut from.
    model = seg("unet", **TINY).eval()
    image = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        whole = model(image)
        cut = model(image[..., :41, :57])
    assert cut.shape == (1, 2, 41, 57)
    assert torch.allclose(cut[..., :8, :8], whole[..., :8, :8], atol=1e-5)


def test_grayscale_input() -> None:
    model = seg("unet", in_chans=1, width=4, depth=2)
    assert model(torch.randn(1, 1, 20, 20)).shape == (1, 2, 20, 20)


@pytest.mark.parametrize("size", [(64, 64), (37, 53)])
def test_smp_models_take_any_size(size: tuple[int, int]) -> None:
    unet = seg("smp:Unet", num_classes=3, **SMP_TINY).eval()
    fpn = seg("smp:FPN", encoder="tu-mobilenetv3_small_050").eval()
    with torch.no_grad():
        assert unet(torch.randn(2, 3, *size)).shape == (2, 3, *size)
        assert fpn(torch.randn(1, 3, *size)).shape == (1, 2, *size)
    assert unet.multiple == 8  # type: ignore[operator]  # encoder depth 3: stride 8


def test_smp_architecture_with_a_minimum_side() -> None:
    # PAN pools its stride-32 map three more times: small inputs are padded up to 128.
    model = seg("smp:PAN", encoder="resnet18").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 20, 30)).shape == (1, 2, 20, 30)


# -- architectures ----------------------------------------------------------------------


def test_segnet_passes_pooling_indices_to_unpooling() -> None:
    model = seg("segnet", **TINY)
    pools, unpools = modules(model, nn.MaxPool2d), modules(model, nn.MaxUnpool2d)
    assert len(pools) == len(unpools) == 1 and pools[0].return_indices
    assert not modules(model, nn.ConvTranspose2d) and not modules(model, nn.Upsample)
    pooled: list[torch.Tensor] = []
    unpooled: list[torch.Tensor] = []
    pools[0].register_forward_hook(lambda _m, _i, out: pooled.append(out[1]))
    unpools[0].register_forward_pre_hook(lambda _m, args: unpooled.append(args[1]))
    model(torch.randn(2, 3, 37, 53))
    assert len(pooled) == len(unpooled) == 3
    # The deepest pooling's indices are unpooled first, the same tensors, not copies.
    assert all(u is p for u, p in zip(unpooled, reversed(pooled), strict=True))


def test_segnet_decoder_has_no_skip_features() -> None:
    model = seg("segnet", width=4, depth=3)
    first_convs = [block[0].in_channels for block in model.decoders]  # type: ignore[attr-defined]
    assert first_convs == [16, 8, 4]  # the unpooled map only, no concatenation


def test_unet_pools_and_upsamples() -> None:
    model = seg("unet", **TINY)
    assert len(modules(model, nn.MaxPool2d)) == 3 and len(modules(model, nn.Upsample)) == 3
    assert not modules(model, nn.ConvTranspose2d)
    # skip concatenations: each decoder block takes twice the channels of its level
    up_inputs = [block[0].in_channels for block in model.up_blocks]  # type: ignore[attr-defined]
    assert up_inputs == [32, 16, 8]


def test_unet2_strides_instead_of_pooling() -> None:
    model = seg("unet2", **TINY)
    assert not modules(model, nn.MaxPool2d) and not modules(model, nn.Upsample)
    assert len(modules(model, nn.ConvTranspose2d)) == 3
    assert len([c for c in modules(model, nn.Conv2d) if c.stride == (2, 2)]) == 3
    assert {c.dilation for c in modules(model, nn.Conv2d)} == {(1, 1)}


def test_dilated_unet_is_unet2_with_dilation_two_in_its_blocks() -> None:
    model = seg("dilated_unet", **TINY)
    assert not modules(model, nn.MaxPool2d) and len(modules(model, nn.ConvTranspose2d)) == 3
    blocks = [*(down[1] for down in model.downs), *model.up_blocks]  # type: ignore[attr-defined]
    block_convs = [c for block in blocks for c in modules(block, nn.Conv2d)]
    assert len(block_convs) == 12 and all(c.dilation == (2, 2) for c in block_convs)
    assert all(c.padding == (2, 2) for c in block_convs)  # the size is kept
    # the stem and the learned down-sampling keep dilation 1, as in UNet2
    assert all(c.dilation == (1, 1) for c in modules(model.stem, nn.Conv2d))  # type: ignore[arg-type]


# -- training -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*STUDY, "smp:Unet"])
def test_one_step_reaches_and_changes_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    # smp keeps the layers a shallower encoder skips: a full encoder uses all its weights.
    params = {"encoder": "resnet18"} if name.startswith("smp:") else {"width": 4, "depth": 2}
    model = seg(name, **params)
    x = torch.randn(2, 3, 37, 53)
    target = (x[:, 0] > 0).long()
    before = [p.detach().clone() for p in model.parameters()]
    loss = nn.functional.cross_entropy(model(x), target)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    assert nn.functional.cross_entropy(model(x), target) < loss


# -- errors ---------------------------------------------------------------------------------


def test_unknown_parameter_is_named() -> None:
    with pytest.raises(ConfigError, match=r"model.params.widht: unet has no parameter 'widht'"):
        seg("unet", widht=8)
    with pytest.raises(ConfigError, match="did you mean 'depth'"):
        seg("dilated_unet", detph=3)
    with pytest.raises(ConfigError, match="model.encoder: segnet has no encoder.*smp:<Arch>"):
        seg("segnet", encoder="resnet34")


@pytest.mark.parametrize("bad", [{"width": 0}, {"depth": 1.5}, {"depth": True}, {"width": "8"}])
def test_width_and_depth_are_whole_numbers(bad: dict[str, Any]) -> None:
    key = next(iter(bad))
    with pytest.raises(ConfigError, match=f"model.params.{key}: {key} must be a whole number"):
        seg("unet2", **bad)


def test_smp_names_encoders_and_params_are_checked() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'smp:Unet'.*smp:FPN"):
        seg("smp:Unnet")
    with pytest.raises(ConfigError, match="model.encoder: unknown encoder 'resnet19'.*resnet18"):
        seg("smp:Unet", encoder="resnet19")
    with pytest.raises(ConfigError, match="unknown timm encoder 'resnet19x'"):
        seg("smp:Unet", encoder="tu-resnet19x")
    with pytest.raises(ConfigError, match="did you mean 'decoder_channels'"):
        seg("smp:Unet", encoder="resnet18", decoder_chanels=[8])
    with pytest.raises(ConfigError, match="model.params.activation: .*logits"):
        seg("smp:Unet", encoder="resnet18", activation="sigmoid")
    with pytest.raises(ConfigError, match="'classes' is set by mediscope; set data.classes"):
        seg("smp:Unet", encoder="resnet18", classes=3)
    with pytest.raises(ConfigError, match="model.params: smp:Unet with encoder resnet18"):
        seg("smp:Unet", encoder="resnet18", encoder_depth=3)  # decoder_channels has 5
    with pytest.raises(UnknownNameError, match="smp models are segmentation models"):
        build_model("smp:Unet", task="classification", num_classes=2)


def test_smp_architecture_names_ignore_case() -> None:
    assert resolve_model("smp:deeplabv3plus", task="segmentation") == "smp"
    model = seg("smp:deeplabv3plus", encoder="resnet18")
    assert type(model.net).__name__ == "DeepLabV3Plus"  # type: ignore[union-attr]


def test_unknown_segmentation_model_lists_study_and_smp_names() -> None:
    with pytest.raises(UnknownNameError) as error:
        resolve_model("unett", task="segmentation")
    assert "did you mean 'unet'" in str(error.value)
    assert "dilated_unet" in str(error.value) and "smp:DeepLabV3Plus" in str(error.value)


# -- pretrained weights ---------------------------------------------------------------------


def test_study_models_have_no_published_weights() -> None:
    for name in STUDY:
        with pytest.raises(ConfigError, match="model.pretrained: .*no published.*path"):
            seg(name, pretrained=True)


def test_smp_pretrained_fails_at_once_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smp_models, "_hub_cached", lambda *a, **k: False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE"):
        seg("smp:Unet", pretrained=True)


@pytest.mark.parametrize("encoder", ["resnet18", "tu-mobilenetv3_small_050"])
def test_smp_pretrained_fails_fast_when_the_host_is_unreachable(
    encoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(smp_models, "_hub_cached", lambda *a, **k: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(pretrained_module, "WEIGHTS_HOST", ("127.0.0.1", closed_port()))
    started = time.perf_counter()
    with pytest.raises(DownloadError, match=f"encoder {encoder} need a download.*pretrained: PATH"):
        seg("smp:Unet", encoder=encoder, pretrained=True)
    assert time.perf_counter() - started < 5


def test_smp_pretrained_asks_smp_for_imagenet_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    monkeypatch.setattr(smp_models, "_hub_cached", lambda *a, **k: False)
    monkeypatch.setattr(smp_models, "ensure_weights_reachable", checked.append)
    assert smp_models._encoder_weights("resnet18") == "imagenet"
    assert smp_models._encoder_weights("tu-mobilenetv3_small_050") is True  # timm's way
    assert checked == ["encoder resnet18", "encoder tu-mobilenetv3_small_050"]
    # Weights smp does not have are refused before any network check.
    with pytest.raises(ConfigError, match="no ImageNet weights for encoder 'resnext101_32x4d'"):
        smp_models._encoder_weights("resnext101_32x4d")
    assert len(checked) == 2


def test_local_weights_file_loads(tmp_path: Path) -> None:
    source = seg("unet", width=4, depth=2)
    path = tmp_path / "unet.pt"
    torch.save(source.state_dict(), path)
    loaded = seg("unet", width=4, depth=2, pretrained=path)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # another number of classes: the encoder loads, the head stays fresh
    other = seg("unet", num_classes=5, width=4, depth=2, pretrained=path)
    assert torch.equal(other.stem[0].weight, source.stem[0].weight)  # type: ignore[index]
    assert other.head.weight.shape[0] == 5  # type: ignore[union-attr]
    with pytest.raises(CheckpointError, match="weights file not found"):
        seg("unet", pretrained=tmp_path / "no.pt")


@pytest.mark.parametrize("layout", ["mediscope", "smp"])
def test_smp_local_weights_in_either_layout(layout: str, tmp_path: Path) -> None:
    source = seg("smp:Unet", **SMP_TINY).eval()
    state = source.state_dict() if layout == "mediscope" else source.net.state_dict()  # type: ignore[operator]
    assert any(k.startswith("net.") for k in state) == (layout == "mediscope")
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    loaded = seg("smp:Unet", pretrained=path, **SMP_TINY).eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable weights file"):
        seg("smp:Unet", pretrained=bad, **SMP_TINY)


# -- freezing ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", STUDY)
def test_freeze_counts_encoder_levels_and_keeps_the_decoder(name: str) -> None:
    model = seg(name, **TINY)
    stages = model.backbone_stages()  # type: ignore[operator]
    assert len(stages) == len(backbone_stages(model)) == (3 if name == "segnet" else 4)
    encoder = {id(p) for stage in stages for p in stage.parameters()}
    for count in range(len(stages) + 1):
        apply_freeze(model, count)
        for i, stage in enumerate(stages):
            assert all(p.requires_grad == (i >= count) for p in stage.parameters())
    apply_freeze(model, "all")
    # Only the encoder half freezes: decoder and head stay trainable.
    assert all(p.requires_grad == (id(p) not in encoder) for p in model.parameters())
    assert all(p.requires_grad for p in model.classifier().parameters())  # type: ignore[operator]


def test_freeze_smp_encoder_by_stages() -> None:
    model = seg("smp:Unet", encoder="resnet18")
    net = model.net  # type: ignore[union-attr]
    stages = backbone_stages(model)
    assert len(stages) == 5  # stem, layer1..layer4
    assert {id(p) for p in stages[0]} == {
        id(p) for m in (net.encoder.conv1, net.encoder.bn1) for p in m.parameters()
    }
    assert {id(p) for p in stages[1]} == {id(p) for p in net.encoder.layer1.parameters()}
    apply_freeze(model, 2)
    assert not any(p.requires_grad for p in net.encoder.layer1.parameters())
    assert all(p.requires_grad for p in net.encoder.layer2.parameters())
    apply_freeze(model, "all")
    encoder = {id(p) for p in net.encoder.parameters()}
    assert all(p.requires_grad == (id(p) not in encoder) for p in model.parameters())
    apply_freeze(model, "none")
    assert all(p.requires_grad for p in model.parameters())


def test_smp_stage_probe_leaves_no_trace() -> None:
    model = seg("smp:FPN", encoder="tu-mobilenetv3_small_050").train()
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    stages = backbone_stages(model)
    assert len(stages) == 5  # strides 2, 4, 8, 16, 32
    names = [n for stage in model._stage_names for n in stage]  # type: ignore[union-attr]
    assert sorted(names) == sorted(n for n, _ in model.encoder.named_parameters())  # type: ignore[union-attr]
    assert torch.equal(torch.get_rng_state(), rng)  # the seed's sequence is untouched
    assert model.training and model.encoder.training  # type: ignore[union-attr]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())
