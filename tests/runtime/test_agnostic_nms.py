"""Class-agnostic suppression (``inference.agnostic_nms``): two boxes of different classes
on one object become one box, in every path that merges boxes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from mediscope.inference.boxes import merge_detections
from mediscope.inference.detection import DetectionPredictor
from mediscope.models.detection.base import Detector
from mediscope.runtime.info import InferenceSettings, ModelInfo
from mediscope.runtime.pipeline import dense_detections, merge_tiles, nms
from mediscope.runtime.predictor import Predictor
from mediscope.runtime.results import DetectionResult

#: One cell, found twice: as class 0 (0.9) and as class 1 (0.6); and a cell apart.
BOXES = np.array([[10, 10, 30, 30], [11, 10, 31, 30], [60, 60, 80, 80]], dtype=np.float64)
SCORES = np.array([0.9, 0.6, 0.8])
LABELS = np.array([0, 1, 1])


def test_nms_suppresses_across_classes_only_when_agnostic() -> None:
    assert sorted(nms(BOXES, SCORES, LABELS, 0.5).tolist()) == [0, 1, 2]
    assert sorted(nms(BOXES, SCORES, LABELS, 0.5, agnostic=True).tolist()) == [0, 2]


@pytest.mark.parametrize("method", ["nms", "wbf"])
def test_tile_merges_keep_one_box_per_object(method: str) -> None:
    per_class = merge_tiles(
        BOXES, SCORES, LABELS, method=method, iou_threshold=0.5, image_size=(100, 100)
    )
    assert len(per_class[0]) == 3
    boxes, scores, labels = merge_tiles(
        BOXES,
        SCORES,
        LABELS,
        method=method,
        iou_threshold=0.5,
        image_size=(100, 100),
        agnostic=True,
    )
    assert len(boxes) == 2 and labels.tolist() == [0, 1]  # the better class wins the cell
    merged = merge_detections(
        BOXES, SCORES, LABELS, method=method, image_size=(100, 100), agnostic=True
    )
    assert merged["labels"].tolist() == [0, 1]
    np.testing.assert_allclose(merged["scores"], scores, atol=1e-6)


def test_dense_outputs_are_suppressed_across_classes() -> None:
    anchors = BOXES[:2].astype(np.float32)
    scores = np.array([[0.9, 0.1], [0.2, 0.6]], dtype=np.float32)  # anchor, class
    common = {"score_threshold": 0.3, "iou_threshold": 0.5, "max_detections": 10}
    assert len(dense_detections(anchors, scores, **common)[0]) == 2
    boxes, kept, labels = dense_detections(anchors, scores, **common, agnostic=True)
    assert len(boxes) == 1 and labels.tolist() == [0] and kept.tolist() == pytest.approx([0.9])


class _DenseBackend:
    """A dense detector's graph: the same two anchors (one cell, two classes) per image."""

    name = "onnx"

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        boxes = np.tile(BOXES[:2].astype(np.float32), (len(batch), 1, 1))
        scores = np.tile(np.array([[0.9, 0.1], [0.2, 0.6]], np.float32), (len(batch), 1, 1))
        return {"boxes": boxes, "scores": scores}


def _predictor(**inference: Any) -> Predictor:
    info = ModelInfo(
        task="detection",
        classes=["cocci", "bacilli"],
        image_size=(64, 64),
        channels=3,
        mean=[0.5] * 3,
        std=[0.25] * 3,
        inference=InferenceSettings(**inference),
    )
    return Predictor(_DenseBackend(), info)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(64, 64), (100, 150)])  # whole, and in tiles
def test_predictor_counts_a_cell_once_with_agnostic_nms(shape: tuple[int, int]) -> None:
    image = np.zeros((*shape, 3), dtype=np.uint8)
    settings = {"score_threshold": 0.3, "window": (64, 64), "overlap": 0.0}
    plain = _predictor(**settings).predict(image)
    agnostic = _predictor(**settings, agnostic_nms=True).predict(image)
    assert isinstance(plain, DetectionResult) and isinstance(agnostic, DetectionResult)
    windows = 1 if shape == (64, 64) else 6
    assert len(plain) == 2 * windows
    assert len(agnostic) == windows and agnostic.counts() == {"cocci": windows, "bacilli": 0}
    chosen = _predictor(**settings).with_settings(agnostic_nms=True).predict(image)
    assert isinstance(chosen, DetectionResult) and len(chosen) == windows


class _TwoClassesOneCell(Detector):
    """An eager detector that suppresses within a class only, as torchvision's do."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def detect(self, raw: Any, **settings: Any) -> list[dict[str, torch.Tensor]]:
        found = {
            "boxes": torch.tensor(BOXES[:2], dtype=torch.float32),
            "scores": torch.tensor([0.9, 0.6]),
            "labels": torch.tensor([0, 1]),
        }
        return [found for _ in range(raw.shape[0])]


@pytest.mark.parametrize("agnostic", [False, True])
def test_evaluation_predictor_follows_the_setting(agnostic: bool) -> None:
    stats = ([0.5] * 3, [0.25] * 3)
    predictor = DetectionPredictor(
        _TwoClassesOneCell(), image_size=(64, 64), mean=stats[0], std=stats[1]
    )
    predictor.agnostic_nms = agnostic
    found = predictor.predict(np.zeros((64, 64, 3), dtype=np.uint8))
    assert len(found.boxes) == (1 if agnostic else 2)


def test_config_key_reaches_the_model_info(tmp_path: Any) -> None:
    from helpers import tiny_detection_config
    from mediscope.tasks.validate import config_from_dict

    task = SimpleNamespace(model=_TwoClassesOneCell())
    stats = ([0.5] * 3, [0.25] * 3)
    for given, expected in (({}, True), ({"inference": {"agnostic_nms": False}}, False)):
        config = config_from_dict(tiny_detection_config(tmp_path, tmp_path, **given))
        assert config.inference.agnostic_nms is expected  # on by default: counts
        built = DetectionPredictor.from_config(task, config, stats=stats)  # type: ignore[arg-type]
        assert built.agnostic_nms is expected
