"""The classifiers built in mediscope: UNet encoder, VGG16/19 with skips, VGG19 + CNN."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from mediscope.errors import ConfigError
from mediscope.models import build_model
from mediscope.models.freeze import apply_freeze, backbone_stages

# Small widths so that every model runs in a fraction of a second on CPU.
SMALL: dict[str, dict[str, Any]] = {
    "unet_classifier": {"width": 4},
    "vgg16_skip": {"width": 4},
    "vgg19_skip": {"width": 4},
    "vgg19_cnn": {"width": 4},
}
STAGES = {"unet_classifier": 4, "vgg16_skip": 5, "vgg19_skip": 5, "vgg19_cnn": 6}


def small(name: str, **kwargs: Any) -> torch.nn.Module:
    return build_model(name, task="classification", **{**SMALL[name], **kwargs})


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("chans", [1, 3])
@pytest.mark.parametrize("size", [(48, 40), (64, 64), (32, 32), (33, 45)])
def test_forward_on_gray_rgb_and_odd_sizes(name: str, chans: int, size: tuple[int, int]) -> None:
    model = small(name, num_classes=5, in_chans=chans).eval()
    with torch.inference_mode():
        out = model(torch.rand(2, chans, *size))
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(SMALL))
def test_train_step_reaches_every_parameter(name: str) -> None:
    model = small(name, num_classes=3, drop_rate=0.0)
    loss = model(torch.rand(2, 3, 40, 36)).logsumexp(1).sum()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", list(SMALL))
def test_freeze_first_stages(name: str) -> None:
    model = small(name, num_classes=3)
    stages = model.backbone_stages()
    assert len(stages) == STAGES[name] == len(backbone_stages(model))
    for count in range(len(stages) + 1):
        apply_freeze(model, count)
        for i, stage in enumerate(stages):
            assert all(p.requires_grad == (i >= count) for p in stage.parameters()), (count, i)
        assert all(p.requires_grad for p in model.classifier().parameters())
    apply_freeze(model, "all")
    head = {id(p) for p in model.classifier().parameters()}
    assert all(p.requires_grad == (id(p) in head) for p in model.parameters())


def test_vgg_skip_blocks_have_shortcuts_and_vgg_depths() -> None:
    vgg16, vgg19 = small("vgg16_skip", num_classes=2), small("vgg19_skip", num_classes=2)
    convs = [
        sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in model.modules())
        for model in (vgg16, vgg19)
    ]
    assert convs == [13, 16]  # VGG16 / VGG19 conv layers
    assert all(block.shortcut is not None for block in vgg19.backbone_stages())
    plain = small("vgg19_skip", num_classes=2, skip=False)
    assert all(block.shortcut is None for block in plain.backbone_stages())
    cnn = small("vgg19_cnn", num_classes=2, cnn_layers=3)
    assert len(cnn.backbone_stages()[-1]) == 3


@pytest.mark.parametrize("name", list(SMALL))
def test_local_weights_round_trip(name: str, tmp_path: Path) -> None:
    source = small(name, num_classes=4).eval()
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    same = small(name, num_classes=4, pretrained=path).eval()
    for key, value in source.state_dict().items():
        assert torch.equal(value, same.state_dict()[key]), key
    x = torch.rand(1, 3, 40, 40)
    with torch.inference_mode():
        assert torch.equal(source(x), same(x))
    # Another number of classes: the backbone loads, the head stays fresh.
    other = small(name, num_classes=2, pretrained=path)
    first = next(iter(source.backbone_stages()[0].parameters()))
    assert torch.equal(next(iter(other.backbone_stages()[0].parameters())), first)
    assert list(other.classifier().parameters())[-1].shape == (2,)


@pytest.mark.parametrize("name", list(SMALL))
def test_pretrained_true_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="has no published pretrained weights"):
        small(name, num_classes=2, pretrained=True)
