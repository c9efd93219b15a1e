"""The tile-edge merge (``inference.merge: edge``): one box per object, also for objects
cut by tile edges, and exact counts on a large image of easy objects."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mediscope.runtime.info import InferenceSettings, ModelInfo
from mediscope.runtime.pipeline import box_ios, cut_by_edge, merge_tiles, tile_windows
from mediscope.runtime.predictor import Predictor
from mediscope.runtime.results import DetectionResult

SIZE = (700, 700)
TILE = (256, 256)
# tile starts along each axis: 0, 148, 296, 444 (inner edges at 148, 256, 296, 404, ...)
OBJECTS = {
    "right edge": [236, 60, 276, 90],
    "left edge": [130, 60, 160, 90],
    "bottom edge": [60, 236, 90, 276],
    "top edge": [60, 130, 90, 160],
    "four tiles": [236, 236, 276, 266],
    "corner of the overlap": [140, 140, 170, 165],
    "wider than the overlap": [100, 300, 400, 340],
    "larger than a tile": [120, 120, 420, 430],
}


def _seen_by_tiles(box: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list, list]:
    """What a perfect detector reports tile by tile: the visible part of the object."""
    windows = tile_windows(*SIZE, TILE, 0.25)
    boxes, tiles = [], []
    for index, (y0, x0, y1, x1) in enumerate(windows):
        part = [max(box[0], x0), max(box[1], y0), min(box[2], x1), min(box[3], y1)]
        if part[2] > part[0] and part[3] > part[1]:
            boxes.append(part)
            tiles.append(index)
    scores = np.linspace(0.9, 0.8, len(boxes))
    return np.array(boxes, float), scores, np.zeros(len(boxes), np.int64), tiles, windows


@pytest.mark.parametrize("name", OBJECTS)
def test_an_object_cut_by_tile_edges_is_one_box(name: str) -> None:
    boxes, scores, labels, tiles, windows = _seen_by_tiles(OBJECTS[name])
    assert len(boxes) > 1  # several tiles see (a part of) it
    merged, _, merged_labels = merge_tiles(
        boxes, scores, labels, method="edge", iou_threshold=0.5, image_size=SIZE,
        tiles=np.array(tiles), windows=windows,
    )  # fmt: skip
    assert len(merged) == 1 and merged_labels.tolist() == [0]
    np.testing.assert_allclose(merged[0], OBJECTS[name])
    # per-class NMS keeps the pieces as objects of their own
    kept, _, _ = merge_tiles(
        boxes, scores, labels, method="nms", iou_threshold=0.5, image_size=SIZE
    )
    assert len(kept) > 1


def test_touching_objects_of_one_tile_stay_apart() -> None:
    objects = [[160, 20, 200, 60], [190, 20, 230, 60], [200, 50, 212, 62]]  # in two tiles
    windows = tile_windows(*SIZE, TILE, 0.25)
    boxes, tiles = [], []
    for index in (0, 1):
        _, x0, y1, x1 = windows[index]
        for box in objects:
            assert x0 <= box[0] and box[2] <= x1 and box[3] <= y1
            boxes.append(box)
            tiles.append(index)
    merged, _, _ = merge_tiles(
        np.array(boxes, float), np.linspace(1, 0.5, len(boxes)), np.zeros(len(boxes)),
        method="edge", iou_threshold=0.5, image_size=SIZE, tiles=np.array(tiles),
        windows=windows,
    )  # fmt: skip
    assert sorted(merged.tolist()) == sorted(map(list, map(lambda b: map(float, b), objects)))


def test_intersection_over_the_smaller_box_and_cut_sides() -> None:
    ios = box_ios(np.array([0, 0, 10, 10.0]), np.array([[5, 0, 10, 10.0], [5, 5, 15, 15.0]]))
    np.testing.assert_allclose(ios, [1.0, 0.25])
    boxes = np.array([[0, 0, 10, 10], [150, 150, 160, 160], [290, 100, 300, 120]], float)
    # the image border is no cut; the inner edges at x = 300 and y = 0 are none either
    assert cut_by_edge(boxes, (0, 0, 300, 300), (600, 300)).tolist() == [False, False, False]
    assert cut_by_edge(boxes, (0, 0, 300, 300), (600, 600)).tolist() == [False, False, True]


def test_without_tiles_edge_merges_as_nms() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], float)
    args = {"iou_threshold": 0.5, "image_size": (50, 50)}
    edge = merge_tiles(boxes, np.array([0.9, 0.8, 0.7]), np.zeros(3), method="edge", **args)
    nms = merge_tiles(boxes, np.array([0.9, 0.8, 0.7]), np.zeros(3), method="nms", **args)
    for a, b in zip(edge, nms, strict=True):
        np.testing.assert_array_equal(a, b)


class _ColourDetector:
    """Detects the squares of a pure colour in a tile: channel k is class k."""

    name = "eager"

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:  # pragma: no cover - unused
        raise NotImplementedError

    def detect(self, batch: np.ndarray, **_: object) -> list:
        found = []
        for tile in batch:
            boxes, labels = [], []
            for k, plane in enumerate(tile):
                mask = ((plane > 0.5) & (tile.sum(axis=0) < 1.5)).astype(np.uint8)
                count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
                for x, y, w, h, _ in stats[1:count]:
                    boxes.append([x, y, x + w, y + h])
                    labels.append(k)
            scores = np.full(len(boxes), 0.9, np.float32)
            found.append((np.array(boxes, np.float32).reshape(-1, 4), scores, np.array(labels)))
        return found


def _easy_smear(rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """Squares of 10 to 60 px in three pure colours on black, 4 px apart at least."""
    height, width = 900, 1300
    image = np.zeros((height, width, 3), np.uint8)
    taken = np.zeros((height, width), bool)
    counts = [0, 0, 0]
    for _ in range(400):
        side = int(rng.integers(10, 61))
        x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
        if taken[max(0, y - 4) : y + side + 4, max(0, x - 4) : x + side + 4].any():
            continue
        k = int(rng.integers(0, 3))
        image[y : y + side, x : x + side, k] = 255
        taken[y : y + side, x : x + side] = True
        counts[k] += 1
    return image, counts


def test_counts_of_a_large_smear_of_easy_objects_are_exact() -> None:
    image, truth = _easy_smear(np.random.default_rng(0))
    counted = {}
    for merge in ("edge", "nms"):
        settings = InferenceSettings(window=TILE, overlap=0.25, merge=merge, batch_size=5)
        info = ModelInfo(
            task="detection", classes=["red", "green", "blue"], image_size=TILE, channels=3,
            mean=[0.0] * 3, std=[1.0] * 3, inference=settings,
        )  # fmt: skip
        result = Predictor(_ColourDetector(), info).predict(image)  # type: ignore[arg-type]
        assert isinstance(result, DetectionResult)
        counted[merge] = [int((result.class_indices == k).sum()) for k in range(3)]
    assert sum(truth) > 150
    assert counted["edge"] == truth
    assert counted["nms"] != truth  # pieces of objects cut by tile edges counted apart


def test_agnostic_edge_merge_joins_pieces_the_model_gave_different_classes() -> None:
    boxes, scores, _, tiles, windows = _seen_by_tiles(OBJECTS["four tiles"])
    labels = np.arange(len(boxes)) % 2  # the model hesitates between two classes
    args = {"method": "edge", "iou_threshold": 0.5, "image_size": SIZE, "windows": windows}
    per_class, _, _ = merge_tiles(boxes, scores, labels, tiles=np.array(tiles), **args)
    merged, _, kept = merge_tiles(
        boxes, scores, labels, tiles=np.array(tiles), agnostic=True, **args
    )
    assert len(per_class) == 2 and len(merged) == 1
    assert kept.tolist() == [0]  # the best-scored box's class
    np.testing.assert_allclose(merged[0], OBJECTS["four tiles"])


def test_a_model_merging_at_tile_edges_is_written_in_layout_2() -> None:
    info = ModelInfo(
        task="detection", classes=["a"], image_size=(64, 64), channels=3,
        mean=[0.5] * 3, std=[0.5] * 3,
    )  # fmt: skip
    assert info.needed_version() == 1
    info.inference.merge = "edge"
    assert info.needed_version() == 2
    assert ModelInfo.from_json(info.to_json()).inference.merge == "edge"


def test_agnostic_edge_merge_keeps_one_box_of_a_cell_two_classes_claim_in_one_tile() -> None:
    windows = tile_windows(*SIZE, TILE, 0.25)
    boxes = np.array([[20, 20, 40, 40], [21, 20, 41, 40], [60, 60, 80, 80]], float)
    labels, scores = np.array([0, 1, 1]), np.array([0.9, 0.8, 0.7])
    args = {"method": "edge", "iou_threshold": 0.5, "image_size": SIZE, "windows": windows}
    tiles = np.zeros(3, np.int64)
    assert len(merge_tiles(boxes, scores, labels, tiles=tiles, **args)[0]) == 3
    merged, _, kept = merge_tiles(boxes, scores, labels, tiles=tiles, agnostic=True, **args)
    assert kept.tolist() == [0, 1] and merged[0].tolist() == [20, 20, 40, 40]


class _LabelOracle:
    """A perfect detector of a known image: the parts of the labelled boxes each tile
    shows (a tile is located by its pixels), as a network that finds every cell would."""

    name = "eager"

    def __init__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> None:
        self.planes = image.transpose(2, 0, 1).astype(np.float32) / 255.0
        self.boxes, self.labels = boxes, labels
        self.windows = tile_windows(image.shape[0], image.shape[1], TILE, 0.25)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:  # pragma: no cover - unused
        raise NotImplementedError

    def _shows(self, window: tuple[int, int, int, int], tile: np.ndarray) -> bool:
        y0, x0, y1, x1 = window
        corner = self.planes[:, y0 : y0 + 16, x0 : x0 + 16]
        if not np.allclose(corner, tile[:, :16, :16], atol=1e-4):
            return False
        return np.allclose(self.planes[:, y0:y1, x0:x1], tile[:, : y1 - y0, : x1 - x0], atol=1e-4)

    def detect(self, batch: np.ndarray, **_: object) -> list:
        found = []
        for tile in batch:
            y0, x0, y1, x1 = next(w for w in self.windows if self._shows(w, tile))
            part = self.boxes - [x0, y0, x0, y0]
            part = np.clip(part, 0, [x1 - x0, y1 - y0, x1 - x0, y1 - y0])
            seen = (part[:, 2] > part[:, 0]) & (part[:, 3] > part[:, 1])
            scores = np.full(int(seen.sum()), 0.9, np.float32)
            found.append((part[seen].astype(np.float32), scores, self.labels[seen]))
        return found


def test_per_class_counts_of_a_synthetic_gram_stained_smear_are_exact(tmp_path) -> None:
    """A large smear of ``mediscope data synth gram-stain`` (cells touching, crossing
    tile edges and corners): a detector finding every cell in every tile gives the
    labels' per-class counts through tiling and the tile-edge merge."""
    from mediscope.data.synthetic.gram_stain import generate_gram_stain

    generate_gram_stain(tmp_path, count=1, test_count=0, size=256, large=(1000, 760), large_count=1)
    image = cv2.cvtColor(
        cv2.imread(str(tmp_path / "large/images/large_00000.png")), cv2.COLOR_BGR2RGB
    )
    rows = np.loadtxt(tmp_path / "large/labels/large_00000.txt", ndmin=2)
    height, width = image.shape[:2]
    cx, cy, w, h = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, rows[:, 4] * height
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    labels = rows[:, 0].astype(np.int64)
    truth = np.bincount(labels, minlength=4).tolist()
    settings = InferenceSettings(
        window=TILE, overlap=0.25, merge="edge", batch_size=8, max_detections=100_000
    )
    info = ModelInfo(
        task="detection", classes=["G-cocci", "G+cocci", "G-bacilli", "G+bacilli"],
        image_size=TILE, channels=3, mean=[0.0] * 3, std=[1.0] * 3, inference=settings,
    )  # fmt: skip
    oracle = _LabelOracle(image, boxes, labels)
    result = Predictor(oracle, info).predict(image)  # type: ignore[arg-type]
    assert isinstance(result, DetectionResult)
    counted = [int((result.class_indices == k).sum()) for k in range(4)]
    assert min(truth) > 0 and sum(truth) > 80  # 98 cells, every class
    assert counted == truth
