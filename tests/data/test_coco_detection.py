"""The coco format for detection: files and layouts, categories, crowd, bad boxes, writing."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detection_helpers import assert_same_boxes, random_sample_set, write_image
from mediscope.data.formats.coco_detection import read_coco_detection, write_coco_detection
from mediscope.data.samples import SampleSet
from mediscope.errors import DataError
from mediscope.registry import FORMATS

CATEGORIES = [{"id": 7, "name": "yeast"}, {"id": 1, "name": "cocci"}, {"id": 3, "name": "bacilli"}]


def document(images: list[str], annotations: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "images": [
            {"id": i + 1, "file_name": name, "width": 100, "height": 50}
            for i, name in enumerate(images)
        ],
        "annotations": [{"id": i + 1, "iscrowd": 0, **a} for i, a in enumerate(annotations)],
        "categories": CATEGORIES,
    }


def box(image_id: int, category: int, bbox: Any, **extra: Any) -> dict[str, Any]:
    return {"image_id": image_id, "category_id": category, "bbox": bbox, **extra}


def make_file(folder: Path, annotations: list[dict[str, Any]], name: str = "coco.json") -> Path:
    write_image(folder / "a.jpg", 100, 50)
    write_image(folder / "images" / "b.png", 100, 50)
    file = folder / name
    file.write_text(json.dumps(document(["a.jpg", "b.png"], annotations)))
    return file


def boxes_of(samples: SampleSet) -> dict[str, list[list[float]]]:
    return {Path(s.image).name: np.asarray(s.boxes).tolist() for s in samples.samples}


def test_one_file_categories_in_id_order_crowd_left_out_negatives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = make_file(
        tmp_path,
        [
            box(1, 7, [10, 20, 30, 5.5]),
            box(1, 1, [0, 0, 100, 50]),
            box(1, 3, [1, 1, 2, 2], iscrowd=1),
        ],
    )
    with caplog.at_level(logging.WARNING):
        samples = read_coco_detection(file)
    assert "1 crowd annotations (iscrowd 1) left out" in caplog.text
    assert samples.classes == ["cocci", "bacilli", "yeast"]
    assert samples.root == tmp_path
    assert boxes_of(samples) == {
        "a.jpg": [[10.0, 20.0, 40.0, 25.5], [0.0, 0.0, 100.0, 50.0]],
        "b.png": [],
    }
    first, negative = samples.samples
    assert first.box_labels is not None and first.box_labels.tolist() == [2, 0]
    assert first.boxes is not None and first.boxes.dtype == np.float32
    assert first.box_labels.dtype == np.int64 and first.split is None
    assert negative.boxes is not None and negative.boxes.shape == (0, 4)
    assert negative.box_labels is not None and negative.box_labels.shape == (0,)


def test_given_classes_map_categories_by_name(tmp_path: Path) -> None:
    file = make_file(tmp_path, [box(1, 7, [10, 20, 30, 5])])
    samples = read_coco_detection(file, classes=["yeast", "bacilli", "cocci", "fungi"])
    assert samples.classes == ["yeast", "bacilli", "cocci", "fungi"]
    assert np.asarray(samples.samples[0].box_labels).tolist() == [0]
    with pytest.raises(DataError, match="category 'yeast' is not one of data.classes"):
        read_coco_detection(file, classes=["cocci", "bacilli", "yest"])


def test_split_files_roboflow_and_coco_layouts(tmp_path: Path) -> None:
    ours = tmp_path / "ours"
    for split in ("train", "valid"):
        write_image(ours / "images" / split / f"{split}.jpg", 100, 50)
        (ours / f"annotations_{split}.json").write_text(
            json.dumps(document([f"images/{split}/{split}.jpg"], [box(1, 1, [1, 2, 3, 4])]))
        )
    samples = read_coco_detection(ours)
    assert [(Path(s.image).name, s.split) for s in samples.samples] == [
        ("train.jpg", "train"),
        ("valid.jpg", "val"),
    ]
    assert samples.ids() == ["images/train/train.jpg", "images/valid/valid.jpg"]

    roboflow = tmp_path / "roboflow"
    for split in ("test", "train"):
        write_image(roboflow / split / "x.jpg", 100, 50)
        (roboflow / split / "_annotations.coco.json").write_text(
            json.dumps(document(["x.jpg"], []))
        )
    assert [s.split for s in read_coco_detection(roboflow).samples] == ["train", "test"]

    coco = tmp_path / "coco"
    write_image(coco / "val2017" / "0001.jpg", 100, 50)
    (coco / "annotations").mkdir(parents=True)
    (coco / "annotations" / "instances_val2017.json").write_text(
        json.dumps(document(["0001.jpg"], [box(1, 3, [5, 5, 10, 10])]))
    )
    samples = read_coco_detection(coco)
    assert [s.split for s in samples.samples] == ["val"]
    assert boxes_of(samples) == {"0001.jpg": [[5.0, 5.0, 15.0, 15.0]]}


def test_root_and_missing_images(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_image(tmp_path / "pics" / "a.jpg", 100, 50)
    file = tmp_path / "json" / "coco.json"
    file.parent.mkdir()
    file.write_text(json.dumps(document(["a.jpg", "gone.jpg"], [box(2, 1, [1, 1, 5, 5])])))
    with pytest.raises(DataError, match=r"images\[1\]: image gone.jpg not found") as info:
        read_coco_detection(file, root=tmp_path / "pics")
    assert str(info.value).startswith(f"{file}: images[1]")
    with caplog.at_level(logging.WARNING):
        samples = read_coco_detection(file, root=tmp_path / "pics", on_bad_label="skip")
    assert [Path(s.image).name for s in samples.samples] == ["a.jpg"]
    assert "1 bad label entry skipped" in caplog.text


BAD = [
    (box(1, 1, [1, 2, 3]), "bbox has 3 numbers, expected 4"),
    (box(1, 1, "1 2 3 4"), "bbox is not a list, expected 4"),
    (box(1, 1, [1, "x", 3, 4]), "y 'x' is not a number"),
    (box(1, 1, [1, None, 3, 4]), "y 'None' is not a number"),
    (box(1, 1, [1, 2, float("nan"), 4]), "w is nan"),
    (box(1, 1, [1, 2, 0, 4]), "zero or negative size"),
    (box(1, 1, [1, 2, 3, -4]), "zero or negative size"),
    (box(1, 1, [90, 2, 30, 4]), "outside the 100 x 50 image"),
    (box(9, 1, [1, 2, 3, 4]), "image_id 9 is not in images"),
    (box(1, 2, [1, 2, 3, 4]), "category_id 2 is not in categories; category ids: 1, 3, 7"),
    (box(1, None, [1, 2, 3, 4]), "category_id None is not in categories"),
]


@pytest.mark.parametrize(("bad", "message"), BAD)
def test_bad_annotation_names_file_and_entry(
    tmp_path: Path, bad: dict[str, Any], message: str
) -> None:
    file = make_file(tmp_path, [box(1, 1, [0, 0, 10, 10]), bad])
    with pytest.raises(DataError, match=message) as info:
        read_coco_detection(file)
    assert str(info.value).startswith(f"{file}: annotations[1]: ")


def test_skip_drops_bad_annotations_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = make_file(tmp_path, [box(1, 1, [0, 0, 10, 10]), *(b for b, _ in BAD)])
    with caplog.at_level(logging.WARNING):
        samples = read_coco_detection(file, on_bad_label="skip")
    assert boxes_of(samples)["a.jpg"] == [[0.0, 0.0, 10.0, 10.0]]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"{len(BAD)} bad label entries skipped" in warnings[0].getMessage()
    assert f"first: {file}: annotations[1]" in warnings[0].getMessage()


def test_structure_errors(tmp_path: Path) -> None:
    ours = tmp_path / "ours"
    for split, cats in (("train", CATEGORIES), ("val", CATEGORIES[:2])):
        write_image(ours / f"{split}.jpg", 10, 10)
        data = document([f"{split}.jpg"], [])
        data["categories"] = cats
        (ours / f"annotations_{split}.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="the categories differ from those of"):
        read_coco_detection(ours)
    (tmp_path / "broken.json").write_text('{"images": [\n')
    with pytest.raises(DataError, match=r"broken\.json:2: not valid JSON"):
        read_coco_detection(tmp_path / "broken.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no COCO JSON files here"):
        read_coco_detection(tmp_path / "empty")
    with pytest.raises(DataError, match="holds no segmentation targets"):
        read_coco_detection(tmp_path / "broken.json", task="segmentation")


def test_write_and_read_back_exactly(tmp_path: Path) -> None:
    samples = random_sample_set(tmp_path / "src", splits={"train": 6, "val": 3})
    out = write_coco_detection(samples, tmp_path / "out")
    train = json.loads((out / "annotations_train.json").read_text())
    assert train["images"][0]["file_name"] == "images/train/train0.png"
    assert [c["id"] for c in train["categories"]] == [1, 2, 3]
    assert (out / "images" / "val" / "val2.png").is_file()
    back = read_coco_detection(out)
    assert_same_boxes(samples, back)
    again = read_coco_detection(write_coco_detection(back, tmp_path / "again"))
    for one, two in zip(back.samples, again.samples, strict=True):
        assert np.array_equal(one.boxes, two.boxes)
    flat = random_sample_set(tmp_path / "flat", splits={None: 2})
    out = write_coco_detection(flat, tmp_path / "flat_out")
    assert sorted(p.name for p in out.iterdir()) == ["annotations.json", "images"]
    assert_same_boxes(flat, read_coco_detection(out))


def test_registered_format(tmp_path: Path) -> None:
    file = make_file(tmp_path, [])
    entry = FORMATS.entry("coco")
    assert entry.tags["tasks"] == ("detection",)
    samples = entry.obj(file, classes=None, task="detection", root=None, on_bad_label="error")
    assert len(samples) == 2
