"""Predictors: typed settings, built from a config, fed by the data module's pipeline."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from helpers import tiny_detection_config, tiny_segmentation_config
from mediscope.data.transforms import build_transform
from mediscope.inference.detection import DEFAULT_SCORE_THRESHOLD, DetectionPredictor
from mediscope.inference.segmentation import SegmentationPredictor
from mediscope.models.detection.base import Detector
from mediscope.tasks.validate import config_from_dict

STATS = ([0.5, 0.4, 0.3], [0.2, 0.25, 0.3])


class NoBoxes(Detector):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def detect(self, raw: Any, **settings: Any) -> list[dict[str, torch.Tensor]]:
        empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0)}
        return [empty for _ in range(raw.shape[0])]


def detection(tmp_path: Path, **sections: Any) -> DetectionPredictor:
    config = config_from_dict(tiny_detection_config(tmp_path, tmp_path, **sections))
    task = SimpleNamespace(model=NoBoxes())
    return DetectionPredictor.from_config(task, config, stats=STATS)  # type: ignore[arg-type]


def test_segmentation_predictor_from_config(tmp_path: Path) -> None:
    inference = {"window": 48, "overlap": 0.5, "gaussian": False, "batch_size": 2, "tta": True}
    raw = tiny_segmentation_config(tmp_path, tmp_path, inference=inference)
    task = SimpleNamespace(model=torch.nn.Conv2d(3, 2, 1))
    predictor = SegmentationPredictor.from_config(
        task,  # type: ignore[arg-type]
        config_from_dict(raw),
        stats=STATS,
    )
    assert predictor.window == (48, 48) and predictor.overlap == 0.5
    assert (predictor.gaussian, predictor.batch_size, predictor.tta) == (False, 2, True)
    image = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    plain = build_transform(image_size=(32, 32), mean=STATS[0], std=STATS[1])
    assert torch.equal(predictor.resized(image=image)["image"], plain(image=image)["image"])
    assert predictor.full(image=image)["image"].shape == (3, 70, 90)
    mask, probs = predictor.predict(image)
    assert mask.shape == (70, 90) and probs.shape == (2, 70, 90)


def test_detection_window_falls_back_to_the_crop_size(tmp_path: Path) -> None:
    assert detection(tmp_path).window is None
    assert detection(tmp_path, data={"crop_size": 96}).window == (96, 96)
    chosen = detection(tmp_path, data={"crop_size": 96}, inference={"window": 128})
    assert chosen.window == (128, 128)


def test_detection_thresholds_from_config(tmp_path: Path) -> None:
    predictor = detection(tmp_path)
    assert predictor.score_threshold == DEFAULT_SCORE_THRESHOLD
    assert (predictor.iou_threshold, predictor.max_detections, predictor.merge) == (
        0.5,
        300,
        "edge",
    )
    inference = {"score_threshold": 0.3, "iou_threshold": 0.6, "merge": "wbf", "overlap": 0.1}
    predictor = detection(tmp_path, inference=inference)
    assert (predictor.score_threshold, predictor.iou_threshold) == (0.3, 0.6)
    assert (predictor.merge, predictor.overlap) == ("wbf", 0.1)
    config = config_from_dict(tiny_detection_config(tmp_path, tmp_path, inference=inference))
    task = SimpleNamespace(model=NoBoxes())
    chosen = DetectionPredictor.from_config(
        task,  # type: ignore[arg-type]
        config,
        stats=STATS,
        score_threshold=0.001,
        max_detections=7,
    )
    assert (chosen.score_threshold, chosen.max_detections) == (0.001, 7)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("shape", [(64, 64), (200, 150), (13, 700), (33, 47)])
def test_detection_tiles_are_resized_as_before(channels: int, shape: tuple[int, int]) -> None:
    """The shared pipeline gives the tensors of the former cv2 resize and normalise."""
    mean, std = STATS[0][:channels], STATS[1][:channels]
    predictor = DetectionPredictor(NoBoxes(), image_size=(64, 80), mean=mean, std=std)
    crop = np.random.default_rng(1).integers(0, 256, (*shape, channels), dtype=np.uint8)
    resized = cv2.resize(crop, (80, 64), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    resized = resized.reshape(64, 80, channels)
    expected = (resized - np.array(mean, np.float32) * 255) / (np.array(std, np.float32) * 255)
    got = predictor.transform(image=crop)["image"].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    found = predictor.predict(crop)
    assert found.boxes.shape == (0, 4)


class BrightSquare(Detector):
    """Finds the one bright region of each image (a perfect detector of what it sees)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def detect(self, raw: Any, **settings: Any) -> list[dict[str, torch.Tensor]]:
        found = []
        for image in raw:
            ys, xs = torch.nonzero(image[0] > 0, as_tuple=True)
            if len(xs):
                box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                boxes = torch.stack(box).float()[None]
            else:
                boxes = torch.zeros(0, 4)
            count = len(boxes)
            found.append({"boxes": boxes, "scores": torch.full((count,), 0.9),
                          "labels": torch.zeros(count, dtype=torch.long)})  # fmt: skip
        return found


@pytest.mark.parametrize("merge", ["edge", "nms"])
def test_detection_edge_merge_gives_one_box_per_cut_object(tmp_path: Path, merge: str) -> None:
    config = config_from_dict(
        tiny_detection_config(
            tmp_path, tmp_path, inference={"window": 64, "overlap": 0.25, "merge": merge}
        )
    )
    task = SimpleNamespace(model=BrightSquare())
    predictor = DetectionPredictor.from_config(task, config, stats=STATS)  # type: ignore[arg-type]
    image = np.zeros((150, 150, 3), np.uint8)
    image[40:60, 52:80] = 255  # across the tiles' inner edges at x = 64 and y = 48, 64
    found = predictor.predict(image)
    if merge == "edge":
        assert found.boxes.tolist() == [[52.0, 40.0, 80.0, 60.0]]
    else:
        assert len(found.boxes) > 1
