"""The csv format: a manifest of image paths and labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mediscope.data.formats.csv import read_csv
from mediscope.data.images import read_image
from mediscope.errors import DataError
from mediscope.registry import FORMATS


def write_images(folder: Path, names: list[str]) -> dict[str, np.ndarray]:
    """Writes small distinct RGB PNGs; returns their pixels by name."""
    pixels = {}
    rng = np.random.default_rng(0)
    for name in names:
        array = rng.integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(folder / name)
        pixels[name] = array
    return pixels


def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_labels_groups_and_splits(tmp_path: Path) -> None:
    pixels = write_images(tmp_path / "images", ["a.png", "b.png", "c.png", "sub/d.png"])
    manifest = write_csv(
        tmp_path / "manifest.csv",
        "path,label,patient_id,split\n"
        "images/a.png,covid,p1,train\n"
        "images/b.png,healthy,p1,train\n"
        "\n"
        "images/c.png,other,p2,valid\n"
        "images/sub/d.png,covid,,Test\n",
    )
    found = FORMATS.get("csv")(manifest, classes=None, task="classification")
    assert found.classes == ["covid", "healthy", "other"]
    assert found.labels().tolist() == [0, 1, 2, 0]
    assert [s.group for s in found.samples] == ["p1", "p1", "p2", None]
    assert [s.split for s in found.samples] == ["train", "train", "val", "test"]
    assert found.root == tmp_path
    assert found.ids() == ["images/a.png", "images/b.png", "images/c.png", "images/sub/d.png"]
    assert np.array_equal(read_image(found.samples[3].image), pixels["sub/d.png"])


def test_a_group_column_names_the_patient(tmp_path: Path) -> None:
    write_images(tmp_path / "images", ["a.png", "b.png", "c.png"])
    manifest = write_csv(
        tmp_path / "manifest.csv",
        "path,label,group\nimages/a.png,x,slide-1\nimages/b.png,y,slide-1\nimages/c.png,x,\n",
    )
    found = FORMATS.get("csv")(manifest, classes=None, task="classification")
    assert [s.group for s in found.samples] == ["slide-1", "slide-1", None]


def test_paths_relative_to_root_and_absolute_kept(tmp_path: Path) -> None:
    write_images(tmp_path / "data", ["x/1.png", "x/2.png"])
    elsewhere = write_images(tmp_path / "other", ["3.png"])
    absolute = tmp_path / "other" / "3.png"
    manifest = write_csv(
        tmp_path / "labels" / "train.csv",
        f"image,label\nx/1.png,b\nx/2.png,a\n{absolute},a\n",
    )
    found = read_csv(manifest, task="classification", root=tmp_path / "data")
    assert found.root == tmp_path / "data"
    assert [s.image for s in found.samples] == [
        str(tmp_path / "data/x/1.png"),
        str(tmp_path / "data/x/2.png"),
        str(absolute),
    ]
    assert found.ids() == ["x/1.png", "x/2.png", str(absolute)]
    assert found.labels().tolist() == [1, 0, 0]
    assert np.array_equal(read_image(found.samples[2].image), elsewhere["3.png"])
    with pytest.raises(DataError, match=r"train.csv:2: image not found: .*x/1.png \(1 more rows"):
        read_csv(manifest, task="classification")  # relative to the CSV's folder


def test_chest_xray_shape_integer_labels(tmp_path: Path) -> None:
    """S2's train_labels.csv: ``id,target_feature`` rows like ``img_12.png,2``."""
    names = [f"img_{i}.png" for i in range(5)]
    write_images(tmp_path / "train_images", names)
    rows = "".join(f"{n},{c}\n" for n, c in zip(names, [2, 0, 10, 2, 1], strict=True))
    manifest = write_csv(tmp_path / "train_labels.csv", "id,target_feature\n" + rows)
    found = read_csv(manifest, task="classification", root=tmp_path / "train_images")
    assert found.classes == ["0", "1", "2", "10"]  # numeric order, not "10" < "2"
    assert found.labels().tolist() == [2, 0, 3, 2, 1]
    # Given names, integer labels are indices into them.
    named = read_csv(
        manifest,
        classes=["healthy", "covid", "other", "a", "b", "c", "d", "e", "f", "g", "h"],
        task="classification",
        root=tmp_path / "train_images",
    )
    assert named.labels().tolist() == [2, 0, 10, 2, 1]
    with pytest.raises(
        DataError,
        match=r"train_labels.csv:4: label index 10 is out of range for 3 classes; data.classes: healthy, covid, other",
    ):
        read_csv(manifest, classes=["healthy", "covid", "other"], task="classification")


def test_given_classes_by_name(tmp_path: Path) -> None:
    write_images(tmp_path, ["a.png", "b.png"])
    manifest = write_csv(tmp_path / "m.csv", "path,label\na.png,2\nb.png,0\n")
    # Names inferred from a training manifest ("0", "2") map test labels by name.
    found = read_csv(manifest, classes=["0", "2"], task="classification")
    assert found.classes == ["0", "2"] and found.labels().tolist() == [1, 0]
    given = read_csv(manifest, classes=["0", "1", "2", "3"], task="classification")
    assert given.labels().tolist() == [2, 0] and given.class_counts()["3"] == 0


def test_unknown_label_names_line_and_guess(tmp_path: Path) -> None:
    write_images(tmp_path, ["a.png", "b.png", "c.png"])
    manifest = write_csv(tmp_path / "m.csv", "path,label\na.png,covid\nb.png,healthy\nc.png,covd\n")
    with pytest.raises(DataError) as info:
        read_csv(manifest, classes=["covid", "healthy", "other"], task="classification")
    assert str(info.value) == (
        f"{manifest}:4: unknown label 'covd'; did you mean 'covid'? valid: covid, healthy, other"
    )


def test_missing_column_lists_found_and_required(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", "file,class\na.png,x\n")
    with pytest.raises(DataError) as info:
        read_csv(manifest, task="classification")
    assert str(info.value) == (
        f"{manifest}:1: missing column 'path' (or image, filename, id); "
        "found columns: file, class; required: path, label; optional: patient_id (or group), split"
    )
    manifest = write_csv(tmp_path / "m2.csv", "path,Label\na.png,x\n")
    with pytest.raises(DataError, match=r"m2.csv:1: missing column 'label' \(or target_feature\)"):
        read_csv(manifest, task="classification")


def test_empty_files(tmp_path: Path) -> None:
    empty = write_csv(tmp_path / "empty.csv", "")
    with pytest.raises(DataError, match=r"empty.csv: empty file; expected a header line"):
        read_csv(empty, task="classification")
    header = write_csv(tmp_path / "header.csv", "path,label\n\n")
    with pytest.raises(DataError, match=r"header.csv: empty file: a header but no rows"):
        read_csv(header, task="classification")
    with pytest.raises(DataError, match=r"none.csv: CSV file not found"):
        read_csv(tmp_path / "none.csv", task="classification")


def test_missing_and_duplicate_images(tmp_path: Path) -> None:
    write_images(tmp_path, ["a.png", "b.png"])
    missing = write_csv(tmp_path / "m.csv", "path,label\na.png,x\ngone.png,y\nb.png,x\n")
    with pytest.raises(DataError) as info:
        read_csv(missing, task="classification")
    assert str(info.value).startswith(f"{missing}:3: image not found: {tmp_path / 'gone.png'}; ")
    twice = write_csv(tmp_path / "d.csv", "path,label\na.png,x\nb.png,y\n./a.png,y\n")
    with pytest.raises(DataError, match=r"d.csv:4: duplicate image './a.png' \(first on line 2\)"):
        read_csv(twice, task="classification")


def test_malformed_rows(tmp_path: Path) -> None:
    write_images(tmp_path, ["a.png"])
    fields = write_csv(tmp_path / "f.csv", "path,label\na.png,x,extra\n")
    with pytest.raises(DataError, match=r"f.csv:2: 3 fields, the header has 2"):
        read_csv(fields, task="classification")
    blank = write_csv(tmp_path / "b.csv", "path,label\na.png,\n")
    with pytest.raises(DataError, match=r"b.csv:2: empty 'label'"):
        read_csv(blank, task="classification")
    split = write_csv(tmp_path / "s.csv", "path,label,split\na.png,x,trian\n")
    with pytest.raises(DataError, match=r"s.csv:2: unknown split 'trian'; did you mean 'train'"):
        read_csv(split, task="classification")
    with pytest.raises(DataError, match="the csv format holds no segmentation targets"):
        read_csv(split, task="segmentation")


def test_byte_order_mark_and_quoting(tmp_path: Path) -> None:
    write_images(tmp_path, ["with, comma.png"])
    manifest = tmp_path / "excel.csv"
    manifest.write_bytes('\ufeffpath,label\n"with, comma.png", cat \n'.encode())
    found = read_csv(manifest, task="classification")
    assert found.classes == ["cat"] and found.ids() == ["with, comma.png"]


def test_datamodule_passes_the_images_root(tmp_path: Path) -> None:
    from mediscope.tasks import data_module
    from mediscope.tasks.validate import config_from_dict

    names = [f"img_{i}.png" for i in range(10)]
    write_images(tmp_path / "train_images", names)
    rows = "".join(f"{n},{i % 2}\n" for i, n in enumerate(names))
    manifest = write_csv(tmp_path / "labels" / "train_labels.csv", "id,target_feature\n" + rows)
    config = config_from_dict(
        {
            "task": "classification",
            "data": {
                "format": "csv",
                "path": str(manifest),
                "root": str(tmp_path / "train_images"),
            },
            "model": {"name": "simple_cnn"},
        }
    )
    module = data_module(config)
    assert module.classes == ["0", "1"] and module.split_sizes() == {"train": 8, "val": 2}
