"""data.exclude for every format: applied once, where the config's samples are read."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from PIL import Image

from helpers import tiny_config, tiny_detection_config, tiny_segmentation_config
from mediscope.data.datamodule import read_samples
from mediscope.errors import DataError
from mediscope.tasks import data_module
from mediscope.tasks.validate import config_from_dict


def _names(samples: object) -> list[str]:
    return sorted(Path(s.image).name for s in samples.samples)  # type: ignore[attr-defined]


def test_imagefolder_exclude_spans_train_and_test(
    tiny_crops: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train_image = sorted((tiny_crops / "train" / "G-cocci").iterdir())[0]
    test_image = sorted((tiny_crops / "test" / "G+cocci").iterdir())[1]
    exclude = tmp_path / "exclude.txt"
    # absolute paths (relative ones would name the same file name in train/ and test/)
    exclude.write_text(
        f"# flagged\n{os.path.abspath(train_image)}  # truncated\n{test_image}\n",
        encoding="utf-8",
    )
    raw = tiny_config(tiny_crops, tmp_path, data={"exclude": str(exclude)})
    config = config_from_dict(raw)
    with caplog.at_level(logging.WARNING):
        train = read_samples(config, config.data.path)
    assert len(train) == 4 * 16 - 1 and train_image.name not in _names(train)
    assert "1 of 64 samples" in caplog.text
    test = data_module(config).test_set()
    assert len(test) == 4 * 6 - 1
    assert str(test_image) not in {s.image for s in test.samples}


def test_csv_exclude_by_file_name(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    rows = ["path,label,patient_id"]
    for i in range(8):
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(folder / f"x{i}.png")
        rows.append(f"images/x{i}.png,{'ab'[i % 2]},p{i}")
    manifest = tmp_path / "labels.csv"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("x3.png\nimages/x4.png\nx5\n", encoding="utf-8")
    raw = tiny_config(tmp_path, tmp_path, data={"format": "csv", "path": str(manifest)})
    raw["data"].pop("test_path")
    raw["data"]["exclude"] = str(exclude)
    samples = read_samples(config_from_dict(raw), manifest)
    assert _names(samples) == ["x0.png", "x1.png", "x2.png", "x6.png", "x7.png"]


def test_yolo_exclude_by_stem(tiny_smears: Path, tmp_path: Path) -> None:
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("train_00002\nimages/test/test_00001.png\n", encoding="utf-8")
    raw = tiny_detection_config(tiny_smears, tmp_path, data={"exclude": str(exclude)})
    samples = read_samples(config_from_dict(raw), tiny_smears)
    names = _names(samples)
    assert len(names) == 16 + 4 - 2
    assert "train_00002.png" not in names and "test_00001.png" not in names


def test_masks_exclude_still_applies(tiny_lesions: Path, tmp_path: Path) -> None:
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("train_0000\nimg/val/val_0001.jpg\n", encoding="utf-8")
    raw = tiny_segmentation_config(tiny_lesions, tmp_path, data={"exclude": str(exclude)})
    samples = read_samples(config_from_dict(raw), tiny_lesions)
    assert len(samples) == 20 - 2


def test_an_entry_matching_nothing_names_its_line(tiny_crops: Path, tmp_path: Path) -> None:
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("G-cocci_00000\nnot_an_image\n", encoding="utf-8")
    raw = tiny_config(tiny_crops, tmp_path, data={"exclude": str(exclude)})
    config = config_from_dict(raw)
    with pytest.raises(DataError, match="'not_an_image' matches no sample") as info:
        read_samples(config, config.data.path)
    assert info.value.where == f"{exclude}:2"
    assert "data.path or data.test_path" in info.value.message


def test_missing_exclude_file_is_an_error(tiny_crops: Path, tmp_path: Path) -> None:
    raw = tiny_config(tiny_crops, tmp_path, data={"exclude": str(tmp_path / "none.txt")})
    config = config_from_dict(raw)
    with pytest.raises(DataError, match="exclude file not found"):
        read_samples(config, config.data.path)
