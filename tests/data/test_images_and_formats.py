"""Image reading, the imagefolder format and splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mediscope.data.formats.imagefolder import read_imagefolder
from mediscope.data.images import read_image
from mediscope.data.samples import Sample, SampleSet
from mediscope.data.splits import holdout_split, load_split, save_split
from mediscope.errors import DataError


def test_read_image_modes(tmp_path: Path) -> None:
    deep = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    rgb = read_image(tmp_path / "deep.png")
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert rgb.min() == 0 and rgb.max() == 255
    palette = Image.new("P", (5, 4))
    palette.putpalette([255, 0, 0] * 256)
    palette.save(tmp_path / "palette.png")
    assert read_image(tmp_path / "palette.png")[0, 0].tolist() == [255, 0, 0]
    Image.new("CMYK", (3, 3), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    cmyk = read_image(tmp_path / "cmyk.jpg")
    assert cmyk.shape == (3, 3, 3) and cmyk[0, 0, 0] > 200 and cmyk[0, 0, 1] < 60
    Image.new("RGBA", (2, 2), (10, 20, 30, 0)).save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png", channels=1).shape == (2, 2, 1)


def test_read_image_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing.png: image not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match=r"text.png: cannot read the image"):
        read_image(tmp_path / "text.png")
    Image.new("RGB", (64, 64)).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut.png: cannot read the image"):
        read_image(tmp_path / "cut.png")


def make_folder(root: Path, counts: dict[str, int]) -> None:
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (4, 4)).save(root / name / f"{i}.png")


def test_imagefolder_classes_sorted_or_given(tmp_path: Path) -> None:
    make_folder(tmp_path, {"b": 2, "a": 3})
    (tmp_path / "a" / "notes.txt").write_text("ignored")
    found = read_imagefolder(tmp_path, task="classification")
    assert found.classes == ["a", "b"]
    assert found.class_counts() == {"a": 3, "b": 2}
    given = read_imagefolder(tmp_path, classes=["b", "a", "c"], task="classification")
    assert given.class_counts() == {"b": 2, "a": 3, "c": 0}
    with pytest.raises(DataError, match="folder 'b' is not one of data.classes"):
        read_imagefolder(tmp_path, classes=["a", "c"], task="classification")


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset folder not found"):
        read_imagefolder(tmp_path / "none", task="classification")
    with pytest.raises(DataError, match="no class folders"):
        read_imagefolder(tmp_path, task="classification")
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match="no images found"):
        read_imagefolder(tmp_path, task="classification")


def test_stratified_holdout_and_split_file(tmp_path: Path) -> None:
    labels = np.array([0] * 40 + [1] * 20 + [2] * 10)
    train, val = holdout_split(labels, val_fraction=0.2, seed=0)
    assert len(val) == 14 and len(train) == 56
    assert not set(train) & set(val)
    assert np.bincount(labels[val]).tolist() == [8, 4, 2]  # proportions kept
    again, _ = holdout_split(labels, val_fraction=0.2, seed=0)
    assert np.array_equal(train, again)
    other, _ = holdout_split(labels, val_fraction=0.2, seed=1)
    assert not np.array_equal(train, other)

    samples = SampleSet(
        ["a", "b", "c"],
        [Sample(str(tmp_path / f"{i}.png"), int(c)) for i, c in enumerate(labels)],
        tmp_path,
    )
    save_split(tmp_path / "split.json", samples, {"train": train, "val": val}, seed=0)
    data = json.loads((tmp_path / "split.json").read_text())
    assert data["seed"] == 0 and data["val"][0].endswith(".png") and "/" not in data["val"][0]
    parts = load_split(tmp_path / "split.json", samples, ("train", "val"))
    assert np.array_equal(np.sort(parts["val"]), val)
    fewer = samples.subset(range(30))
    with pytest.raises(DataError, match="not in the dataset"):
        load_split(tmp_path / "split.json", fewer, ("train", "val"))


def test_holdout_errors() -> None:
    with pytest.raises(DataError, match="fewer than 2 samples"):
        holdout_split(np.array([0, 0, 0, 1]), val_fraction=0.5, seed=0)
    with pytest.raises(DataError, match="cannot be split"):
        holdout_split(np.array([0, 1]), val_fraction=0.1, seed=0)
