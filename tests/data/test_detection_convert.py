"""``mediscope convert`` between yolo, voc and coco boxes, and masks to boxes."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from detection_helpers import assert_same_boxes, random_sample_set, write_image
from mediscope.data.convert import BOX_WRITERS, ConvertOptions, convert, supported
from mediscope.data.formats.coco_detection import read_coco_detection
from mediscope.data.formats.voc import read_voc
from mediscope.data.formats.yolo import read_yolo, write_yolo
from mediscope.errors import DataError

Cli = Callable[..., Any]
READERS = {"yolo": read_yolo, "voc": read_voc, "coco": read_coco_detection}


def test_every_detection_pair_is_supported() -> None:
    pairs = supported()
    for source in ("yolo", "voc", "coco"):
        for target in ("yolo", "voc", "coco"):
            assert (f"{source} -> {target}" in pairs) == (source != target)
    assert "masks -> yolo" in pairs and "masks -> voc" in pairs
    assert "masks -> coco" in pairs and "coco -> masks" in pairs


@pytest.mark.parametrize(
    "chain",
    [
        ("yolo", "coco", "yolo"),
        ("yolo", "voc", "yolo"),
        ("coco", "voc", "coco"),
        ("voc", "coco", "voc"),
        ("yolo", "coco", "voc", "yolo"),
        ("voc", "yolo", "coco", "voc"),
    ],
)
def test_round_trips_are_exact(tmp_path: Path, chain: tuple[str, ...]) -> None:
    original = random_sample_set(tmp_path / "src", splits={"train": 8, "val": 4}, seed=len(chain))
    current = BOX_WRITERS[chain[0]](original, tmp_path / f"0_{chain[0]}")
    start = READERS[chain[0]](current)
    assert_same_boxes(original, start)
    for step, (source, target) in enumerate(itertools.pairwise(chain), start=1):
        out = tmp_path / f"{step}_{target}"
        result = convert(source, target, current, out)
        assert result.outputs == [out]
        current = out
    back = READERS[chain[-1]](current)
    assert_same_boxes(start, back, atol=1e-6)
    assert [s.split for s in back.samples] == [s.split for s in start.samples]


def test_cli_yolo_to_coco_and_voc(cli: Cli, tmp_path: Path) -> None:
    samples = random_sample_set(tmp_path / "src", splits={"train": 4, "val": 2})
    yolo = write_yolo(samples, tmp_path / "yolo")
    result = cli("convert", "--from", "yolo", "--to", "coco", yolo, tmp_path / "coco")
    assert result.code == 0, result.err
    boxes = sum(len(s.box_labels) for s in samples.samples if s.box_labels is not None)
    assert f"6 images (2 without objects), {boxes} boxes (coco)" in result.out
    assert "classes 0 cocci, 1 bacilli, 2 yeast; train 4, val 2" in result.out
    assert sorted(p.name for p in (tmp_path / "coco").iterdir()) == [
        "annotations_train.json",
        "annotations_val.json",
        "images",
    ]
    result = cli(
        "convert", "--from", "coco", "--to", "voc", "--link", tmp_path / "coco", tmp_path / "voc"
    )
    assert result.code == 0, result.err
    assert_same_boxes(samples, read_voc(tmp_path / "voc"))
    # DST exists: refused without --overwrite, replaced with it
    result = cli("convert", "--from", "coco", "--to", "voc", tmp_path / "coco", tmp_path / "voc")
    assert result.code == 2 and "folder exists and is not empty" in result.err
    result = cli(
        "convert",
        "--from",
        "coco",
        "--to",
        "voc",
        "--overwrite",
        tmp_path / "coco",
        tmp_path / "voc",
    )
    assert result.code == 0, result.err
    # given classes must be the source's
    result = cli(
        "convert", "--from", "yolo", "--to", "voc", "--classes", "a,b,c", yolo, tmp_path / "v2"
    )
    assert result.code == 2 and "differ from the dataset's names" in result.err
    assert not (tmp_path / "v2").exists()


def test_cli_bad_label_fails_cleanly_or_is_skipped(cli: Cli, tmp_path: Path) -> None:
    samples = random_sample_set(tmp_path / "src", splits={"train": 3, "val": 2})
    yolo = write_yolo(samples, tmp_path / "yolo")
    label = yolo / "labels" / "val" / "val1.txt"
    label.write_text(label.read_text() + "7 0.5 0.5 0.1 0.1\n")
    line = len(label.read_text().splitlines())
    result = cli("convert", "--from", "yolo", "--to", "coco", yolo, tmp_path / "coco")
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1
    assert result.err.startswith(f"error: {label}:{line}: class id 7 is not in 0..2")
    assert not (tmp_path / "coco").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    result = cli(
        "convert",
        "--from",
        "yolo",
        "--to",
        "coco",
        "--on-bad-label",
        "skip",
        yolo,
        tmp_path / "coco",
    )
    assert result.code == 0, result.err
    assert_same_boxes(samples, read_coco_detection(tmp_path / "coco"))
    result = cli(
        "convert",
        "--from",
        "yolo",
        "--to",
        "coco",
        "--on-bad-label",
        "ignore",
        yolo,
        tmp_path / "c2",
    )
    assert result.code == 2 and "--on-bad-label: unknown value 'ignore'" in result.err


def test_cli_box_outside_its_image(cli: Cli, tmp_path: Path) -> None:
    # A VOC box far outside its image cannot be written to YOLO: one error, nothing written.
    write_image(tmp_path / "voc" / "JPEGImages" / "a.jpg", 20, 20)
    (tmp_path / "voc" / "Annotations").mkdir()
    (tmp_path / "voc" / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><object><name>x</name>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>90</xmax><ymax>5</ymax></bndbox>"
        "</object></annotation>"
    )
    result = cli("convert", "--from", "voc", "--to", "yolo", tmp_path / "voc", tmp_path / "out")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "a.xml:1: box [0, 0, 90, 5] is outside the 20 x 20 image" in result.err
    assert not (tmp_path / "out").exists()


# -- masks to boxes ------------------------------------------------------------------------


def make_masks(root: Path) -> dict[str, np.ndarray]:
    """MMSeg layout, classes background / nevus / melanoma, with 255 as ignore."""
    masks = {}
    rng = np.random.default_rng(3)
    for split, n in (("train", 3), ("val", 2)):
        for i in range(n):
            h, w = 24, 32
            mask = np.zeros((h, w), np.uint8)
            mask[2:6, 3:9] = 1  # a nevus
            mask[10 + i : 14 + i, 20:30] = 2  # a melanoma
            mask[20:22, 0:2] = 1  # a second nevus, at the border
            mask[7, 12] = 1  # a one-pixel nevus
            mask[0, 31] = 255  # ignored
            if i == 0 and split == "val":
                mask[:] = 0  # a negative
            write_image(root / "img" / split / f"{split}{i}.jpg", w, h, seed=int(rng.integers(9)))
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(root / "labels" / split / f"{split}{i}.png")
            masks[f"{split}{i}"] = mask
    (root / "classes.txt").write_text("background\nnevus\nmelanoma\n")
    return masks


@pytest.mark.parametrize("target", ["yolo", "voc"])
def test_masks_to_boxes_one_box_per_region(cli: Cli, tmp_path: Path, target: str) -> None:
    make_masks(tmp_path / "ds")
    result = cli(
        "convert", "--from", "masks", "--to", target, "--ignore-index", "255",
        tmp_path / "ds", tmp_path / "out",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "5 images (1 without objects), 16 boxes" in result.out
    samples = READERS[target](tmp_path / "out")
    assert samples.classes == ["nevus", "melanoma"]  # the background is no detection class
    first = next(s for s in samples.samples if Path(s.image).stem == "train1")
    assert np.asarray(first.box_labels).tolist() == [0, 0, 0, 1]
    assert np.asarray(first.boxes).tolist() == [
        [3.0, 2.0, 9.0, 6.0],
        [12.0, 7.0, 13.0, 8.0],
        [0.0, 20.0, 2.0, 22.0],
        [20.0, 11.0, 30.0, 15.0],
    ]
    negative = next(s for s in samples.samples if Path(s.image).stem == "val0")
    assert negative.boxes is not None and negative.boxes.shape == (0, 4)


def test_masks_to_boxes_agree_with_masks_to_coco_bboxes(tmp_path: Path) -> None:
    make_masks(tmp_path / "ds")
    options = ConvertOptions(ignore_index=255)
    convert("masks", "yolo", tmp_path / "ds", tmp_path / "yolo", options)
    convert("masks", "coco", tmp_path / "ds", tmp_path / "coco", options)
    from_yolo = read_yolo(tmp_path / "yolo")
    from_coco = read_coco_detection(
        tmp_path / "coco" / "annotations_train.json", root=tmp_path / "ds" / "img" / "train"
    )
    coco_boxes = {Path(s.image).stem: s for s in from_coco.samples}
    assert from_coco.classes == from_yolo.classes == ["nevus", "melanoma"]
    for sample in from_yolo.samples:
        if sample.split != "train":
            continue
        other = coco_boxes[Path(sample.image).stem]
        order = np.lexsort(np.asarray(sample.boxes).T)
        other_order = np.lexsort(np.asarray(other.boxes).T)
        assert np.array_equal(np.asarray(sample.boxes)[order], np.asarray(other.boxes)[other_order])
        assert np.array_equal(
            np.asarray(sample.box_labels)[order], np.asarray(other.box_labels)[other_order]
        )
    document = json.loads((tmp_path / "coco" / "annotations_train.json").read_text())
    assert all("segmentation" in a for a in document["annotations"])


def test_masks_to_boxes_size_mismatch(tmp_path: Path) -> None:
    make_masks(tmp_path / "ds")
    write_image(tmp_path / "ds" / "img" / "val" / "val1.jpg", 10, 10)
    with pytest.raises(DataError, match="val1.png: mask is 32 x 24, its image 10 x 10"):
        convert("masks", "voc", tmp_path / "ds", tmp_path / "out", ConvertOptions(ignore_index=255))
    assert not (tmp_path / "out").exists()
