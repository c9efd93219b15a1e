"""Detection outputs: drawn boxes, PR curves, prediction files and their readers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mediscope.errors import DataError
from mediscope.inference.pictures import (
    class_colors,
    class_tags,
    draw_detections,
    draw_truth_boxes,
    line_width,
)
from mediscope.metrics.detection import evaluate_detections
from mediscope.reports.detection import plot_pr_curves
from mediscope.runtime.detection_files import (
    DetectionRecord,
    label_names,
    read_detection_predictions,
    write_detection_predictions,
)

CLASSES = ["rbc", "wbc", "ring form"]


def make_records(seed: int = 0) -> list[DetectionRecord]:
    rng = np.random.default_rng(seed)
    records = []
    paths = ["smears/a/01.png", "smears/b/01.png", "slide, 2.jpg", "batch.npz::images::3", "x.png"]
    for i, path in enumerate(paths):
        width, height = int(rng.integers(300, 2000)), int(rng.integers(300, 2000))
        n = 0 if path == "x.png" else int(rng.integers(1, 12))
        corner = rng.uniform(0, [width - 60, height - 60], size=(n, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(5, 60, size=(n, 2))], axis=1)
        labels = rng.integers(0, 3 if i else 2, size=n)  # "ring form" absent from image 0
        records.append(DetectionRecord(path, width, height, boxes, rng.random(n), labels))
    return records


def by_score(record: DetectionRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(-record.scores, kind="stable")
    return record.boxes[order], record.scores[order], record.labels[order]


def assert_same(read: list[DetectionRecord], written: list[DetectionRecord]) -> None:
    assert [r.path for r in read] == [r.path for r in written]
    for got, want in zip(read, written, strict=True):
        assert (got.width, got.height) == (want.width, want.height)
        boxes, scores, labels = by_score(want)
        np.testing.assert_allclose(got.boxes, boxes, atol=1e-6, rtol=0)
        np.testing.assert_allclose(got.scores, scores, atol=1e-6, rtol=0)
        np.testing.assert_array_equal(got.labels, labels)


def test_files_read_back_as_written(tmp_path: Path) -> None:
    records = make_records()
    paths = write_detection_predictions(tmp_path / "out", records, CLASSES)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "counts.csv",
        "labels",
        "predictions.csv",
        "predictions.json",
    ]
    for source in (paths["csv"], paths["json"], tmp_path / "out"):
        read, classes = read_detection_predictions(source)
        assert classes == CLASSES
        assert_same(read, records)
    # the CSV: one row per box, and one bare row for the image without boxes
    with paths["csv"].open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == sum(len(r.boxes) for r in records) + 1
    bare = [row for row in rows if row["path"] == "x.png"]
    assert bare == [{**bare[0], "class": "", "score": "", "x1": "", "y1": "", "x2": "", "y2": ""}]
    assert {row["class"] for row in rows} == {"", *CLASSES}


def test_csv_without_counts_takes_class_names_in_order_met(tmp_path: Path) -> None:
    records = make_records(1)
    paths = write_detection_predictions(tmp_path, records, CLASSES)
    paths["counts"].unlink()
    read, classes = read_detection_predictions(paths["csv"])
    assert sorted(classes) == sorted(CLASSES)
    names = [[classes[k] for k in r.labels] for r in read]
    assert names == [[CLASSES[k] for k in by_score(r)[2]] for r in records]


def test_coco_json_is_self_contained_and_loads_in_pycocotools(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    records = make_records(2)
    paths = write_detection_predictions(tmp_path, records, CLASSES)
    data = json.loads(paths["json"].read_text())
    assert data["categories"] == [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]
    assert [i["file_name"] for i in data["images"]] == [r.path for r in records]
    coco = COCO()
    coco.dataset = {"images": data["images"], "categories": data["categories"]}
    coco.createIndex()
    results = coco.loadRes(data["annotations"])
    assert len(results.getAnnIds()) == sum(len(r.boxes) for r in records)
    first = results.loadAnns(results.getAnnIds(imgIds=[1]))
    boxes, scores, _ = by_score(records[0])
    np.testing.assert_allclose([a["bbox"][2] for a in first], boxes[:, 2] - boxes[:, 0])
    np.testing.assert_allclose([a["score"] for a in first], scores)


def test_yolo_labels_and_counts(tmp_path: Path) -> None:
    records = make_records(3)
    paths = write_detection_predictions(tmp_path, records, CLASSES)
    names = ["01", "01_2", "slide, 2", "batch.npz__images__3", "x"]
    assert label_names([r.path for r in records]) == names
    assert sorted(p.stem for p in paths["labels"].iterdir()) == sorted(names)
    for name, record in zip(names, records, strict=True):
        text = (paths["labels"] / f"{name}.txt").read_text()
        if not len(record.boxes):
            assert text == ""
            continue
        values = np.array([line.split() for line in text.splitlines()], dtype=float)
        boxes, scores, labels = by_score(record)
        size = np.array([record.width, record.height] * 2)
        expected = (
            np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], axis=1)
            / size
        )
        np.testing.assert_array_equal(values[:, 0], labels)
        np.testing.assert_allclose(values[:, 1:5], expected, atol=1e-6, rtol=0)
        np.testing.assert_allclose(values[:, 5], scores, atol=1e-6, rtol=0)
        assert values[:, 1:5].min() >= 0 and values[:, 1:5].max() <= 1
    with paths["counts"].open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["path", *CLASSES, "total"]
    for row, record in zip(rows[1:], records, strict=True):
        expected = [int((record.labels == k).sum()) for k in range(3)]
        assert row == [record.path, *map(str, expected), str(len(record.boxes))]
    # writing again replaces the label files
    write_detection_predictions(tmp_path, records[:1], CLASSES)
    assert [p.name for p in paths["labels"].iterdir()] == ["01.txt"]


def test_tensor_records_and_bad_labels(tmp_path: Path) -> None:
    record = DetectionRecord(
        "a.png", 100, 50, torch.tensor([[1.0, 2.0, 30.0, 40.0]]), torch.tensor([0.5]), [1]
    )
    assert record.boxes.dtype == np.float64 and record.labels.tolist() == [1]
    with pytest.raises(ValueError, match="labels outside 0..0"):
        write_detection_predictions(tmp_path, [record], ["only"])
    with pytest.raises(ValueError, match="1 boxes, 2 scores"):
        DetectionRecord("b.png", 10, 10, np.zeros((1, 4)), [0.1, 0.2], [0])


def test_reader_errors(tmp_path: Path) -> None:
    paths = write_detection_predictions(tmp_path, make_records(4), CLASSES)
    lines = paths["csv"].read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",oops"
    paths["csv"].write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"predictions.csv:4: bad number"):
        read_detection_predictions(paths["csv"])
    other = tmp_path / "classification.csv"
    other.write_text("path,label,a,b\nx.png,a,0.6,0.4\n")
    with pytest.raises(DataError, match="not a detection prediction file") as error:
        read_detection_predictions(other)
    assert "--method vote or mean" in str(error.value)
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [], "categories": [')
    with pytest.raises(DataError, match="cannot read the predictions"):
        read_detection_predictions(broken)
    data = json.loads(paths["json"].read_text())
    data["annotations"][0]["category_id"] = 99
    paths["json"].write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"annotations\[0\]: unknown or missing 99"):
        read_detection_predictions(paths["json"])
    with pytest.raises(DataError, match="no predictions.json or predictions.csv"):
        read_detection_predictions(tmp_path / "labels")
    with pytest.raises(DataError, match="no such file"):
        read_detection_predictions(tmp_path / "none.csv")


def test_draw_detections_colours_and_scale() -> None:
    image = np.full((200, 300, 3), 128, dtype=np.uint8)
    boxes = np.array([[20, 60, 120, 150], [150, 40, 280, 190]])
    drawn = draw_detections(image, boxes, [0, 2], [0.9, 0.4], CLASSES)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert (image == 128).all()  # the input is left alone
    colours = class_colors(len(CLASSES) + 1)[1:]
    np.testing.assert_array_equal(drawn[100, 20], colours[0])  # left edge of box 0
    np.testing.assert_array_equal(drawn[189, 200], colours[2])  # bottom edge of box 1
    assert (drawn[100, 60] == 128).all()  # inside a box, the image shows
    # the label tag sits above the box in the class colour, with text on it
    tag = drawn[50:59, 21:66]
    assert not (tag == 128).all(axis=-1).any()  # filled: no image pixel shows through
    assert (tag == colours[0]).all(axis=-1).mean() > 0.3
    assert (tag.max(axis=-1) < 60).mean() > 0.05  # dark text on the light sky blue
    # a large image gets thicker lines and bigger text
    big = np.zeros((4000, 3000, 3), dtype=np.uint8)
    drawn_big = draw_detections(big, boxes * 10, [1, 1], None, CLASSES)
    column = (drawn_big[1000, 150:260] == colours[1]).all(axis=-1)
    assert column.sum() == line_width(4000, 3000) > 2
    grey = draw_detections(np.zeros((50, 60), dtype=np.uint8), np.zeros((0, 4)), [], [], CLASSES)
    assert grey.shape == (50, 60, 3)


def test_crowded_images_get_class_initials_where_boxes_have_room_and_a_legend_band() -> None:
    assert class_tags(CLASSES) == ["R", "W", "Rf"]
    assert class_tags(["cell", "cell-a", "cell a"]) == ["C", "C-a", "Ca"]
    assert class_tags(["G+", "G +"]) == ["G+", "G +"]  # no way to tell them apart: names
    image = np.full((400, 600, 3), 128, dtype=np.uint8)
    # 50 boxes: one wide (room for a tag), the others 6 px (none)
    small = [[10 + 11 * (k % 49), 300 + 12 * (k // 49), 16 + 11 * (k % 49), 306] for k in range(49)]
    boxes = np.array([[100, 100, 300, 180], *small], dtype=float)
    labels = np.zeros(len(boxes), dtype=int)
    scores = np.full(len(boxes), 0.5)
    colour = class_colors(len(CLASSES) + 1)[1]
    drawn = draw_detections(image, boxes, labels, scores, CLASSES)
    assert drawn.shape == image.shape  # no legend unless asked for
    tag = drawn[80:99, 100:300]  # above the wide box: its "R 0.50" tag
    assert (tag == colour).all(axis=-1).sum() > 100
    assert not (drawn[285:299, 5:560] == colour).all(axis=-1).any()  # small boxes: no tags
    shown = draw_detections(image, boxes, labels, scores, CLASSES, legend=True)
    band = shown.shape[0] - image.shape[0]
    assert band > 0 and shown.shape[1] == image.shape[1]
    np.testing.assert_array_equal(shown[band:], drawn)  # the image itself is not covered
    assert (shown[:band] == colour).all(axis=-1).any()  # the class's swatch in the band
    bare = draw_detections(image, boxes, labels, None, CLASSES, tags="none")
    assert not (bare[80:99, 100:300] == colour).all(axis=-1).any()  # boxes only


def test_truth_boxes_are_white_edged_in_black() -> None:
    pale = np.full((100, 100, 3), 235, dtype=np.uint8)
    drawn = draw_truth_boxes(pale, [[20, 20, 80, 80]], thickness=2)
    column = drawn[50, 15:26].min(axis=-1)  # across the left edge, from outside in
    assert (column == 255).any() and (column == 0).sum() >= 2  # white core, black edges
    assert (pale == 235).all()  # the input is left alone


def test_pr_curve_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    targets, preds = [], []
    for _ in range(30):
        corner = rng.uniform(0, 400, size=(8, 2))
        gt = np.concatenate([corner, corner + rng.uniform(10, 80, size=(8, 2))], axis=1)
        labels = rng.integers(0, 2, size=8)  # "ring form" has no ground truth
        noisy = gt + rng.normal(0, 6, gt.shape)
        scores = rng.random(8)
        preds.append({"boxes": noisy, "scores": scores, "labels": labels})
        targets.append({"boxes": gt, "labels": labels})
    report = evaluate_detections(preds, targets, CLASSES)
    out = plot_pr_curves(report, tmp_path / "pr.png")
    assert out.stat().st_size > 10_000
    with Image.open(out) as png:
        assert png.format == "PNG" and min(png.size) > 300
