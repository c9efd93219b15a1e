"""Models by name and backbone freezing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mediscope.errors import CheckpointError, DownloadError, UnknownNameError
from mediscope.models import build_model, model_names
from mediscope.models.freeze import apply_freeze, backbone_stages


@pytest.mark.parametrize("name", ["simple_cnn", "resnet18", "mobilenet_v2", "timm:resnet10t"])
def test_models_build_and_run_on_gray_and_rgb(name: str) -> None:
    for chans in (1, 3):
        model = build_model(name, task="classification", num_classes=5, in_chans=chans)
        out = model.eval()(torch.zeros(2, chans, 48, 40))
        assert out.shape == (2, 5)


def test_every_registered_classifier_builds() -> None:
    for name in model_names("classification"):
        if name in {"efficientnet_b6", "efficientnet_b7", "resnet50"}:
            continue  # large; built like their smaller siblings
        model = build_model(name, task="classification", num_classes=3)
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3), name


def test_unknown_and_wrong_task_names() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'simple_cnn'"):
        build_model("simple-cnn", task="classification", num_classes=2)
    with pytest.raises(UnknownNameError, match="unknown timm model"):
        build_model("timm:not_a_model", task="classification", num_classes=2)


def test_pretrained_download_fails_fast_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="pretrained: PATH"):
        build_model("resnet18", task="classification", num_classes=2, pretrained=True)


def test_pretrained_from_a_local_file(tmp_path: Path) -> None:
    source = build_model("resnet18", task="classification", num_classes=7)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    model = build_model("resnet18", task="classification", num_classes=3, pretrained=path)
    assert torch.equal(model.conv1.weight, source.conv1.weight)  # backbone loaded
    assert model.fc.weight.shape == (3, 512)  # head of another size kept fresh
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable weights file"):
        build_model("resnet18", task="classification", num_classes=3, pretrained=bad)


def frozen_fraction(model: torch.nn.Module) -> float:
    params = list(model.parameters())
    return sum(not p.requires_grad for p in params) / len(params)


def test_freeze_all_none_and_first_stages() -> None:
    model = build_model("resnet18", task="classification", num_classes=3)
    stages = backbone_stages(model)
    assert len(stages) == 5  # stem + layer1..4
    apply_freeze(model, "all")
    assert all(p.requires_grad for p in model.fc.parameters())
    assert not any(p.requires_grad for p in model.layer4.parameters())
    apply_freeze(model, 2)
    assert not any(p.requires_grad for p in model.conv1.parameters())
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    apply_freeze(model, "none")
    assert frozen_fraction(model) == 0.0
    cnn = build_model("simple_cnn", task="classification", num_classes=3)
    assert len(backbone_stages(cnn)) == 4
    apply_freeze(cnn, 1)
    assert not any(p.requires_grad for p in cnn.stages[0].parameters())
    assert all(p.requires_grad for p in cnn.stages[1].parameters())


def test_unreachable_weight_host_fails_within_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import time

    from mediscope.models import pretrained

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(pretrained, "WEIGHTS_HOST", ("127.0.0.1", port))
    started = time.perf_counter()
    with pytest.raises(DownloadError, match="cannot be reached"):
        pretrained.ensure_weights_reachable("timm model 'resnet18'")
    assert time.perf_counter() - started < 5
