"""The voc format: layouts, ImageSets splits, 1-based coordinates, bad objects, round trips."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from detection_helpers import assert_same_boxes, random_sample_set, write_image
from mediscope.data.formats.voc import read_voc, write_voc
from mediscope.data.samples import Sample, SampleSet
from mediscope.errors import DataError
from mediscope.registry import FORMATS


def obj(name: str, box: tuple[str, ...] | None, *, difficult: int = 0) -> str:
    bndbox = ""
    if box is not None:
        coords = "".join(
            f"<{tag}>{value}</{tag}>"
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=False)
        )
        bndbox = f"\n    <bndbox>{coords}</bndbox>"
    return (
        f"  <object>\n    <name>{name}</name>\n    <difficult>{difficult}</difficult>"
        f"{bndbox}\n  </object>\n"
    )


def xml(filename: str, *objects: str, size: tuple[int, int] = (999, 999)) -> str:
    return (
        f"<annotation>\n  <filename>{filename}</filename>\n"
        f"  <size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>\n"
        + "".join(objects)
        + "</annotation>\n"
    )


def make_voc(root: Path, *, image_sets: bool = True) -> None:
    """VOC layout: 3 images of 100 x 50; b is a negative; d is in no image set."""
    for stem in ("a", "b", "c", "d"):
        write_image(root / "JPEGImages" / f"{stem}.jpg", 100, 50)
    (root / "Annotations").mkdir()
    (root / "Annotations" / "a.xml").write_text(
        xml(
            "a.jpg",
            obj("dog", ("1", "1", "100", "50")),
            obj("cat", ("11", "21", "30", "40"), difficult=1),
        )
    )
    (root / "Annotations" / "b.xml").write_text(xml("b.jpg"))
    (root / "Annotations" / "c.xml").write_text(xml("c.jpg", obj("cat", ("5.5", "6", "7", "8.25"))))
    (root / "Annotations" / "d.xml").write_text(xml("d.jpg", obj("bird", ("5", "6", "7", "8"))))
    if image_sets:
        main = root / "ImageSets" / "Main"
        main.mkdir(parents=True)
        (main / "train.txt").write_text("a\nb\n")
        (main / "val.txt").write_text("c\n")
        (main / "cat_train.txt").write_text("a  1\nb -1\n")  # per-class lists are not splits


def boxes_of(samples: SampleSet) -> dict[str, list[list[float]]]:
    return {Path(s.image).stem: np.asarray(s.boxes).tolist() for s in samples.samples}


def test_voc_layout_with_image_sets(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_voc(tmp_path)
    with caplog.at_level(logging.INFO):
        samples = read_voc(tmp_path)
    assert "1 annotations are in no image set" in caplog.text
    assert samples.classes == ["cat", "dog"]  # sorted names of the read annotations
    assert [(Path(s.image).name, s.split) for s in samples.samples] == [
        ("a.jpg", "train"),
        ("b.jpg", "train"),
        ("c.jpg", "val"),
    ]
    assert boxes_of(samples) == {
        "a": [[0.0, 0.0, 100.0, 50.0], [10.0, 20.0, 30.0, 40.0]],  # difficult kept
        "b": [],
        "c": [[4.5, 5.0, 7.0, 8.25]],
    }
    a, b, _ = samples.samples
    assert a.box_labels is not None and a.box_labels.tolist() == [1, 0]
    assert a.boxes is not None and a.boxes.dtype == np.float32
    assert b.boxes is not None and b.boxes.shape == (0, 4)
    assert b.box_labels is not None and b.box_labels.shape == (0,)


def test_without_image_sets_every_annotation_is_read(tmp_path: Path) -> None:
    make_voc(tmp_path, image_sets=False)
    samples = read_voc(tmp_path)
    assert samples.classes == ["bird", "cat", "dog"]
    assert [s.split for s in samples.samples] == [None] * 4
    (tmp_path / "classes.txt").write_text("dog\ncat\nbird\n")
    assert read_voc(tmp_path).classes == ["dog", "cat", "bird"]
    with pytest.raises(DataError, match="differ from the dataset's names"):
        read_voc(tmp_path, classes=["dog", "cat"])


def test_trainval_counts_as_train(tmp_path: Path) -> None:
    make_voc(tmp_path)
    main = tmp_path / "ImageSets" / "Main"
    (main / "train.txt").rename(main / "trainval.txt")
    (main / "test.txt").write_text("d\n")
    samples = read_voc(tmp_path, classes=["cat", "dog", "bird"])
    assert [s.split for s in samples.samples] == ["train", "train", "val", "test"]


def test_xml_beside_images_with_split_folders(tmp_path: Path) -> None:
    for split, stem in (("train", "x"), ("valid", "y"), ("train/deeper", "z")):
        write_image(tmp_path / split / f"{stem}.png", 30, 20)
        (tmp_path / split / f"{stem}.xml").write_text(
            xml("renamed.png", obj("rbc", ("1", "1", "10", "10")))  # filename not found: stem
        )
    samples = read_voc(tmp_path)
    assert [(Path(s.image).name, s.split) for s in samples.samples] == [
        ("x.png", "train"),
        ("z.png", "train"),
        ("y.png", "val"),
    ]
    assert samples.classes == ["rbc"]


BAD_OBJECTS = [
    (obj("cat", ("1", "1", "abc", "5")), "xmax 'abc' is not a number"),
    (obj("cat", ("1", "1", "5")), "<bndbox> without <ymax>"),
    (obj("cat", None), "object without <bndbox>"),
    (obj("", ("1", "1", "5", "5")), "object without <name>"),
    (obj("cta", ("1", "1", "5", "5")), "object name 'cta' is not a class; did you mean 'cat'"),
    (obj("cat", ("1", "1", "nan", "5")), "xmax is nan"),
    (obj("cat", ("6", "1", "5", "5")), "zero or negative size"),  # 1-based: 5..5 is 1 px
    (obj("cat", ("9", "1", "5", "5")), "zero or negative size"),
    (obj("cat", ("1", "1", "150", "5")), r"outside the 100 x 50 image"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_OBJECTS)
def test_bad_object_names_file_and_line(tmp_path: Path, bad: str, message: str) -> None:
    make_voc(tmp_path)
    file = tmp_path / "Annotations" / "c.xml"
    file.write_text(xml("c.jpg", obj("cat", ("1", "1", "5", "5")), bad))
    with pytest.raises(DataError, match=message) as info:
        read_voc(tmp_path, classes=["cat", "dog"])
    assert str(info.value).startswith(f"{file}:")
    line = int(str(info.value).removeprefix(f"{file}:").split(":")[0])
    assert line in (9, 12)  # the second object, or its <bndbox>


def test_skip_drops_bad_objects_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_voc(tmp_path)
    file = tmp_path / "Annotations" / "c.xml"
    file.write_text(xml("c.jpg", obj("cat", ("1", "1", "5", "5")), *(b for b, _ in BAD_OBJECTS)))
    with caplog.at_level(logging.WARNING):
        samples = read_voc(tmp_path, classes=["cat", "dog"], on_bad_label="skip")
    assert boxes_of(samples)["c"] == [[0.0, 0.0, 5.0, 5.0]]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"{len(BAD_OBJECTS)} bad label entries skipped" in warnings[0].getMessage()
    assert f"first: {file}:" in warnings[0].getMessage()


def test_zero_based_xmin_is_clipped_and_malformed_xml_fails(tmp_path: Path) -> None:
    make_voc(tmp_path)
    file = tmp_path / "Annotations" / "c.xml"
    file.write_text(xml("c.jpg", obj("cat", ("0", "0", "100", "51"))))
    assert boxes_of(read_voc(tmp_path))["c"] == [[0.0, 0.0, 100.0, 50.0]]
    file.write_text("<annotation>\n<object>\n</annotation>\n")
    with pytest.raises(DataError, match=r"c\.xml:3: malformed XML \(mismatched tag\)"):
        read_voc(tmp_path)


def test_missing_image_and_listed_id_without_xml(tmp_path: Path) -> None:
    make_voc(tmp_path)
    (tmp_path / "JPEGImages" / "c.jpg").unlink()
    with pytest.raises(DataError, match="image not found"):
        read_voc(tmp_path)
    assert len(read_voc(tmp_path, on_bad_label="skip")) == 2
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("zzz\n")
    with pytest.raises(DataError, match=r"val\.txt:1: no annotation file"):
        read_voc(tmp_path)
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("a\n")
    with pytest.raises(DataError, match="'a' is listed in val and train"):
        read_voc(tmp_path)


def test_write_and_read_back_exactly(tmp_path: Path) -> None:
    samples = random_sample_set(tmp_path / "src", splits={"train": 6, "val": 3, "test": 2})
    out = write_voc(samples, tmp_path / "out")
    assert (out / "ImageSets" / "Main" / "val.txt").read_text() == "val0\nval1\nval2\n"
    assert (out / "classes.txt").read_text() == "cocci\nbacilli\nyeast\n"
    back = read_voc(out)
    assert_same_boxes(samples, back)
    again = read_voc(write_voc(back, tmp_path / "again"))
    for one, two in zip(back.samples, again.samples, strict=True):
        assert np.array_equal(one.boxes, two.boxes)


def test_integer_boxes_are_written_as_integers_and_ids_stay_unique(tmp_path: Path) -> None:
    first = write_image(tmp_path / "src" / "train" / "img.png", 40, 30)
    second = write_image(tmp_path / "src" / "val" / "img.png", 40, 30)
    boxes = np.array([[0, 0, 40, 30]], np.float32)
    samples = SampleSet(
        ["cell"],
        [
            Sample(str(first), boxes=boxes, box_labels=np.array([0]), split="train"),
            Sample(str(second), boxes=boxes[:0], box_labels=np.zeros(0, np.int64), split="val"),
        ],
        tmp_path / "src",
    )
    out = write_voc(samples, tmp_path / "out")
    assert sorted(p.name for p in (out / "Annotations").iterdir()) == [
        "train_img.xml",
        "val_img.xml",
    ]
    text = (out / "Annotations" / "train_img.xml").read_text()
    assert "<xmin>1</xmin>" in text and "<xmax>40</xmax>" in text and "<depth>3</depth>" in text
    assert "<filename>train_img.png</filename>" in text
    back = read_voc(out)
    assert [s.split for s in back.samples] == ["train", "val"]
    assert np.asarray(back.samples[0].boxes).tolist() == [[0.0, 0.0, 40.0, 30.0]]


def test_registered_format(tmp_path: Path) -> None:
    make_voc(tmp_path)
    entry = FORMATS.entry("voc")
    assert entry.tags["tasks"] == ("detection",)
    samples = entry.obj(tmp_path, classes=None, task="detection", root=None, on_bad_label="error")
    assert len(samples) == 3
    with pytest.raises(DataError, match="holds no classification targets"):
        read_voc(tmp_path, task="classification")
