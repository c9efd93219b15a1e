"""Box merging (NMS, WBF), model fusion and detection tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ensemble_boxes import weighted_boxes_fusion

from mediscope.errors import ConfigError
from mediscope.inference.boxes import fuse_models, merge_detections, tile_windows
from mediscope.inference.sliding_window import window_starts

#: Two same-class boxes overlapping by IoU 0.88, one of another class on top of them,
#: and a lone box.
BOXES = np.array(
    [
        [10.0, 10.0, 50.0, 50.0],
        [12.0, 11.0, 52.0, 50.0],
        [10.0, 10.0, 50.0, 50.0],
        [200.0, 100.0, 260.0, 180.0],
    ]
)
SCORES = np.array([0.9, 0.6, 0.5, 0.8])
LABELS = np.array([0, 0, 1, 0])


def test_nms_keeps_the_best_box_per_class() -> None:
    merged = merge_detections(BOXES, SCORES, LABELS, method="nms", iou_threshold=0.5)
    assert merged["scores"].tolist() == [0.9, 0.8, 0.5]
    assert merged["labels"].tolist() == [0, 0, 1]  # class 1 is not suppressed by class 0
    np.testing.assert_array_equal(merged["boxes"], BOXES[[0, 3, 2]])
    assert isinstance(merged["boxes"], np.ndarray) and merged["labels"].dtype == np.int64
    # above the pair's IoU, nothing is merged
    assert len(merge_detections(BOXES, SCORES, LABELS, iou_threshold=0.9)["boxes"]) == 4


def test_score_threshold_and_max_detections() -> None:
    merged = merge_detections(BOXES, SCORES, LABELS, score_threshold=0.55, iou_threshold=0.95)
    assert merged["scores"].tolist() == [0.9, 0.8, 0.6]
    top = merge_detections(BOXES, SCORES, LABELS, iou_threshold=0.95, max_detections=2)
    assert top["scores"].tolist() == [0.9, 0.8]


def test_wbf_averages_corners_by_score_in_pixels() -> None:
    merged = merge_detections(
        BOXES, SCORES, LABELS, method="wbf", iou_threshold=0.55, image_size=(300, 400)
    )
    pair = (0.9 * BOXES[0] + 0.6 * BOXES[1]) / 1.5  # the score-weighted mean
    # one model: the fused pair scores the mean of its scores, 0.75, below the lone 0.8
    np.testing.assert_allclose(merged["scores"], [0.8, 0.75, 0.5], atol=1e-6)
    assert merged["labels"].tolist() == [0, 0, 1]
    np.testing.assert_allclose(merged["boxes"][1], pair, atol=1e-3)  # float32 inside WBF
    np.testing.assert_allclose(merged["boxes"][[0, 2]], BOXES[[3, 2]], atol=1e-3)


def test_wbf_equals_ensemble_boxes_on_normalised_coordinates() -> None:
    rng = np.random.default_rng(0)
    height, width = 480, 640
    models = []
    for _ in range(3):
        corner = rng.uniform(0, 400, size=(20, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(10, 200, size=(20, 2))], axis=1)
        boxes = np.minimum(boxes, [width, height, width, height])
        models.append(
            {"boxes": boxes, "scores": rng.random(20), "labels": rng.integers(0, 3, size=20)}
        )
    weights = [2.0, 1.0, 1.0]
    fused = fuse_models(models, weights=weights, image_size=(height, width), iou_threshold=0.5)
    scale = np.array([width, height, width, height])
    boxes, scores, labels = weighted_boxes_fusion(
        [m["boxes"] / scale for m in models],
        [m["scores"] for m in models],
        [m["labels"] for m in models],
        weights=weights,
        iou_thr=0.5,
    )
    order = np.argsort(-scores, kind="stable")
    np.testing.assert_allclose(fused["boxes"], boxes[order] * scale, atol=1e-9)
    np.testing.assert_allclose(fused["scores"], scores[order], atol=1e-12)
    assert fused["labels"].tolist() == labels[order].astype(int).tolist()


def test_fusing_two_models() -> None:
    one = {"boxes": BOXES[:1], "scores": [0.9], "labels": [0]}
    two = {"boxes": BOXES[1:2], "scores": [0.7], "labels": [0]}
    lone = {"boxes": BOXES[3:], "scores": [0.8], "labels": [0]}
    fused = fuse_models([one, two], image_size=(300, 400))
    assert len(fused["boxes"]) == 1
    np.testing.assert_allclose(fused["scores"], [0.8], atol=1e-6)  # both models agree
    # a box only one model of two found keeps half its score (conf_type "avg")
    alone = fuse_models([one, lone], image_size=(300, 400))
    np.testing.assert_allclose(alone["scores"], [0.45, 0.4], atol=1e-6)
    # NMS: the best box wins; weights scale scores by weight / largest weight
    nms = fuse_models([one, two], method="nms", weights=[1.0, 2.0], iou_threshold=0.5)
    assert nms["scores"].tolist() == pytest.approx([0.7])
    np.testing.assert_array_equal(nms["boxes"], BOXES[1:2])


def test_tensors_in_tensors_out() -> None:
    merged = merge_detections(
        torch.tensor(BOXES, dtype=torch.float32),
        torch.tensor(SCORES, dtype=torch.float32),
        torch.tensor(LABELS),
        method="wbf",
        image_size=(300, 400),
    )
    assert merged["boxes"].dtype == torch.float32 and merged["labels"].dtype == torch.long
    assert merged["boxes"].shape == (3, 4)


def test_empty_outside_and_flat_boxes() -> None:
    for method in ("nms", "wbf"):
        empty = merge_detections(np.zeros((0, 4)), [], [], method=method, image_size=(10, 10))
        assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    # a box past the image is clipped for WBF; one wholly outside, or flat, is dropped
    boxes = np.array([[80.0, 80.0, 120.0, 120.0], [150.0, 150.0, 160.0, 160.0], [5, 5, 5, 9]])
    merged = merge_detections(
        boxes, [0.9, 0.8, 0.7], [0, 0, 0], method="wbf", image_size=(100, 100)
    )
    np.testing.assert_allclose(merged["boxes"], [[80, 80, 100, 100]], atol=1e-4)
    assert len(merge_detections(boxes, [0.9, 0.8, 0.7], [0, 0, 0])["boxes"]) == 2


def test_errors() -> None:
    with pytest.raises(ConfigError, match="unknown box merging method 'soft'"):
        merge_detections(BOXES, SCORES, LABELS, method="soft")
    with pytest.raises(ConfigError, match=r"IoU threshold must be in \(0, 1\]"):
        merge_detections(BOXES, SCORES, LABELS, iou_threshold=0)
    with pytest.raises(ValueError, match="WBF needs the image size"):
        merge_detections(BOXES, SCORES, LABELS, method="wbf")
    with pytest.raises(ValueError, match="4 boxes, 3 scores"):
        merge_detections(BOXES, SCORES[:3], LABELS)
    with pytest.raises(ValueError, match="need 2 positive weights"):
        fuse_models([{"boxes": BOXES, "scores": SCORES, "labels": LABELS}] * 2, weights=[1])


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap"),
    [(1000, 1500, 640, 0.25), (640, 640, 640, 0.2), (300, 2000, (256, 512), 0.5), (50, 70, 64, 0)],
)
def test_tiles_cover_the_image_and_end_at_the_edge(
    height: int, width: int, tile: int | tuple[int, int], overlap: float
) -> None:
    windows = tile_windows(height, width, tile, overlap)
    tile_h, tile_w = (tile, tile) if isinstance(tile, int) else tile
    covered = np.zeros((height, width), dtype=int)
    for y0, x0, y1, x1 in windows:
        assert y1 - y0 == min(tile_h, height) and x1 - x0 == min(tile_w, width)
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1
    assert max(w[2] for w in windows) == height and max(w[3] for w in windows) == width
    starts_y = sorted({w[0] for w in windows})
    assert starts_y == window_starts(height, tile_h, overlap)
    if len(starts_y) > 1:  # neighbours overlap by at least the share asked for
        assert min(np.diff(starts_y)) <= tile_h * (1 - overlap)


def test_tile_errors() -> None:
    with pytest.raises(ConfigError, match="overlap must be in"):
        tile_windows(100, 100, 32, 1.0)
    with pytest.raises(ConfigError, match="tile must be positive"):
        tile_windows(100, 100, 0)
