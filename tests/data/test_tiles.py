"""Tiling detection datasets: tile positions, boxes at tile edges, outputs, the CLI."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from detection_helpers import random_sample_set, write_image
from mediscope.data.convert import BOX_WRITERS
from mediscope.data.formats.yolo import read_yolo, write_yolo
from mediscope.data.prepare.tiles import tile_boxes, tile_dataset, tile_starts
from mediscope.data.samples import Sample, SampleSet
from mediscope.errors import ConfigError, DataError

Cli = Callable[..., Any]


@pytest.mark.parametrize("length", [1, 39, 40, 41, 70, 100, 333, 1000])
@pytest.mark.parametrize(("size", "step"), [(40, 30), (40, 40), (64, 1), (10, 7)])
def test_tiles_cover_every_pixel_and_end_at_the_edge(length: int, size: int, step: int) -> None:
    starts = tile_starts(length, size, step)
    assert starts[0] == 0 and starts == sorted(set(starts))
    if length <= size:
        assert starts == [0]
        return
    assert starts[-1] == length - size  # the last tile aligned to the edge
    covered = np.zeros(length, bool)
    for start in starts:
        covered[start : start + size] = True
    assert covered.all()
    assert all(b - a <= step for a, b in itertools.pairwise(starts))


def test_tile_boxes_visibility() -> None:
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [6, 0, 16, 10], [20, 20, 30, 30]], float)
    kept, labels, mask, dropped = tile_boxes(boxes, np.arange(4), (0, 0, 10, 10), 0.5)
    assert kept.tolist() == [[0, 0, 10, 10], [5, 0, 10, 10]]  # exactly half inside is kept
    assert labels.tolist() == [0, 1] and mask.tolist() == [True, True, False, False]
    assert dropped == 1  # box 2 overlaps by 40 %; box 3 does not overlap at all
    kept, _, _, dropped = tile_boxes(boxes, np.arange(4), (10, 0, 20, 10), 0.0)
    assert kept.tolist() == [[0, 0, 5, 10], [0, 0, 6, 10]] and dropped == 0
    kept, *_ = tile_boxes(boxes[:0], np.arange(0), (0, 0, 10, 10), 0.5)
    assert kept.shape == (0, 4)


def one_image_set(root: Path, *, splits: bool = True) -> SampleSet:
    """A 100 x 70 PNG with boxes placed against tiles of 40 with step 30, and a small
    negative; in the splits train and val, or none."""
    image = write_image(root / "pics" / ("train" if splits else "x") / "slide.png", 100, 70)
    negative = write_image(root / "pics" / ("val" if splits else "y") / "empty.png", 20, 15)
    boxes = np.array(
        [
            [2, 3, 12, 13],  # inside the first tile (and no other)
            [35, 5, 45, 15],  # across x = 40: 50 % in tile x0=0, whole in tile x0=30
            [85, 50, 99, 69],  # bottom-right corner, only in the last tiles
            [0, 0, 100, 70],  # the whole image: too large for any tile
        ],
        np.float32,
    )
    samples = [
        Sample(str(image), boxes=boxes, box_labels=np.array([0, 1, 1, 0]), split="train"),
        Sample(str(negative), boxes=boxes[:0], box_labels=np.zeros(0, np.int64), split="val"),
    ]
    if not splits:
        samples = [Sample(**{**vars(s), "split": None}) for s in samples]
    return SampleSet(["cocci", "bacilli"], samples, root)


def labels_of(root: Path) -> dict[str, list[list[float]]]:
    samples = read_yolo(root)
    return {Path(s.image).name: np.asarray(s.boxes).round(4).tolist() for s in samples.samples}


def test_tile_a_yolo_dataset(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_yolo(one_image_set(tmp_path / "src"), tmp_path / "yolo")
    with caplog.at_level(logging.WARNING):
        summary = tile_dataset(tmp_path / "yolo", tmp_path / "tiles", size=40, overlap=0.25)
    assert "1 boxes are kept in no tile" in caplog.text
    # x starts 0, 30, 60; y starts 0, 30: 6 tiles, and the small negative kept whole.
    assert summary.images == 2 and summary.tiles == 7
    assert summary.splits == {"train": 6, "val": 1}
    assert summary.boxes_lost == 1
    labels = labels_of(tmp_path / "tiles")
    assert sorted(labels) == sorted(
        [f"slide_{x}_{y}.png" for y in (0, 30) for x in (0, 30, 60)] + ["empty_0_0.png"]
    )
    assert labels["slide_0_0.png"] == [[2, 3, 12, 13], [35, 5, 40, 15]]
    assert labels["slide_30_0.png"] == [[5, 5, 15, 15]]
    assert labels["slide_60_30.png"] == [[25, 20, 39, 39]]
    assert labels["slide_30_30.png"] == [] and labels["empty_0_0.png"] == []
    assert summary.boxes_kept == 4
    assert summary.boxes_dropped == 6  # the whole-image box, in each tile
    with Image.open(tmp_path / "tiles" / "images" / "train" / "slide_60_30.png") as tile:
        assert tile.size == (40, 40)
        pixels = np.asarray(tile)
    with Image.open(tmp_path / "yolo" / "images" / "train" / "slide.png") as source:
        assert np.array_equal(pixels, np.asarray(source)[30:70, 60:100])
    with Image.open(tmp_path / "tiles" / "images" / "val" / "empty_0_0.png") as small:
        assert small.size == (20, 15)  # kept whole, not padded
    data_yaml = (tmp_path / "tiles" / "data.yaml").read_text()
    assert "train: images/train" in data_yaml and "val: images/val" in data_yaml


@pytest.mark.parametrize("source", ["voc", "coco"])
def test_every_source_format_gives_the_same_tiles(tmp_path: Path, source: str) -> None:
    samples = random_sample_set(tmp_path / "src", splits={"train": 3, "val": 2})
    write_yolo(samples, tmp_path / "yolo")
    BOX_WRITERS[source](samples, tmp_path / source)
    tile_dataset(tmp_path / "yolo", tmp_path / "from_yolo", size=32, overlap=0.2)
    tile_dataset(tmp_path / source, tmp_path / "from_other", size=32, overlap=0.2, format=source)
    first, second = labels_of(tmp_path / "from_yolo"), labels_of(tmp_path / "from_other")
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_allclose(second[name], first[name], atol=1e-4)


def test_drop_empty_min_visibility_and_no_splits(tmp_path: Path) -> None:
    write_yolo(one_image_set(tmp_path / "src", splits=False), tmp_path / "yolo")
    summary = tile_dataset(
        tmp_path / "yolo", tmp_path / "tiles", size=40, overlap=0.25, keep_empty=False
    )
    labels = labels_of(tmp_path / "tiles")
    assert summary.empty_skipped == 4  # 3 tiles of the slide, and the small negative
    assert "slide_30_30.png" not in labels and "empty_0_0.png" not in labels
    assert summary.splits == {"none": 3} and summary.tiles == 3
    assert (tmp_path / "tiles" / "images" / "x" / "slide_0_0.png").is_file()
    # visibility 0 keeps any overlap: the whole-image box is in every tile
    summary = tile_dataset(
        tmp_path / "yolo", tmp_path / "all", size=40, overlap=0.25, min_visibility=0.0
    )
    assert summary.boxes_lost == 0 and summary.boxes_dropped == 0
    assert all(
        [0, 0, 40, 40] in boxes
        for name, boxes in labels_of(tmp_path / "all").items()
        if "slide" in name
    )


def test_options_and_refusals(tmp_path: Path) -> None:
    write_yolo(one_image_set(tmp_path / "src"), tmp_path / "yolo")
    with pytest.raises(ConfigError, match=r"overlap 1 is not in \[0, 1\)"):
        tile_dataset(tmp_path / "yolo", tmp_path / "out", overlap=1)
    with pytest.raises(ConfigError, match="tile size 0"):
        tile_dataset(tmp_path / "yolo", tmp_path / "out", size=0)
    with pytest.raises(ConfigError, match="format 'masks' holds no boxes"):
        tile_dataset(tmp_path / "yolo", tmp_path / "out", format="masks")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="folder exists and is not empty"):
        tile_dataset(tmp_path / "yolo", tmp_path / "out", size=40)
    tile_dataset(tmp_path / "yolo", tmp_path / "out", size=40, overwrite=True)
    assert not (tmp_path / "out" / "keep.txt").exists()


def test_jpeg_sources_stay_jpeg(tmp_path: Path) -> None:
    image = write_image(tmp_path / "src" / "a.jpg", 50, 50)
    boxes = np.array([[10, 10, 20, 20]], np.float32)
    write_yolo(
        SampleSet(["x"], [Sample(str(image), boxes=boxes, box_labels=np.array([0]))], tmp_path),
        tmp_path / "yolo",
    )
    summary = tile_dataset(tmp_path / "yolo", tmp_path / "tiles", size=30, overlap=0)
    assert summary.tiles == 4
    assert sorted(p.name for p in (tmp_path / "tiles" / "images").iterdir()) == [
        "a_0_0.jpg",
        "a_0_20.jpg",
        "a_20_0.jpg",
        "a_20_20.jpg",
    ]


def test_cli_tile(cli: Cli, tmp_path: Path) -> None:
    write_yolo(one_image_set(tmp_path / "src"), tmp_path / "yolo")
    result = cli(
        "data", "tile", tmp_path / "yolo", tmp_path / "tiles", "--size", "40", "--overlap", "0.25"
    )
    assert result.code == 0, result.err
    assert "2 images -> 7 tiles (train 6, val 1)" in result.out
    assert "boxes: 4 kept, 6 dropped at tile edges, 1 in no tile" in result.out
    result = cli("data", "tile", tmp_path / "yolo", tmp_path / "tiles", "--size", "40")
    assert result.code == 2 and "folder exists and is not empty" in result.err
    result = cli("data", "tile", tmp_path / "yolo", tmp_path / "t2", "--format", "vocc")
    assert (
        result.code == 2
        and "format: unknown format 'vocc'; did you mean 'voc'? valid: yolo, coco, voc"
        in result.err
        and "did you mean 'voc'" in result.err
    )
    assert not (tmp_path / "t2").exists()


def test_cli_bad_label_fails_without_output(cli: Cli, tmp_path: Path) -> None:
    write_yolo(one_image_set(tmp_path / "src"), tmp_path / "yolo")
    label = tmp_path / "yolo" / "labels" / "train" / "slide.txt"
    label.write_text(label.read_text() + "0 0.5 0.5 0.1\n")
    result = cli("data", "tile", tmp_path / "yolo", tmp_path / "tiles", "--size", "40")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert result.err.startswith(f"error: {label}:5: 4 fields, expected 5")
    assert not (tmp_path / "tiles").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    result = cli(
        "data",
        "tile",
        tmp_path / "yolo",
        tmp_path / "tiles",
        "--size",
        "40",
        "--on-bad-label",
        "skip",
    )
    assert result.code == 0, result.err
