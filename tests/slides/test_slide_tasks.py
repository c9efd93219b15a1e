"""Slide segmentation and detection (with stand-in networks), and slide patch sets."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tiffslide")

from mediscope.runtime.info import InferenceSettings, ModelInfo
from mediscope.runtime.pipeline import prepare
from mediscope.runtime.predictor import Predictor
from mediscope.slides.predict import SlideSettings, predict_slide
from mediscope.slides.reader import Slide
from mediscope.slides.synthetic import CLASSES, label_at, regions_geojson, write_slide

SIDE = 4096


class Segmenter:
    """Class 1 where the green channel is dark (a pixel-wise rule, so that any tiling
    and blending must give the same mask as the whole image at once)."""

    name = "stand-in"

    def __init__(self) -> None:
        self.calls = 0
        self.sizes: list[int] = []

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.calls += 1
        self.sizes.append(len(batch))
        dark = batch[:, 1] < 0.45
        return {"probabilities": np.stack([~dark, dark], axis=1).astype(np.float32)}


class Detector:
    """One box per near-black blob of the input."""

    name = "stand-in"

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        raise AssertionError("detect() is used")

    def detect(
        self, batch: np.ndarray, **_: Any
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        import cv2

        found = []
        for image in batch:
            dark = (image.max(axis=0) < 0.2).astype(np.uint8)
            count, _, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
            x, y, w, h = (stats[1:, i].astype(np.float32) for i in range(4))
            boxes = np.stack([x, y, x + w, y + h], axis=1).reshape(-1, 4)
            found.append(
                (boxes, np.full(count - 1, 0.9, np.float32), np.zeros(count - 1, np.int64))
            )
        return found


def _info(task: str, classes: list[str], size: int) -> ModelInfo:
    return ModelInfo(
        task=task,
        classes=classes,
        image_size=(size, size),
        channels=3,
        mean=[0.0] * 3,
        std=[1.0] * 3,
        inference=InferenceSettings(window=(size, size), overlap=0.25),
    )


@pytest.fixture(scope="module")
def dotted_slide(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, list[tuple[float, float, float]]]:
    """The synthetic slide with near-black dots (r = 12 px at level 0) inside its tissue."""
    dots = []
    for y in range(300, SIDE - 300, 230):
        for x in range(300, SIDE - 300, 230):
            ring = [(x + dx, y + dy) for dx in (-60, 0, 60) for dy in (-60, 0, 60)]
            if all(
                label_at(np.array(px), np.array(py), SIDE, SIDE, _regions()) >= 0 for px, py in ring
            ):
                dots.append((float(x), float(y), 12.0))
    path = tmp_path_factory.mktemp("slides") / "dotted.tif"
    write_slide(path, SIDE, SIDE, mpp=0.5, dots=dots)
    return path, dots


def _regions() -> Any:
    from mediscope.slides.synthetic import DEFAULT_REGIONS

    return DEFAULT_REGIONS


def test_segmentation_is_written_block_by_block_to_a_pyramidal_mask(
    dotted_slide: Any, tmp_path: Path
) -> None:
    import tifffile

    path, _ = dotted_slide
    backend = Segmenter()
    predictor = Predictor(
        backend, _info("segmentation", ["background", "tumour"], 64), batch_size=8
    )
    settings = SlideSettings(level=2, block=256, progress=False)
    done = predict_slide(predictor, path, tmp_path / "out", settings)
    with Slide(path) as slide:  # the whole level at once (small here) as the reference
        whole = slide.read(slide.resolution(level=2), 0, 0, 1024, 1024)
    expected = prepare(whole, size=None, mean=[0.0] * 3, std=[1.0] * 3)[1] < 0.45
    with tifffile.TiffFile(tmp_path / "out" / "mask.tif") as tif:
        levels = tif.series[0].levels
        level0 = levels[0].asarray()
        assert [lv.shape for lv in levels] == [(1024, 1024), (512, 512)]
        assert (levels[1].asarray() == level0[::2, ::2]).all()
    # blocks without tissue are not predicted: zero there, the rule elsewhere
    assert 0 < done.total < 16
    assert max(backend.sizes) == 8  # a block's windows go through the model in batches
    assert (level0 == expected).mean() > 0.999
    assert (level0[expected == 0] == 0).all()
    rows = {r["class"]: r for r in csv.DictReader((tmp_path / "out" / "areas.csv").open())}
    assert int(rows["tumour"]["pixels"]) == int(level0.sum())
    assert float(rows["tumour"]["area_mm2"]) == pytest.approx(level0.sum() * (2e-3) ** 2)
    with Slide(tmp_path / "out" / "mask.tif") as mask:  # a slide itself, with the mpp
        assert mask.mpp == pytest.approx(2.0)
    # a rerun predicts nothing again
    calls = backend.calls
    again = predict_slide(predictor, path, tmp_path / "out", settings)
    assert backend.calls == calls and again.resumed == again.total == done.total
    assert (tmp_path / "out" / "overlay.png").is_file()


def test_detection_counts_each_object_once_across_tile_edges(
    dotted_slide: Any, tmp_path: Path
) -> None:
    path, dots = dotted_slide
    predictor = Predictor(Detector(), _info("detection", ["dot"], 128), batch_size=8)
    done = predict_slide(predictor, path, tmp_path / "out", SlideSettings(level=2, progress=False))
    assert len(dots) > 20
    assert done.summary["objects"] == len(dots)
    rows = list(csv.DictReader((tmp_path / "out" / "detections.csv").open()))
    centres = np.array(
        [
            [(float(r["x0"]) + float(r["x1"])) / 2, (float(r["y0"]) + float(r["y1"])) / 2]
            for r in rows
        ]
    )
    planted = np.array([(x, y) for x, y, _ in dots])
    nearest = np.abs(centres[:, None, :] - planted[None, :, :]).max(axis=2).min(axis=1)
    assert (nearest < 8).all()  # level-0 pixels
    counts = list(csv.DictReader((tmp_path / "out" / "counts.csv").open()))
    tissue = done.summary["tissue_mm2"]
    assert float(counts[0]["per_mm2"]) == pytest.approx(len(dots) / tissue, rel=1e-3)
    geo = json.loads((tmp_path / "out" / "detections.geojson").read_text())
    assert len(geo["features"]) == len(dots)
    for _ in range(2):  # reruns keep the boxes of the finished tiles
        again = predict_slide(
            predictor, path, tmp_path / "out", SlideSettings(level=2, progress=False)
        )
        assert again.resumed == again.total and again.summary["objects"] == len(dots)


def test_data_tile_cuts_slides_into_tissue_patches(
    dotted_slide: Any, tmp_path: Path, cli: Any
) -> None:
    path, _ = dotted_slide
    regions = tmp_path / "regions.geojson"
    regions.write_text(json.dumps(regions_geojson(SIDE, SIDE)))
    result = cli(
        "data",
        "tile",
        path,
        tmp_path / "labelled",
        "--mpp",
        "2",
        "--size",
        "64",
        "--annotations",
        regions,
    )
    assert result.code == 0, result.err
    folders = sorted(p.name for p in (tmp_path / "labelled").iterdir())
    assert folders == sorted(CLASSES)
    from PIL import Image

    one = next((tmp_path / "labelled" / "tumour").iterdir())
    assert Image.open(one).size == (64, 64)
    result = cli("data", "tile", path, tmp_path / "plain", "--mpp", "2", "--size", "64")
    assert result.code == 0, result.err
    plain = list((tmp_path / "plain" / "dotted").iterdir())
    labelled = sum(len(list(p.iterdir())) for p in (tmp_path / "labelled").iterdir())
    assert len(plain) >= labelled > 0
    assert f"-> {len(plain)} patches" in result.out


def test_a_bad_slide_or_resolution_is_one_line_and_writes_nothing(
    dotted_slide: Any, tmp_path: Path, cli: Any
) -> None:
    path, _ = dotted_slide
    predictor = Predictor(Segmenter(), _info("segmentation", ["background", "tumour"], 64))
    from mediscope.errors import ConfigError, DataError

    with pytest.raises(ConfigError, match="finest level has 0.5"):
        predict_slide(predictor, path, tmp_path / "out", SlideSettings(mpp=0.1))
    with pytest.raises(DataError, match="no such slide"):
        predict_slide(predictor, tmp_path / "missing.svs", tmp_path / "out")
    broken = tmp_path / "broken.svs"
    broken.write_bytes(b"not a slide")
    with pytest.raises(DataError, match="not a readable slide"):
        predict_slide(predictor, broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    result = cli("data", "tile", broken, tmp_path / "patches", "--mpp", "0.5")
    assert result.code == 2 and "not a readable slide" in result.err
    assert not (tmp_path / "patches").exists()
