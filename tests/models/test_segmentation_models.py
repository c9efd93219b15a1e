"""Segmentation models: the four study architectures and smp:<Arch>, any input size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mediscope.errors import CheckpointError, ConfigError, DownloadError, UnknownNameError
from mediscope.models import build_model, model_names
from mediscope.models.freeze import apply_freeze

STUDY = ("segnet", "unet", "unet2", "dilated_unet")


def modules(model: nn.Module, kind: type[nn.Module]) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


def test_study_models_are_registered_for_segmentation() -> None:
    assert set(STUDY) <= set(model_names("segmentation"))
    assert not set(STUDY) & set(model_names("classification"))


@pytest.mark.parametrize("name", STUDY)
@pytest.mark.parametrize("size", [(64, 64), (37, 53), (5, 9)])
def test_any_input_size_gives_logits_of_that_size(name: str, size: tuple[int, int]) -> None:
    model = build_model(name, task="segmentation", num_classes=3, width=4, depth=3).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 3, *size)


def test_grayscale_input() -> None:
    model = build_model("unet", task="segmentation", num_classes=2, in_chans=1, width=4, depth=2)
    assert model(torch.randn(1, 1, 20, 20)).shape == (1, 2, 20, 20)


def test_segnet_passes_pooling_indices_to_unpooling() -> None:
    model = build_model("segnet", task="segmentation", num_classes=2, width=4, depth=3)
    assert len(modules(model, nn.MaxUnpool2d)) == 1
    pools = modules(model, nn.MaxPool2d)
    assert pools and all(p.return_indices for p in pools)  # type: ignore[attr-defined]
    # no skip features: every decoder block sees only the unpooled map's channels
    assert not modules(model, nn.ConvTranspose2d) and not modules(model, nn.Upsample)


def test_unet_pools_and_upsamples() -> None:
    model = build_model("unet", task="segmentation", num_classes=2, width=4, depth=3)
    assert len(modules(model, nn.MaxPool2d)) == 3 and len(modules(model, nn.Upsample)) == 3
    assert not modules(model, nn.ConvTranspose2d)


def test_unet2_strides_instead_of_pooling() -> None:
    model = build_model("unet2", task="segmentation", num_classes=2, width=4, depth=3)
    assert not modules(model, nn.MaxPool2d) and not modules(model, nn.Upsample)
    assert len(modules(model, nn.ConvTranspose2d)) == 3
    strided = [c for c in modules(model, nn.Conv2d) if c.stride == (2, 2)]  # type: ignore[attr-defined]
    assert len(strided) == 3
    assert {c.dilation for c in modules(model, nn.Conv2d)} == {(1, 1)}  # type: ignore[attr-defined]


def test_dilated_unet_is_unet2_with_dilation_two() -> None:
    model = build_model("dilated_unet", task="segmentation", num_classes=2, width=4, depth=3)
    dilations = [c.dilation for c in modules(model, nn.Conv2d) if c.kernel_size == (3, 3)]  # type: ignore[attr-defined]
    assert (2, 2) in dilations and len(modules(model, nn.ConvTranspose2d)) == 3


@pytest.mark.parametrize("name", STUDY)
def test_one_step_lowers_the_loss(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, task="segmentation", num_classes=2, width=4, depth=2)
    x = torch.randn(2, 3, 16, 16)
    y = (x[:, 0] > 0).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(5):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_unknown_parameter_is_named() -> None:
    with pytest.raises(ConfigError, match=r"model.params.widht: unet has no parameter 'widht'"):
        build_model("unet", task="segmentation", num_classes=2, widht=8)


def test_study_models_have_no_published_weights() -> None:
    with pytest.raises(ConfigError, match="no published pretrained weights"):
        build_model("segnet", task="segmentation", num_classes=2, pretrained=True)


def test_local_weights_file_loads(tmp_path: Path) -> None:
    source = build_model("unet", task="segmentation", num_classes=2, width=4, depth=2)
    path = tmp_path / "unet.pt"
    torch.save(source.state_dict(), path)
    loaded = build_model(
        "unet", task="segmentation", num_classes=2, width=4, depth=2, pretrained=path
    )
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    with pytest.raises(CheckpointError, match="weights file not found"):
        build_model("unet", task="segmentation", num_classes=2, pretrained=tmp_path / "no.pt")


def test_freeze_all_keeps_the_head_trainable() -> None:
    model = build_model("unet", task="segmentation", num_classes=2, width=4, depth=2)
    frozen = apply_freeze(model, "all")
    assert frozen > 0
    head = model.classifier()  # type: ignore[operator]
    assert all(p.requires_grad for p in head.parameters())
    assert any(not p.requires_grad for p in model.parameters())


def test_smp_model_with_any_size_and_encoder() -> None:
    model = build_model(
        "smp:Unet",
        task="segmentation",
        num_classes=3,
        encoder="resnet18",
        encoder_depth=3,
        decoder_channels=[32, 16, 8],
    ).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 45, 70)).shape == (1, 3, 45, 70)
    timm_encoder = build_model(
        "smp:FPN", task="segmentation", num_classes=2, encoder="tu-mobilenetv3_small_050"
    ).eval()
    with torch.no_grad():
        assert timm_encoder(torch.randn(1, 3, 33, 40)).shape == (1, 2, 33, 40)


def test_smp_names_and_encoders_are_checked() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'smp:Unet'"):
        build_model("smp:Unnet", task="segmentation", num_classes=2)
    with pytest.raises(ConfigError, match="model.encoder: unknown encoder 'resnet19'"):
        build_model("smp:Unet", task="segmentation", num_classes=2, encoder="resnet19")
    with pytest.raises(ConfigError, match="unknown timm encoder"):
        build_model("smp:Unet", task="segmentation", num_classes=2, encoder="tu-resnet19x")
    with pytest.raises(UnknownNameError, match="smp models are segmentation models"):
        build_model("smp:Unet", task="classification", num_classes=2)


def test_smp_pretrained_fails_at_once_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE"):
        build_model("smp:Unet", task="segmentation", num_classes=2, pretrained=True)
