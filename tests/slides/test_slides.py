"""Whole slides: reading by resolution, tissue masks, streaming prediction, patch sets."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tiffslide")

from mediscope.errors import ConfigError
from mediscope.slides.reader import Slide, is_slide
from mediscope.slides.synthetic import (
    CLASSES,
    DEFAULT_REGIONS,
    grid_truth,
    regions_geojson,
    write_slide,
)
from mediscope.slides.tissue import detect_tissue, tissue_mask

SIDE = 4096  # level 0, 0.5 µm/px: a 2 x 2 mm slide
MPP = 2.0  # the model's resolution: level 2
PATCH = 32


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("slides") / "synthetic.tif"
    write_slide(path, SIDE, SIDE, mpp=0.5)
    return path


def test_a_pyramidal_tiff_is_a_slide_and_a_plain_one_is_not(
    slide_path: Path, tmp_path: Path
) -> None:
    import tifffile

    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((64, 64, 3), np.uint8))
    assert is_slide(slide_path)
    assert not is_slide(plain)
    assert is_slide(tmp_path / "scan.svs")  # by its format


def test_the_level_is_chosen_by_resolution(slide_path: Path) -> None:
    with Slide(slide_path) as slide:
        assert slide.mpp == pytest.approx(0.5)
        assert slide.level_count == 3
        res = slide.resolution(mpp=2.0)
        assert (res.level, res.scale, res.size) == (2, 1.0, (1024, 1024))
        between = slide.resolution(mpp=1.5)  # level 1 (1 µm/px) scaled by 1.5
        assert (between.level, between.scale) == (1, 1.5)
        assert between.size == (1365, 1365)
        assert slide.resolution(level=1).mpp == pytest.approx(1.0)
        patch = slide.read(between, 100, 100, 48, 48)
        assert patch.shape == (48, 48, 3) and patch.dtype == np.uint8
        with pytest.raises(ConfigError, match="finest level"):
            slide.resolution(mpp=0.1)
        with pytest.raises(ConfigError, match="levels 0..2"):
            slide.resolution(level=5)


def test_reads_outside_the_slide_are_glass(slide_path: Path) -> None:
    with Slide(slide_path) as slide:
        res = slide.resolution(mpp=2.0)
        corner = slide.read(res, 1000, 1000, 64, 64)
        assert corner.shape == (64, 64, 3)
        assert (corner[40:, 40:] == 255).all()


def test_the_tissue_mask_finds_the_planted_regions(slide_path: Path, tmp_path: Path) -> None:
    with Slide(slide_path) as slide:
        mask, view = tissue_mask(slide, max_side=512)
    planted = sum(r.area(SIDE, SIDE) for r in DEFAULT_REGIONS) * (0.5e-3) ** 2
    assert mask.area_mm2() == pytest.approx(planted, rel=0.03)
    assert view.shape[:2] == mask.mask.shape
    saved = mask.save(tmp_path / "mask.png")
    import cv2

    assert (cv2.imread(str(saved), cv2.IMREAD_GRAYSCALE) > 0).sum() == mask.mask.sum()


def test_tissue_masking_drops_specks_and_fills_holes() -> None:
    view = np.full((128, 128, 3), 240, np.uint8)
    view[20:100, 20:100] = (150, 80, 170)
    view[50:54, 50:54] = 240  # a small hole
    view[110:112, 110:112] = (150, 80, 170)  # a speck
    mask, threshold = detect_tissue(view, min_area=20, max_hole=30)
    assert mask[52, 52] and not mask[111, 111]
    assert abs(int(mask.sum()) - 80 * 80) <= 8  # the median rounds the corners
    assert threshold >= 20
    glass = np.full((64, 64, 3), 240, np.uint8) + np.random.default_rng(0).integers(
        0, 6, (64, 64, 3)
    ).astype(np.uint8)
    assert not detect_tissue(glass)[0].any()  # glass alone: no tissue


@pytest.fixture(scope="module")
def patch_run(slide_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny classifier trained on annotated patches of the synthetic slide."""
    from helpers import tiny_config
    from mediscope.api import fit
    from mediscope.slides.patches import tile_slides
    from mediscope.tasks.validate import config_from_dict

    root = tmp_path_factory.mktemp("patches")
    annotations = root / "regions.geojson"
    annotations.write_text(json.dumps(regions_geojson(SIDE, SIDE)))
    summary = tile_slides(
        [slide_path], root / "train", size=PATCH, mpp=MPP, annotations=annotations
    )
    assert set(summary.classes) == set(CLASSES)
    config = tiny_config(
        root,
        root / "runs",
        data={"path": str(root / "train"), "test_path": str(root / "train")},
        trainer={"max_epochs": 3},
        inference={"mpp": MPP},
    )
    return fit(config_from_dict(config)).run_dir


@pytest.mark.slow  # trains a classifier (about 20 s alone)
def test_the_tissue_map_recovers_the_planted_regions_and_areas(
    slide_path: Path, patch_run: Path, tmp_path: Path
) -> None:
    import mediscope
    from mediscope.slides.predict import predict_slide

    predictor = mediscope.load(patch_run)
    out = tmp_path / "out"
    done = predict_slide(predictor, slide_path, out)
    classes = predictor.classes
    class_map = np.load(out / "probability_maps.npz")["class_map"]
    truth = grid_truth(SIDE, SIDE, PATCH * MPP / 0.5)
    assert class_map.shape == truth.shape == (32, 32)
    names = list(CLASSES)
    for k, name in enumerate(classes):
        planted = truth == names.index(name)
        found = class_map == k
        iou = (planted & found).sum() / (planted | found).sum()
        assert iou >= 0.8, (name, iou)
    # areas: within 5 % of the planted ones
    rows = {row["class"]: row for row in csv.DictReader((out / "areas.csv").open())}
    for region in DEFAULT_REGIONS:
        planted_mm2 = region.area(SIDE, SIDE) * (0.5e-3) ** 2
        assert float(rows[region.label]["area_mm2"]) == pytest.approx(planted_mm2, rel=0.05)
    assert sum(float(r["percent"]) for r in rows.values()) == pytest.approx(100, abs=0.01)
    # the other outputs
    patches = list(csv.DictReader((out / "patches.csv").open()))
    assert len(patches) == done.summary["patches"] == (class_map >= 0).sum()
    assert {"x", "y", "width", "height", "label", *classes} <= set(patches[0])
    geo = json.loads((out / "patches.geojson").read_text())
    assert len(geo["features"]) == len(patches)
    for name in ("tissue_map.png", "tissue_mask.png", "class_map.png", "summary.json"):
        assert (out / name).is_file()
    maps = np.load(out / "probability_maps.npz")
    total = sum(np.nan_to_num(maps[name]) for name in classes)
    assert np.allclose(total[class_map >= 0], 1, atol=1e-4)


@pytest.mark.slow  # trains a classifier (about 20 s alone)
def test_a_rerun_skips_finished_patches(slide_path: Path, patch_run: Path, tmp_path: Path) -> None:
    import mediscope
    from mediscope.slides.predict import SlideSettings, predict_slide

    predictor = mediscope.load(patch_run)
    settings = SlideSettings(mpp=MPP, progress=False)
    first = predict_slide(predictor, slide_path, tmp_path / "out", settings)
    calls = []
    original = predictor.predict_batch
    predictor.predict_batch = lambda images, **kw: (
        calls.append(len(images)) or original(images, **kw)
    )  # type: ignore[method-assign]
    second = predict_slide(predictor, slide_path, tmp_path / "out", settings)
    assert calls == [] and second.resumed == second.total == first.total
    assert second.summary["classes"] == first.summary["classes"]


@pytest.mark.slow  # trains a classifier (about 20 s alone)
def test_an_interrupted_run_resumes_where_it_stopped(
    slide_path: Path, patch_run: Path, tmp_path: Path
) -> None:
    import mediscope
    from mediscope.slides.predict import SlideSettings, predict_slide

    predictor = mediscope.load(patch_run, batch_size=16)
    settings = SlideSettings(mpp=MPP, progress=False)
    original = predictor.predict_batch
    seen: list[int] = []

    def stop_after_three(images, **kw):  # type: ignore[no-untyped-def]
        if len(seen) == 3:
            raise KeyboardInterrupt
        seen.append(len(images))
        return original(images, **kw)

    predictor.predict_batch = stop_after_three  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        predict_slide(predictor, slide_path, tmp_path / "out", settings)
    predictor.predict_batch = original  # type: ignore[method-assign]
    resumed = predict_slide(predictor, slide_path, tmp_path / "out", settings)
    assert resumed.resumed == sum(seen) == 48
    fresh = predict_slide(predictor, slide_path, tmp_path / "fresh", settings)
    assert resumed.summary["classes"] == fresh.summary["classes"]


@pytest.mark.slow  # trains a classifier (about 20 s alone)
def test_predict_detects_a_slide_by_its_format(
    slide_path: Path, patch_run: Path, tmp_path: Path, cli: Any
) -> None:
    result = cli("predict", patch_run, "--input", slide_path, "--output", tmp_path / "out")
    assert result.code == 0, result.err
    folder = tmp_path / "out" / "synthetic"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["level"] == 2 and summary["mpp"] == pytest.approx(MPP)
    assert "synthetic.tif:" in result.out and "tumour" in result.out
    for name in ("tissue_map.png", "areas.csv", "patches.geojson", "patches.csv"):
        assert (folder / name).is_file()
    image = tmp_path / "plain.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(image)
    mixed = cli(
        "predict", patch_run, "--input", slide_path, "--input", image, "--output", tmp_path / "o2"
    )
    assert mixed.code == 2 and "slides and images in one prediction" in mixed.err


def test_patches_read_in_strips_are_the_patches_read_one_by_one(slide_path: Path) -> None:
    from mediscope.slides.predict import read_cells

    cells = np.array([[10, 3], [10, 4], [10, 5], [10, 9], [11, 0], [12, 7], [12, 8]])
    with Slide(slide_path) as slide:
        res = slide.resolution(mpp=MPP)
        strips = read_cells(slide, res, cells, (PATCH, PATCH))
        for (r, c), patch in zip(cells, strips, strict=True):
            alone = slide.read(res, int(c) * PATCH, int(r) * PATCH, PATCH, PATCH)
            assert (patch == alone).all()


def test_the_docstring_examples_run() -> None:
    import doctest

    from mediscope.slides import reader, tissue

    for module in (reader, tissue):
        failed, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert failed == 0, module.__name__


@pytest.mark.slow  # trains a classifier and exports it
def test_an_exported_onnx_model_maps_a_slide_as_its_run_does(
    slide_path: Path, patch_run: Path, tmp_path: Path, cli: Any
) -> None:
    pytest.importorskip("onnxruntime")
    from mediscope.export.api import export_run

    exported = export_run(patch_run, output=tmp_path / "model.onnx", dynamic_batch=True)
    assert exported.info.inference.mpp == MPP
    result = cli("predict", exported.model, "--input", slide_path, "--output", tmp_path / "onnx")
    assert result.code == 0, result.err
    result = cli("predict", patch_run, "--input", slide_path, "--output", tmp_path / "eager")
    assert result.code == 0, result.err
    onnx = json.loads((tmp_path / "onnx" / "synthetic" / "summary.json").read_text())
    eager = json.loads((tmp_path / "eager" / "synthetic" / "summary.json").read_text())
    assert onnx["mpp"] == eager["mpp"] == pytest.approx(MPP)  # the mpp travels in the file
    assert onnx["classes"] == eager["classes"]


def test_a_slide_without_a_resolution_is_read_by_level(tmp_path: Path) -> None:
    path = tmp_path / "no-mpp.tif"
    write_slide(path, 2048, 2048, mpp=None)
    with Slide(path) as slide:
        assert slide.mpp is None and slide.level_count == 2
        with pytest.raises(ConfigError, match="gives no microns per pixel; set inference.mpp=null"):
            slide.resolution(mpp=0.5)
        res = slide.resolution(level=1)
        assert res.mpp is None and res.size == (1024, 1024)
        mask, _ = tissue_mask(slide, max_side=256)
        assert mask.area_mm2() is None and 0.3 < mask.fraction < 0.45
