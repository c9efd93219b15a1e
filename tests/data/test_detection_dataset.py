"""DetectionDataset: boxes move with flips, rotations, resizes and crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mediscope.config.schema import AugmentConfig
from mediscope.data.datasets import DetectionDataset, crop_boxes, detection_collate
from mediscope.data.samples import Sample
from mediscope.data.transforms import build_transform

MEAN, STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def write_image(path: Path, height: int, width: int, boxes: np.ndarray) -> Sample:
    """A black image with white boxes where the labels say."""
    image = np.zeros((height, width, 3), np.uint8)
    for x1, y1, x2, y2 in boxes.astype(int):
        image[y1:y2, x1:x2] = 255
    Image.fromarray(image).save(path)
    return Sample(
        image=str(path),
        boxes=boxes.astype(np.float32),
        box_labels=np.arange(len(boxes), dtype=np.int64) % 2,
    )


def white_inside(image: np.ndarray, boxes: np.ndarray) -> float:
    """Mean brightness inside the boxes (1.0 when every box lies on white pixels)."""
    values = [image[:, int(y1) : int(y2), int(x1) : int(x2)].mean() for x1, y1, x2, y2 in boxes]
    return float(np.mean(values))


@pytest.mark.parametrize(
    "augment",
    [
        AugmentConfig(hflip=1.0),
        AugmentConfig(vflip=1.0),
        AugmentConfig(rotate90=1.0),
        AugmentConfig(crop_scale=(0.6, 1.0)),
        AugmentConfig(brightness=0.2, contrast=0.2),
    ],
)
def test_boxes_follow_the_image(tmp_path: Path, augment: AugmentConfig) -> None:
    boxes = np.array([[10, 10, 30, 22], [50, 40, 70, 76], [80, 5, 96, 20]], np.float32)
    sample = write_image(tmp_path / "a.png", 80, 100, boxes)
    transform = build_transform(
        image_size=(64, 64), mean=MEAN, std=STD, augment=augment, boxes=True
    )
    dataset = DetectionDataset([sample], transform=transform, seed=3)
    for epoch in range(4):
        image, target = dataset[(epoch, 0)]
        assert image.shape == (3, 64, 64)
        assert target["boxes"].shape[1] == 4 and len(target["boxes"]) == len(target["labels"])
        assert len(target["boxes"]) >= 1
        assert white_inside(image.numpy(), target["boxes"].numpy()) > 0.6


def test_resize_scales_boxes(tmp_path: Path) -> None:
    boxes = np.array([[10, 20, 30, 60]], np.float32)
    sample = write_image(tmp_path / "a.png", 100, 200, boxes)
    plain = build_transform(image_size=(50, 50), mean=MEAN, std=STD, boxes=True)
    _, target = DetectionDataset([sample], transform=plain)[0]
    assert np.allclose(target["boxes"].numpy(), [[2.5, 10, 7.5, 30]], atol=1e-4)


def test_negative_images_have_empty_targets(tmp_path: Path) -> None:
    sample = write_image(tmp_path / "a.png", 40, 40, np.zeros((0, 4), np.float32))
    plain = build_transform(image_size=(32, 32), mean=MEAN, std=STD, boxes=True)
    image, target = DetectionDataset([sample], transform=plain)[0]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    images, targets = detection_collate([(image, target), (image, target)])
    assert images.shape == (2, 3, 32, 32) and len(targets) == 2


def test_crop_boxes_clips_and_drops_mostly_outside() -> None:
    boxes = np.array([[0, 0, 10, 10], [15, 15, 30, 30], [28, 0, 40, 10]], np.float32)
    labels = np.array([0, 1, 2])
    kept, kept_labels = crop_boxes(boxes, labels, 5, 5, 27, 27)
    # box 0: 25 of 100 px inside (dropped); box 1: inside; box 2: 4 of 12 wide, 5 of 10 high
    assert kept_labels.tolist() == [1]
    assert np.allclose(kept, [[10, 10, 25, 25]])


def test_crops_of_large_images_mostly_hold_objects(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 980, size=(6, 2))
    boxes = np.concatenate([corners, corners + 16], axis=1).astype(np.float32)
    sample = write_image(tmp_path / "big.png", 1000, 1000, boxes)
    plain = build_transform(image_size=(64, 64), mean=MEAN, std=STD, boxes=True)
    train = DetectionDataset(
        [sample], transform=plain, crop_size=(128, 128), crop_object_prob=0.9, train=True
    )
    with_objects = sum(len(train[(epoch, 0)][1]["boxes"]) > 0 for epoch in range(40))
    assert with_objects >= 30  # ~90 % are placed on an object
    evaluation = DetectionDataset([sample], transform=plain, crop_size=(128, 128))
    first, second = evaluation[(0, 0)][1]["boxes"], evaluation[(5, 0)][1]["boxes"]
    assert np.array_equal(first.numpy(), second.numpy())  # fixed crop across epochs
