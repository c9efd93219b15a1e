"""Test-time augmentation of detectors (``inference.tta``): the image and its three flips
each detect, their boxes are mapped back, and the views vote on every object's class."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from helpers import tiny_detection_config
from mediscope.inference.detection import DetectionPredictor
from mediscope.models.detection.base import Detector
from mediscope.runtime.info import InferenceSettings, ModelInfo
from mediscope.runtime.pipeline import TTA_VIEWS, flip_boxes, fuse_views
from mediscope.runtime.predictor import Predictor
from mediscope.runtime.results import DetectionResult
from mediscope.tasks.validate import config_from_dict

BOX = np.array([[10.0, 20.0, 30.0, 28.0]])
#: A square of the image in the left half: the views that see it flipped left-right
#: see it in the right half.
SQUARE = (slice(20, 28), slice(10, 30))  # rows, columns of a 64 x 64 image
STATS = ([0.5] * 3, [0.25] * 3)


@pytest.mark.parametrize("flip", TTA_VIEWS)
def test_flipping_boxes_twice_gives_them_back(flip: str) -> None:
    once = flip_boxes(BOX, flip, (64, 80))
    assert (once[:, 2:] > once[:, :2]).all()  # still x1 < x2, y1 < y2
    np.testing.assert_allclose(flip_boxes(once, flip, (64, 80)), BOX)
    if flip == "h":
        assert once.tolist() == [[50.0, 20.0, 70.0, 28.0]]
    if flip == "v":
        assert once.tolist() == [[10.0, 36.0, 30.0, 44.0]]


def test_views_vote_on_the_class_and_a_lone_box_drops() -> None:
    lone = np.array([[40.0, 40.0, 50.0, 50.0]])
    views = [
        (np.vstack([BOX, lone]), np.array([0.8, 0.6]), np.array([0, 1])),  # says class 0
        (BOX + 1, np.array([0.5]), np.array([1])),
        (BOX, np.array([0.5]), np.array([1])),
        (BOX - 1, np.array([0.5]), np.array([1])),
    ]
    boxes, scores, labels = fuse_views(views, 2, iou_threshold=0.5, score_threshold=0.3)
    # class 0: 0.8 / 4 = 0.2; class 1: 1.5 / 4 = 0.375; the lone box: 0.6 / 4 = 0.15
    assert labels.tolist() == [1] and scores.tolist() == pytest.approx([0.375])
    expected = (BOX * 0.8 + (BOX + 1) * 0.5 + BOX * 0.5 + (BOX - 1) * 0.5) / 2.3
    np.testing.assert_allclose(boxes, expected)
    _, kept, _ = fuse_views(views, 2, iou_threshold=0.5, score_threshold=0.1)
    assert kept.tolist() == pytest.approx([0.375, 0.15])  # the class-0 box is a vote, not an object


def test_views_keep_classes_apart_unless_agnostic() -> None:
    views = [(BOX, np.array([0.8]), np.array([0])), (BOX, np.array([0.6]), np.array([1]))]
    _, scores, labels = fuse_views(views, 2, iou_threshold=0.5, score_threshold=0.0, agnostic=False)
    assert labels.tolist() == [0, 1] and scores.tolist() == pytest.approx([0.4, 0.3])
    _, scores, labels = fuse_views(views, 2, iou_threshold=0.5, score_threshold=0.0)
    assert labels.tolist() == [0] and scores.tolist() == pytest.approx([0.4])


def test_no_view_finds_anything() -> None:
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))
    boxes, scores, labels = fuse_views([empty] * 4, 3, iou_threshold=0.5, score_threshold=0.1)
    assert boxes.shape == (0, 4) and len(scores) == len(labels) == 0


def _bright(plane: np.ndarray) -> tuple[list[float], bool] | None:
    """The box of a plane's bright pixels and whether it lies in the left half."""
    ys, xs = np.nonzero(plane > 0)
    if not len(xs):
        return None
    box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    return box, (box[0] + box[2]) / 2 < plane.shape[1] / 2


class _SidedBackend:
    """A dense detector's graph with one anchor: the image's bright region, read as
    class 0 (score 0.5) in the left half of its input and class 1 (0.9) in the right."""

    name = "onnx"

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        boxes = np.zeros((len(batch), 1, 4), np.float32)
        scores = np.zeros((len(batch), 1, 2), np.float32)
        for i, image in enumerate(batch):
            found = _bright(image[0])
            if found is not None:
                boxes[i, 0] = found[0]
                scores[i, 0] = [0.5, 0.0] if found[1] else [0.0, 0.9]
        return {"boxes": boxes, "scores": scores}


def _image() -> np.ndarray:
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[SQUARE] = 255
    return image


@pytest.mark.parametrize("tta", [False, True])
def test_the_runtime_predictor_maps_views_back_and_votes(tta: bool) -> None:
    info = ModelInfo(
        task="detection",
        classes=["cocci", "bacilli"],
        image_size=(64, 64),
        channels=3,
        mean=STATS[0],
        std=STATS[1],
        inference=InferenceSettings(score_threshold=0.3, tta=tta),
    )
    found = Predictor(_SidedBackend(), info).predict(_image())  # type: ignore[arg-type]
    assert isinstance(found, DetectionResult)
    # unflipped and flipped upside down it is class 0 at 0.5; mirrored, class 1 at 0.9
    expected = ("bacilli", (0.9 + 0.9) / 4) if tta else ("cocci", 0.5)
    assert found.class_names == [expected[0]]
    assert found.scores.tolist() == pytest.approx([expected[1]])
    np.testing.assert_allclose(found.boxes, [[10, 20, 30, 28]], atol=1e-4)


class _SidedDetector(Detector):
    """The eager twin of :class:`_SidedBackend` (what evaluation and ``validate`` run)."""

    num_classes = 2

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def detect(self, raw: Any, **settings: Any) -> list[dict[str, torch.Tensor]]:
        results = []
        for image in raw:
            found = _bright(image[0].numpy())
            if found is None:
                results.append({"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                                "labels": torch.zeros(0, dtype=torch.long)})  # fmt: skip
                continue
            label, score = (0, 0.5) if found[1] else (1, 0.9)
            results.append({"boxes": torch.tensor([found[0]]), "scores": torch.tensor([score]),
                            "labels": torch.tensor([label])})  # fmt: skip
        return results


def test_evaluation_follows_the_config_key(tmp_path: Any) -> None:
    task = SimpleNamespace(model=_SidedDetector())
    for tta, expected in ((False, (0, 0.5)), (True, (1, 0.45))):
        config = config_from_dict(tiny_detection_config(tmp_path, tmp_path, inference={"tta": tta}))
        predictor = DetectionPredictor.from_config(
            task,  # type: ignore[arg-type]
            config,
            stats=STATS,
            score_threshold=0.001,
        )
        assert predictor.tta is tta
        found = predictor.predict(_image())
        assert found.labels.tolist() == [expected[0]]
        assert found.scores.tolist() == pytest.approx([expected[1]])
        np.testing.assert_allclose(found.boxes, [[10, 20, 30, 28]], atol=1e-4)


def test_settings_txt_says_when_views_vote() -> None:
    from mediscope.runtime.outputs import detection_settings_text

    def info(tta: bool) -> ModelInfo:
        return ModelInfo(
            task="detection",
            classes=["a"],
            image_size=(64, 64),
            channels=3,
            mean=STATS[0],
            std=STATS[1],
            inference=InferenceSettings(tta=tta),
        )

    assert "test-time augmentation" in detection_settings_text(info(True))
    assert "test-time augmentation" not in detection_settings_text(info(False))
