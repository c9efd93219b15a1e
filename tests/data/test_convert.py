"""``mediscope convert``: masks → COCO → masks through the command line and the API."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mediscope.data import convert as convert_module
from mediscope.data.convert import ConvertOptions, ConvertResult, convert, supported

Cli = Callable[..., Any]


def random_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Blocks of classes 0..2 with noise: holes, touching regions and single pixels."""
    blocks = np.kron(rng.integers(0, 3, (h // 4 + 1, w // 4 + 1)), np.ones((4, 4)))[:h, :w]
    noise = rng.random((h, w)) < 0.1
    return np.where(noise, rng.integers(0, 3, (h, w)), blocks).astype(np.uint8)


def make_mmseg(
    root: Path, counts: dict[str, int], *, classes: bool = True
) -> dict[str, np.ndarray]:
    """An MMSeg root with JPEG images and class-index PNG masks; returns masks by path."""
    rng = np.random.default_rng(7)
    masks = {}
    for split, n in counts.items():
        for i in range(n):
            h, w = int(rng.integers(8, 30)), int(rng.integers(8, 30))
            image = root / "img" / split / f"{split}{i}.jpg"
            mask_file = root / "labels" / split / f"{split}{i}.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            mask_file.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(image)
            masks[f"{split}/{split}{i}"] = random_mask(rng, h, w)
            Image.fromarray(masks[f"{split}/{split}{i}"]).save(mask_file)
    if classes:
        (root / "classes.txt").write_text("background\nnevus\nmelanoma\n")
    return masks


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def test_cli_round_trip_mmseg_to_coco_and_back(cli: Cli, tmp_path: Path) -> None:
    masks = make_mmseg(tmp_path / "ds", {"train": 4, "val": 2})
    result = cli("convert", "--from", "masks", "--to", "coco", tmp_path / "ds", tmp_path / "coco")
    assert result.code == 0, result.err
    assert tree(tmp_path / "coco") == ["annotations_train.json", "annotations_val.json"]
    assert "annotations_train.json: 4 images" in result.out
    train = json.loads((tmp_path / "coco" / "annotations_train.json").read_text())
    assert [i["file_name"] for i in train["images"]] == [f"train{i}.jpg" for i in range(4)]
    assert [c["name"] for c in train["categories"]] == ["nevus", "melanoma"]
    for split, n in (("train", 4), ("val", 2)):
        out = tmp_path / f"back_{split}"
        back = cli(
            "convert", "--from", "coco", "--to", "masks",
            tmp_path / "coco" / f"annotations_{split}.json", out,
        )  # fmt: skip
        assert back.code == 0, back.err
        assert (out / "classes.txt").read_text() == "background\nnevus\nmelanoma\n"
        for i in range(n):
            decoded = read_png(out / f"{split}{i}.png")
            assert np.array_equal(decoded, masks[f"{split}/{split}{i}"]), f"{split}{i}"


def test_polygon_encoding_and_masks_folder_with_images(cli: Cli, tmp_path: Path) -> None:
    images, labels = tmp_path / "pics", tmp_path / "gt"
    images.mkdir()
    labels.mkdir()
    mask = np.zeros((10, 12), dtype=np.uint8)
    mask[2:6, 3:9] = 1
    Image.fromarray(np.zeros((10, 12, 3), dtype=np.uint8)).save(images / "a.png")
    Image.fromarray(mask * 255).save(labels / "a_mask.png")  # a binary 0/255 mask
    dst = tmp_path / "a.json"
    result = cli(
        "convert", "--from", "masks", "--to", "coco", labels, dst, "--images", images,
        "--mask-suffix", "_mask.png", "--classes", "background,lesion", "--encoding", "polygon",
    )  # fmt: skip
    assert result.code == 0, result.err
    coco = json.loads(dst.read_text())
    (annotation,) = coco["annotations"]
    assert isinstance(annotation["segmentation"], list) and annotation["bbox"] == [3, 2, 6, 4]
    back = cli("convert", "--from", "coco", "--to", "masks", dst, tmp_path / "back")
    assert back.code == 0, back.err
    assert np.array_equal(read_png(tmp_path / "back" / "a.png"), mask)


def test_manifest_source(tmp_path: Path) -> None:
    masks = make_mmseg(tmp_path / "ds", {"train": 2, "test": 1}, classes=False)
    lines = [
        f"img/{k.split('/')[0]}/{k.split('/')[1]}.jpg,labels/{k}.png,{k.split('/')[0]}"
        for k in masks
    ]
    (tmp_path / "ds" / "m.csv").write_text("image,mask,split\n" + "\n".join(lines) + "\n")
    options = ConvertOptions(classes=["bg", "a", "b"])
    result = convert("masks", "coco", tmp_path / "ds" / "m.csv", tmp_path / "out", options)
    assert [p.name for p in result.outputs] == ["annotations_train.json", "annotations_test.json"]
    coco = json.loads((tmp_path / "out" / "annotations_test.json").read_text())
    assert coco["images"][0]["file_name"] == "img/test/test0.jpg"  # relative to the CSV


def test_bad_input_exits_2_and_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    make_mmseg(tmp_path / "ds", {"train": 2, "val": 1})
    # The last split's mask holds a value that is no class: no split's file is written.
    Image.fromarray(np.full((8, 8), 9, dtype=np.uint8)).save(tmp_path / "ds/labels/val/val0.png")
    result = cli("convert", "--from", "masks", "--to", "coco", tmp_path / "ds", tmp_path / "coco")
    assert result.code == 2
    assert result.err.count("error:") == 1 and len(result.err.strip().splitlines()) == 1
    assert "val0.png: mask values 9 are not classes 0..2" in result.err
    assert not (tmp_path / "coco").exists()
    # A broken COCO file: no mask folder appears.
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [{"id": 1, "file_name": "a.png", "height": 2, "width": 2}], ')
    result = cli("convert", "--from", "coco", "--to", "masks", bad, tmp_path / "masks")
    assert result.code == 2 and result.err.startswith(f"error: {bad}:1: not valid JSON")
    assert not (tmp_path / "masks").exists()
    rle = {"size": [2, 2], "counts": [5]}
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "height": 2, "width": 2}],
        "categories": [{"id": 1, "name": "x"}],
        "annotations": [{"image_id": 1, "category_id": 1, "segmentation": rle}],
    }
    bad.write_text(json.dumps(coco))
    result = cli("convert", "--from", "coco", "--to", "masks", bad, tmp_path / "masks")
    assert result.code == 2 and "annotations[0]: RLE runs cover 5 pixels" in result.err
    assert not (tmp_path / "masks").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_unsupported_pair_lists_the_supported_ones(cli: Cli, tmp_path: Path) -> None:
    make_mmseg(tmp_path / "ds", {"train": 1})
    result = cli("convert", "--from", "voc", "--to", "masks", tmp_path / "ds", tmp_path / "o")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "no conversion from 'voc' to 'masks'" in result.err
    assert "supported: masks -> coco, coco -> masks" in result.err
    result = cli("convert", "--from", "mask", "--to", "coco", tmp_path / "ds", tmp_path / "o")
    assert result.code == 2 and "did you mean 'masks'?" in result.err
    result = cli(
        "convert", "--from", "masks", "--to", "coco", "--encoding", "bitmap",
        tmp_path / "ds", tmp_path / "o",
    )  # fmt: skip
    assert result.code == 2 and "--encoding: unknown encoding 'bitmap'" in result.err
    assert not (tmp_path / "o").exists()


def test_existing_outputs_need_overwrite(cli: Cli, tmp_path: Path) -> None:
    make_mmseg(tmp_path / "ds", {"train": 1})
    args = ("convert", "--from", "masks", "--to", "coco", tmp_path / "ds", tmp_path / "c.json")
    assert cli(*args).code == 0  # a single split may go to one JSON file
    again = cli(*args)
    assert again.code == 2 and "c.json: file exists" in again.err
    assert cli(*args, "--overwrite").code == 0
    masks = ("convert", "--from", "coco", "--to", "masks", tmp_path / "c.json", tmp_path / "m")
    assert cli(*masks).code == 0
    assert cli(*masks).code == 2
    assert cli(*masks, "--overwrite").code == 0


def test_several_splits_need_a_folder_and_classes_are_required(cli: Cli, tmp_path: Path) -> None:
    make_mmseg(tmp_path / "ds", {"train": 1, "val": 1})
    result = cli("convert", "--from", "masks", "--to", "coco", tmp_path / "ds", tmp_path / "a.json")
    assert result.code == 2 and "one file for 2 splits (train, val)" in result.err
    (tmp_path / "ds" / "classes.txt").unlink()
    result = cli("convert", "--from", "masks", "--to", "coco", tmp_path / "ds", tmp_path / "out")
    assert result.code == 2 and "--classes: the class names are not given" in result.err
    assert not (tmp_path / "out").exists() and not (tmp_path / "a.json").exists()


def test_the_table_is_extensible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(src: Path, dst: Path, options: ConvertOptions) -> ConvertResult:
        return ConvertResult(outputs=[dst], lines=[f"{src} -> {dst}"])

    monkeypatch.setitem(convert_module.CONVERTERS, ("yolo", "coco"), fake)
    assert "yolo -> coco" in supported()
    result = convert("YOLO", "coco", tmp_path / "a", tmp_path / "b")
    assert result.lines == [f"{tmp_path / 'a'} -> {tmp_path / 'b'}"]
