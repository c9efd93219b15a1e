"""The yolo format: layouts, class names, bad label lines, negatives, writing, round trips."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from detection_helpers import assert_same_boxes, random_sample_set, write_image
from mediscope.data.formats.yolo import label_path, read_yolo, write_yolo
from mediscope.data.samples import Sample, SampleSet
from mediscope.errors import DataError
from mediscope.registry import FORMATS


def make_split_layout(root: Path, *, val_name: str = "val") -> None:
    """images/{train,<val_name>} + labels/..., 100 x 50 images, classes.txt."""
    write_image(root / "images" / "train" / "a.jpg", 100, 50)
    write_image(root / "images" / "train" / "sub" / "b.png", 40, 40)
    write_image(root / "images" / val_name / "c.jpg", 100, 50)
    (root / "labels" / "train" / "sub").mkdir(parents=True)
    (root / "labels" / val_name).mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n\n1 0.1 0.1 0.2 0.2\n")
    (root / "labels" / "train" / "sub" / "b.txt").write_text("1 0.25 0.75 0.5 0.5\n")
    (root / "classes.txt").write_text("cocci\nbacilli\n")


def boxes_of(samples: SampleSet) -> dict[str, list[list[float]]]:
    return {Path(s.image).name: np.asarray(s.boxes).tolist() for s in samples.samples}


def test_split_folders_give_pixel_boxes_splits_and_negatives(tmp_path: Path) -> None:
    make_split_layout(tmp_path, val_name="valid")
    samples = read_yolo(tmp_path)
    assert samples.classes == ["cocci", "bacilli"]
    assert samples.root == tmp_path
    assert [(Path(s.image).name, s.split) for s in samples.samples] == [
        ("a.jpg", "train"),
        ("b.png", "train"),
        ("c.jpg", "val"),
    ]
    assert boxes_of(samples) == {
        "a.jpg": [[40.0, 15.0, 60.0, 35.0], [0.0, 0.0, 20.0, 10.0]],
        "b.png": [[0.0, 20.0, 20.0, 40.0]],
        "c.jpg": [],
    }
    a, _, c = samples.samples
    assert a.boxes is not None and a.boxes.dtype == np.float32 and a.boxes.shape == (2, 4)
    assert a.box_labels is not None and a.box_labels.dtype == np.int64
    assert a.box_labels.tolist() == [0, 1] and a.group is None
    assert c.boxes is not None and c.boxes.shape == (0, 4)
    assert c.box_labels is not None and c.box_labels.shape == (0,)
    assert samples.ids() == ["images/train/a.jpg", "images/train/sub/b.png", "images/valid/c.jpg"]


def test_empty_label_file_is_a_negative(tmp_path: Path) -> None:
    make_split_layout(tmp_path)
    (tmp_path / "labels" / "val" / "c.txt").write_text("\n")
    samples = read_yolo(tmp_path)
    assert samples.samples[2].boxes is not None and samples.samples[2].boxes.shape == (0, 4)


def test_roboflow_layout_and_flat_layout(tmp_path: Path) -> None:
    rf = tmp_path / "rf"
    for split in ("train", "valid", "test"):
        write_image(rf / split / "images" / f"{split}.jpg", 64, 32)
        (rf / split / "labels").mkdir(parents=True)
        (rf / split / "labels" / f"{split}.txt").write_text("0 0.5 0.5 1 1\n")
    samples = read_yolo(rf, classes=["cell"])
    assert [s.split for s in samples.samples] == ["train", "val", "test"]
    assert boxes_of(samples)["valid.jpg"] == [[0.0, 0.0, 64.0, 32.0]]

    flat = tmp_path / "flat"
    write_image(flat / "images" / "x.png", 10, 10)
    (flat / "labels").mkdir()
    (flat / "labels" / "x.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (flat / "labels" / "classes.txt").write_text("cell\n")  # LabelImg puts it here
    samples = read_yolo(flat)
    assert samples.classes == ["cell"]
    assert [s.split for s in samples.samples] == [None]
    assert boxes_of(samples) == {"x.png": [[2.5, 2.5, 7.5, 7.5]]}


def test_data_yaml_names_dict_path_key_lists_and_roboflow_paths(tmp_path: Path) -> None:
    make_split_layout(tmp_path / "ds")
    (tmp_path / "ds" / "classes.txt").unlink()
    (tmp_path / "data.yaml").write_text(
        "path: ds\ntrain: [images/train]\nval: ../images/val\nnames: {1: bacilli, 0: cocci}\nnc: 2\n"
    )
    samples = read_yolo(tmp_path / "data.yaml")
    assert samples.classes == ["cocci", "bacilli"]
    assert samples.root == tmp_path / "ds"
    assert [s.split for s in samples.samples] == ["train", "train", "val"]
    # given names equal to data.yaml's are fine; a folder holding data.yaml works too
    (tmp_path / "data.yaml").rename(tmp_path / "ds" / "data.yaml")
    (tmp_path / "ds" / "data.yaml").write_text(
        "path: /elsewhere/on/another/machine\ntrain: images/train\nnames: [cocci, bacilli]\n"
    )
    samples = read_yolo(tmp_path / "ds", classes=["cocci", "bacilli"])
    assert [s.split for s in samples.samples] == ["train", "train"]


def test_data_yaml_txt_list(tmp_path: Path) -> None:
    make_split_layout(tmp_path)
    (tmp_path / "train.txt").write_text("./images/train/a.jpg\n\nimages/val/c.jpg\n")
    (tmp_path / "data.yaml").write_text("train: train.txt\nnames: [cocci, bacilli]\n")
    samples = read_yolo(tmp_path)
    assert [Path(s.image).name for s in samples.samples] == ["a.jpg", "c.jpg"]
    (tmp_path / "train.txt").write_text("images/train/nothere.jpg\n")
    with pytest.raises(DataError, match=r"train\.txt:1: image not found"):
        read_yolo(tmp_path)


@pytest.mark.parametrize(
    ("yaml_text", "classes", "message"),
    [
        ("names: [a, b]\n", ["a", "c"], "differ from the dataset's names"),
        ("names: {0: a, 2: b}\n", None, r"ids are \[0, 2\], not 0..1"),
        ("names: [a, b]\nnc: 3\n", None, "nc is 3 but 'names' has 2"),
        ("names: [a, a]\n", None, "class names repeat: a"),
        ("names: [a\n", None, r"data.yaml:\d+: invalid YAML"),
        ("train: images/nope\nnames: [a]\n", None, "'train: images/nope' is not an image folder"),
    ],
)
def test_class_name_and_data_yaml_errors(
    tmp_path: Path, yaml_text: str, classes: list[str] | None, message: str
) -> None:
    make_split_layout(tmp_path)
    (tmp_path / "data.yaml").write_text(yaml_text)
    with pytest.raises(DataError, match=message):
        read_yolo(tmp_path, classes=classes)


def test_no_class_names_and_no_layout(tmp_path: Path) -> None:
    make_split_layout(tmp_path)
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(DataError, match="the class names are not given; write data.yaml"):
        read_yolo(tmp_path)
    assert read_yolo(tmp_path, classes=["x", "y"]).classes == ["x", "y"]
    with pytest.raises(DataError, match="differ"):
        (tmp_path / "classes.txt").write_text("x\nz\n")
        read_yolo(tmp_path, classes=["x", "y"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no YOLO layout here"):
        read_yolo(tmp_path / "empty")
    with pytest.raises(DataError, match="holds no segmentation targets"):
        read_yolo(tmp_path, task="segmentation")


BAD_LINES = [
    ("5 0.5 0.5 0.1 0.1", "class id 5 is not in 0..1"),
    ("1.5 0.5 0.5 0.1 0.1", "class id '1.5' is not an integer"),
    ("a 0.5 0.5 0.1 0.1", "class id 'a' is not an integer"),
    ("-1 0.5 0.5 0.1 0.1", "class id -1 is not in 0..1"),
    ("0 0.5 x 0.1 0.1", "cy 'x' is not a number"),
    ("0 0.5 0.5 0.1", "4 fields, expected 5"),
    ("0 0.5 0.5 0.1 0.1 0.9", "6 fields: a score column"),
    ("0 0.1 0.1 0.2 0.1 0.2 0.2 0.1 0.2", "9 fields: a segmentation polygon"),
    ("0 nan 0.5 0.1 0.1", "cx is nan"),
    ("0 0.5 inf 0.1 0.1", "cy is inf"),
    ("0 1.2 0.5 0.1 0.1", r"cx 1.2 is outside \[0, 1\]"),
    ("0 0.95 0.5 0.2 0.1", r"cx \+ w/2 1.05 is outside \[0, 1\]"),
    ("0 0.5 0.5 0 0.1", "zero or negative size"),
    ("0 0.5 0.5 0.1 -0.1", r"h -0.1 is outside \[0, 1\]|zero or negative"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_bad_label_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    make_split_layout(tmp_path)
    file = tmp_path / "labels" / "train" / "a.txt"
    file.write_text(f"0 0.5 0.5 0.2 0.4\n{line}\n")
    with pytest.raises(DataError, match=message) as info:
        read_yolo(tmp_path)
    assert str(info.value).startswith(f"{file}:2: ")
    assert "on_bad_label: skip" in str(info.value)


def test_skip_drops_bad_lines_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_split_layout(tmp_path)
    file = tmp_path / "labels" / "train" / "a.txt"
    file.write_text("\n".join(["0 0.5 0.5 0.2 0.4", *(line for line, _ in BAD_LINES)]) + "\n")
    with caplog.at_level(logging.WARNING):
        samples = read_yolo(tmp_path, on_bad_label="skip")
    assert boxes_of(samples)["a.jpg"] == [[40.0, 15.0, 60.0, 35.0]]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert f"{len(BAD_LINES)} bad label entries skipped" in text
    assert f"first: {file}:2: class id 5" in text


def test_tiny_overshoot_is_clipped(tmp_path: Path) -> None:
    make_split_layout(tmp_path)
    (tmp_path / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 1.0000005 1\n")
    assert boxes_of(read_yolo(tmp_path))["a.jpg"] == [[0.0, 0.0, 100.0, 50.0]]


def test_label_without_image(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_split_layout(tmp_path)
    orphan = tmp_path / "labels" / "val" / "ghost.txt"
    orphan.write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match="label file without an image") as info:
        read_yolo(tmp_path)
    assert str(info.value).startswith(f"{orphan}: ")
    with caplog.at_level(logging.WARNING):
        samples = read_yolo(tmp_path, on_bad_label="skip")
    assert len(samples) == 3
    assert "1 bad label entry skipped" in caplog.text


def test_label_path_rule() -> None:
    assert label_path(Path("/d/images/train/a/b.jpg")) == Path("/d/labels/train/a/b.txt")
    assert label_path(Path("/images/d/train/images/b.png")) == Path("/images/d/train/labels/b.txt")
    assert label_path(Path("/d/pics/b.png")) == Path("/d/pics/b.txt")


def test_write_and_read_back_exactly(tmp_path: Path) -> None:
    samples = random_sample_set(tmp_path / "src", splits={"train": 6, "val": 3, "test": 2})
    out = write_yolo(samples, tmp_path / "out")
    assert (out / "data.yaml").is_file()
    assert (out / "labels" / "train" / "train0.txt").read_text() == ""  # a negative
    back = read_yolo(out)
    assert_same_boxes(samples, back)
    assert [s.split for s in back.samples] == [s.split for s in samples.samples]
    again = read_yolo(write_yolo(back, tmp_path / "again"))
    assert_same_boxes(back, again, atol=0)
    for one, two in zip(back.samples, again.samples, strict=True):
        assert np.array_equal(one.boxes, two.boxes)  # bit-exact


def test_write_without_splits_and_refusals(tmp_path: Path) -> None:
    samples = random_sample_set(tmp_path / "src", splits={None: 3})
    out = write_yolo(samples, tmp_path / "out")
    assert "train" not in (out / "data.yaml").read_text()
    back = read_yolo(out)
    assert [s.split for s in back.samples] == [None] * 3
    assert_same_boxes(samples, back)
    with pytest.raises(DataError, match="folder exists and is not empty"):
        write_yolo(samples, out)
    write_yolo(samples, out, overwrite=True, link=True)
    mixed = SampleSet(
        samples.classes,
        [*samples.samples[:1], Sample(**{**vars(samples.samples[1]), "split": "val"})],
        tmp_path,
    )
    with pytest.raises(DataError, match="1 samples have no split"):
        write_yolo(mixed, tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists()
    outside = Sample(
        samples.samples[1].image,
        boxes=np.array([[0, 0, 500, 5]], np.float32),
        box_labels=np.array([0]),
    )
    with pytest.raises(DataError, match="outside"):
        write_yolo(SampleSet(samples.classes, [outside], tmp_path), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_registered_format_takes_the_datamodule_arguments(tmp_path: Path) -> None:
    make_split_layout(tmp_path)
    entry = FORMATS.entry("yolo")
    assert entry.tags["tasks"] == ("detection",)
    samples = entry.obj(tmp_path, classes=None, task="detection", root=None, on_bad_label="skip")
    assert len(samples) == 3
    with pytest.raises(DataError, match="data.on_bad_label: unknown on_bad_label 'ignore'"):
        read_yolo(tmp_path, on_bad_label="ignore")
