"""torchvision's FCOS and Faster R-CNN over timm backbones (``fcos``, ``faster_rcnn``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torchvision.ops import box_iou

from mediscope.errors import ConfigError
from mediscope.models import build_model, model_names
from mediscope.models.detection.base import Detector
from mediscope.models.detection.torchvision_models import (
    TorchvisionFasterRCNN,
    TorchvisionFCOS,
    heads_training,
)
from mediscope.models.freeze import apply_freeze

NAMES = ["fcos", "faster_rcnn"]
SIZE = 128
NUM_CLASSES = 3
#: Small settings that keep the tests fast on a CPU.
TINY: dict[str, dict[str, Any]] = {
    "fcos": {"head_depth": 2},
    "faster_rcnn": {"rpn_batch_size": 64, "roi_batch_size": 64, "representation_size": 128},
}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # Small models at 128 px: on a busy shared CPU, extra threads only wait for each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str, **params: Any) -> Detector:
    torch.manual_seed(0)
    settings = {"backbone": "mobilenetv3_large", "channels": 32, **TINY[name], **params}
    model = build_model(name, task="detection", num_classes=NUM_CLASSES, **settings)
    assert isinstance(model, Detector)
    return model


def scene() -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """One 128 px image with three coloured rectangles (class c brightens channel c)."""
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, SIZE, SIZE, generator=generator) * 0.2
    boxes = torch.tensor([[12.0, 16.0, 44.0, 40.0], [70.0, 20.0, 94.0, 60.0], [40, 80, 100, 110]])
    labels = torch.tensor([0, 1, 2])
    for (x0, y0, x1, y1), c in zip(boxes.long().tolist(), labels.tolist(), strict=True):
        image[0, c, y0:y1, x0:x1] += 2.0
    return image, [{"boxes": boxes, "labels": labels}]


def batch() -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Two images: one with boxes of every class, one with none."""
    images = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    targets = [
        {
            "boxes": torch.tensor(
                [[10.0, 20.0, 40.0, 50.0], [60.0, 60.0, 90.0, 100.0], [5, 5, 9, 12]]
            ),
            "labels": torch.tensor([0, 2, 1]),
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    return images, targets


PARTS = {
    "fcos": {"loss", "loss_cls", "loss_box", "loss_ctr"},
    "faster_rcnn": {"loss", "loss_obj", "loss_rpn_box", "loss_cls", "loss_box"},
}


def test_registered_for_detection() -> None:
    names = model_names("detection")
    assert "fcos" in names
    assert "faster_rcnn" in names
    assert isinstance(build("fcos"), TorchvisionFCOS)
    assert isinstance(build("faster_rcnn"), TorchvisionFasterRCNN)
    assert not build("fcos").uses_criterion


@pytest.mark.parametrize("name", NAMES)
def test_training_losses(name: str) -> None:
    model = build(name).train()
    images, targets = batch()
    losses = model.losses(model(images), targets, None)
    assert set(losses) == PARTS[name]
    assert all(torch.isfinite(v) for v in losses.values())
    parts = [v for k, v in losses.items() if k != "loss"]
    assert torch.allclose(losses["loss"], torch.stack(parts).sum())
    assert losses["loss"].requires_grad
    assert not any(p.requires_grad for p in parts)
    losses["loss"].backward()
    grads = [p.grad for p in model.backbone_stages()[0].parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", NAMES)
def test_validation_loss_keeps_eval_mode_and_running_stats(name: str) -> None:
    model = build(name).train()
    images, targets = batch()
    model(images)  # one training pass: running statistics away from their initial values
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        raw = model(images)
        losses = model.losses(raw, targets, None)
        model.detect(raw)
    assert set(losses) == PARTS[name]
    assert all(torch.isfinite(v) for v in losses.values())
    assert not any(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", NAMES)
def test_empty_targets(name: str) -> None:
    model = build(name).train()
    images, _ = batch()
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    losses = model.losses(model(images), empty, None)
    assert set(losses) == PARTS[name]
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()


@pytest.mark.parametrize("name", NAMES)
def test_detect_outputs(name: str) -> None:
    model = build(name).eval()
    images, _ = batch()
    raw = model(images)
    everything = model.detect(raw, score_threshold=0.0, iou_threshold=1.0, max_detections=10_000)
    some = model.detect(raw, score_threshold=0.2, iou_threshold=0.3, max_detections=7)
    assert len(everything) == len(some) == 2
    for det in everything + some:
        n = len(det["scores"])
        assert det["boxes"].shape == (n, 4)
        assert det["labels"].shape == (n,)
        assert det["labels"].dtype == torch.int64
        if n:
            assert det["labels"].min() >= 0 and det["labels"].max() < NUM_CLASSES
            assert det["scores"].min() >= 0 and det["scores"].max() <= 1
            assert (det["boxes"] >= 0).all() and (det["boxes"] <= SIZE).all()
    assert any(len(d["scores"]) > 7 for d in everything)
    assert {int(label) for d in everything for label in d["labels"]} == set(range(NUM_CLASSES))
    for det in some:
        assert len(det["scores"]) <= 7
        assert (det["scores"] > 0.2).all()
        for label in det["labels"].unique():
            boxes = det["boxes"][det["labels"] == label]
            iou = box_iou(boxes, boxes).fill_diagonal_(0)
            assert (iou <= 0.3 + 1e-6).all()


@pytest.mark.parametrize("name", NAMES)
def test_detect_matches_torchvisions_own_forward(name: str) -> None:
    """The same boxes as torchvision's model called as a whole: no resize, no normalisation."""
    model = build(name).eval()
    images, _ = batch()
    with torch.no_grad():
        ours = model.detect(model(images), score_threshold=0.0, max_detections=50)
        theirs = model.net(list(images))
    offset = 1 if name == "faster_rcnn" else 0
    for a, b in zip(ours, theirs, strict=True):
        assert len(a["boxes"]) == 50
        assert torch.allclose(a["boxes"], b["boxes"])
        assert torch.allclose(a["scores"], b["scores"])
        assert torch.equal(a["labels"] + offset, b["labels"])


@pytest.mark.parametrize("name", NAMES)
def test_boxes_in_input_pixels_any_size_and_channels(name: str) -> None:
    """No resizing: a 100 x 120 grayscale input (padded to 128 x 128 inside) keeps its size."""
    model = build(name, in_chans=1).eval()
    images = torch.randn(2, 1, 100, 120)
    raw = model(images)
    if name == "fcos":
        assert raw.image_sizes == [(100, 120)] * 2
        centres = (raw.anchors[0][:, :2] + raw.anchors[0][:, 2:]) / 2
        # torchvision's points sit on the cells' corners: 0, 8, ... 120 on the padded 128 px.
        assert centres.min() == 0
        assert centres[:, 0].max() == centres[:, 1].max() == 120
    else:
        assert raw.images.image_sizes == [(100, 120)] * 2
        assert raw.images.tensors.shape[-2:] == (128, 128)
    for det in model.detect(raw, score_threshold=0.0):
        assert len(det["boxes"]) > 0
        assert (det["boxes"][:, 0::2] <= 120).all() and (det["boxes"][:, 1::2] <= 100).all()
        assert det["boxes"][:, 0::2].max() > 64  # not squeezed into a smaller frame


@pytest.mark.parametrize("name", NAMES)
def test_unknown_keyword(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(name, anchor_size=4.0, nonsense=1)
    message = str(info.value)
    assert message.startswith(f"model.params: {name}: unknown keywords 'anchor_size', 'nonsense'")
    assert "keywords: backbone, channels, levels" in message
    assert "pretrained" not in message.split(";")[1]


def test_faster_rcnn_anchor_sizes() -> None:
    model = build("faster_rcnn", anchor_sizes=[8, 16, 32], aspect_ratios=[1.0])
    assert isinstance(model, TorchvisionFasterRCNN)
    assert model.net.rpn.anchor_generator.sizes == ((8.0,), (16.0,), (32.0,))
    default = build("faster_rcnn")
    assert isinstance(default, TorchvisionFasterRCNN)
    assert default.net.rpn.anchor_generator.sizes == ((8.0, 16.0), (16.0, 32.0), (32.0, 64.0))
    with pytest.raises(ConfigError, match=r"model.params.anchor_sizes: .* do not fit 3 levels"):
        build("faster_rcnn", anchor_sizes=[8, 16])
    with pytest.raises(ConfigError, match="do not fit"):
        build("faster_rcnn", anchor_sizes=[[8, 12], [16], [32]])


@pytest.mark.parametrize("name", NAMES)
def test_backbone_stages_freeze(name: str) -> None:
    model = build(name)
    stages = model.backbone_stages()
    assert len(stages) >= 3
    backbone = {id(p) for p in model.net.backbone.body.parameters()}
    assert all(id(p) in backbone for s in stages for p in s.parameters())
    frozen = apply_freeze(model, 2)
    assert frozen == sum(p.numel() for s in stages[:2] for p in s.parameters())
    assert not any(p.requires_grad for p in stages[0].parameters())
    assert all(p.requires_grad for p in model.net.backbone.fpn.parameters())


def test_heads_training_restores_flags() -> None:
    model = build("faster_rcnn").eval()
    heads = (model.net.rpn, model.net.roi_heads)
    with pytest.raises(RuntimeError), heads_training(heads, True):
        assert model.net.rpn.training and model.net.roi_heads.training
        assert not model.net.rpn.head.training  # children keep their mode
        raise RuntimeError
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize("name", NAMES)
def test_overfits_one_image(name: str) -> None:
    """60 Adam steps on one image: the loss falls and the boxes are found where they are."""
    model = build(name).train()
    image, targets = scene()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(60):
        loss = model.losses(model(image), targets, None)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert sum(history[-5:]) / 5 < 0.4 * history[0]
    model.eval()
    found = model.predict(image, score_threshold=0.05, max_detections=10)[0]
    iou = box_iou(targets[0]["boxes"], found["boxes"])
    best = iou.argmax(1)
    assert (iou.max(1).values > 0.5).all()
    assert torch.equal(found["labels"][best], targets[0]["labels"])
