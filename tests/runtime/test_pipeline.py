"""The NumPy pre- and post-processing equals the PyTorch code it stands in for."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mediscope.data.transforms import build_transform
from mediscope.inference.boxes import merge_detections
from mediscope.inference.sliding_window import predict_mask
from mediscope.models.detection.retinanet import RetinaNet
from mediscope.runtime.pipeline import (
    dense_detections,
    merge_tiles,
    prepare,
    sliding_window,
    tile_windows,
    with_flips,
)


@pytest.mark.parametrize("channels", [1, 3])
def test_prepare_is_bit_identical_to_the_training_transform(channels: int) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (97, 131, channels), dtype=np.uint8)
    mean, std = [0.485, 0.456, 0.406][:channels], [0.229, 0.224, 0.225][:channels]
    expected = build_transform(image_size=(64, 48), mean=mean, std=std, channels=channels)(
        image=image
    )["image"].numpy()
    got = prepare(image, size=(64, 48), mean=mean, std=std)
    assert got.dtype == np.float32 and (got == expected).all()


def test_sliding_window_with_flips_equals_the_torch_version() -> None:
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 4, 3, padding=1)
    image = torch.rand(3, 70, 101)
    expected = predict_mask(net, image, window=(32, 48), overlap=0.3, tta=True, batch_size=3)

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(batch)).softmax(1).numpy()

    got = sliding_window(
        with_flips(forward), image.numpy(), window=(32, 48), overlap=0.3, batch_size=3
    )
    assert got.shape == (4, 70, 101)
    assert np.abs(got - expected.numpy()).max() < 1e-5


def test_tile_merge_equals_torchvision_nms() -> None:
    rng = np.random.default_rng(1)
    for _ in range(40):
        n = int(rng.integers(1, 60))
        corner = rng.uniform(0, 200, (n, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(1, 60, (n, 2))], axis=1)
        scores, labels = rng.uniform(0, 1, n), rng.integers(0, 3, n)
        ref = merge_detections(boxes, scores, labels, method="nms", iou_threshold=0.5)
        got = merge_tiles(
            boxes, scores, labels, method="nms", iou_threshold=0.5, image_size=(300, 300)
        )
        assert np.allclose(ref["boxes"], got[0]) and np.allclose(ref["scores"], got[1])
        assert (ref["labels"] == got[2]).all()
    assert tile_windows(150, 200, (64, 64), 0.25)[-1] == (86, 136, 150, 200)


def test_dense_detections_equal_the_detectors_own_decoding() -> None:
    torch.manual_seed(0)
    model = RetinaNet(num_classes=3, backbone="resnet18", channels=16, head_depth=1).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        raw = model(images)
        raw.quality = raw.quality + 3  # confident anchors, so that NMS has work to do
        expected = model.detect(raw, score_threshold=0.05, iou_threshold=0.5, max_detections=50)
        from torchvision.ops import clip_boxes_to_image

        boxes = clip_boxes_to_image(raw.boxes(), (64, 64)).numpy()
        scores = raw.class_scores().numpy()
    for i in range(2):
        got = dense_detections(
            boxes[i], scores[i], score_threshold=0.05, iou_threshold=0.5, max_detections=50
        )
        ref = expected[i]
        assert len(got[0]) == len(ref["boxes"]) > 0
        assert np.abs(got[0] - ref["boxes"].numpy()).max() < 1e-3
        assert np.allclose(got[1], ref["scores"].numpy(), atol=1e-6)
        assert (got[2] == ref["labels"].numpy()).all()
