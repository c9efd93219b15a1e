"""mediscope.load and the Predictor on eager models: inputs, results, batching, and the
CLI ``predict`` giving the same outputs as the Python API on every task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import mediscope
from mediscope.data.images import read_image
from mediscope.errors import ConfigError, DataError
from mediscope.runtime.inputs import to_image
from mediscope.runtime.results import ClassificationResult, DetectionResult, SegmentationResult


@pytest.fixture(scope="module")
def samples(tiny_crops: Path, tiny_lesions: Path, tiny_smears: Path) -> dict[str, list[Path]]:
    """A few test images per task."""
    return {
        "classification": sorted((tiny_crops / "test").rglob("*.png"))[:5],
        "segmentation": sorted((tiny_lesions / "img" / "test").glob("*.jpg"))[:3],
        "detection": sorted((tiny_smears / "images" / "test").glob("*.png"))[:3],
    }


@pytest.fixture(scope="module")
def predictors(trained_runs: dict[str, Path]) -> dict[str, mediscope.Predictor]:
    return {task: mediscope.load(run) for task, run in trained_runs.items()}


def test_top_level_names() -> None:
    assert mediscope.Predictor.__name__ == "Predictor"
    assert mediscope.DetectionResult is DetectionResult
    assert callable(mediscope.load)


def test_every_input_kind_gives_the_same_result(
    predictors: dict[str, mediscope.Predictor],
    trained_runs: dict[str, Path],
    samples: dict[str, list[Path]],
) -> None:
    predictor = predictors["classification"]
    path = samples["classification"][0]
    image = read_image(path, channels=3)
    by_path = predictor.predict(path)
    assert isinstance(by_path, ClassificationResult)
    assert by_path.path == str(path)
    kinds = [
        image,
        Image.open(path),
        torch.from_numpy(image.copy())
        .permute(2, 0, 1)
        .contiguous(),  # C x H x W, as torch holds it
        image.astype(np.float32) / 255.0,  # floats in [0, 1] are intensities
    ]
    for kind in kinds:
        result = predictor.predict(kind)
        assert isinstance(result, ClassificationResult)
        assert result.label == by_path.label
        for name, p in by_path.probabilities.items():
            assert result.probabilities[name] == pytest.approx(p, abs=1e-5)
    assert abs(sum(by_path.probabilities.values()) - 1) < 1e-5
    assert by_path.label == max(by_path.probabilities, key=by_path.probabilities.__getitem__)


def test_sixteen_bit_and_gray_arrays() -> None:
    wide = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 1000).astype(np.uint16)
    image, _ = to_image(wide, channels=3)
    assert image.shape == (4, 5, 3) and image.dtype == np.uint8
    assert image[0, 0, 0] == 0 and image[-1, -1, 0] == 255  # scaled by its own range
    gray, _ = to_image(np.full((4, 5), 7, np.uint8), channels=1)
    assert gray.shape == (4, 5, 1) and int(gray[0, 0, 0]) == 7
    with pytest.raises(DataError, match="NaN"):
        to_image(np.full((3, 3), np.nan), channels=3)
    with pytest.raises(DataError, match="cannot predict a dict"):
        to_image({}, channels=3)


def test_lists_batches_and_folders_agree(
    predictors: dict[str, mediscope.Predictor],
    trained_runs: dict[str, Path],
    samples: dict[str, list[Path]],
) -> None:
    predictor = predictors["classification"]
    paths = samples["classification"]
    one_by_one = [predictor.predict(p) for p in paths]
    as_list = predictor.predict(paths)
    batched = predictor.predict_batch(paths, batch_size=2)
    assert isinstance(as_list, list) and len(as_list) == len(paths)
    for a, b, c in zip(one_by_one, as_list, batched, strict=True):
        assert isinstance(a, ClassificationResult)
        assert isinstance(b, ClassificationResult) and isinstance(c, ClassificationResult)
        assert a.label == b.label == c.label
        assert np.allclose(
            list(a.probabilities.values()), list(c.probabilities.values()), atol=1e-5
        )
    folder = paths[0].parent
    found = list(predictor.predict_folder(folder, progress=False))
    assert [r.path for r in found] == [str(p) for p in sorted(folder.glob("*.png"))]


def test_grad_cam_on_eager_classifiers(
    predictors: dict[str, mediscope.Predictor],
    trained_runs: dict[str, Path],
    samples: dict[str, list[Path]],
) -> None:
    path = samples["classification"][0]
    result = predictors["classification"].predict(path, cam=True)
    assert isinstance(result, ClassificationResult) and result.cam is not None
    assert result.cam.shape == read_image(path).shape[:2]
    assert result.cam.min() >= 0 and result.cam.max() <= 1 and result.cam.max() > 0
    with pytest.raises(ConfigError, match="Grad-CAM is for classifiers"):
        predictors["segmentation"].predict(path, cam=True)


def test_segmentation_and_detection_results(
    predictors: dict[str, mediscope.Predictor],
    trained_runs: dict[str, Path],
    samples: dict[str, list[Path]],
) -> None:
    path = samples["segmentation"][0]
    seg = predictors["segmentation"].predict(path, probabilities=True)
    assert isinstance(seg, SegmentationResult)
    image = read_image(path)
    assert seg.mask.shape == image.shape[:2]
    assert seg.probabilities is not None and seg.probabilities.shape[1:] == image.shape[:2]
    assert (seg.probabilities.argmax(axis=0) == seg.mask).all()
    assert sum(seg.areas().values()) == seg.mask.size
    assert json.loads(seg.to_json())["shape"] == list(seg.mask.shape)

    smear = samples["detection"][0]
    det = predictors["detection"].predict(smear)
    assert isinstance(det, DetectionResult)
    threshold = predictors["detection"].info.inference.score_threshold
    assert (det.scores > threshold).all()
    assert sum(det.counts().values()) == len(det)
    assert det.draw(read_image(smear)).shape == read_image(smear).shape


def test_large_images_go_through_tiles(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    """A detector with a window cuts a large smear into tiles, as the CLI does."""
    run = trained_runs["detection"]
    whole = mediscope.load(run)
    tiled = mediscope.load(run, overrides=["inference.window=64", "inference.score_threshold=0.01"])
    assert whole.info.inference.window is None and tiled.info.inference.window == (64, 64)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)
    calls: list[int] = []
    original = tiled._detect_batch

    def counting(batch: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        calls.append(len(batch))
        return original(batch)

    tiled._detect_batch = counting  # type: ignore[method-assign]
    result = tiled.predict(image)
    assert isinstance(result, DetectionResult)
    assert sum(calls) > 1  # several tiles
    if len(result):
        assert result.boxes[:, 2].max() <= 200 and result.boxes[:, 3].max() <= 150


def test_cli_predict_equals_the_api(
    cli,
    trained_runs: dict[str, Path],
    predictors: dict[str, mediscope.Predictor],
    tmp_path: Path,
    samples: dict[str, list[Path]],
) -> None:
    for task, run in trained_runs.items():
        images = samples[task]
        inputs: list[object] = []
        for image in images:
            inputs += ["--input", image]
        out = tmp_path / task
        out.mkdir()
        # a low threshold, so that the one-epoch detector's boxes are compared too
        low = (
            ["inference.score_threshold=0", "inference.max_detections=20"]
            if task == "detection"
            else []
        )
        sets = [x for item in low for x in ("--set", item)]
        result = cli("predict", run, *inputs, "--output", out, *sets)
        assert result.code == 0, result.err
        api = mediscope.load(run, overrides=low).predict(images) if low else None
        api = api or predictors[task].predict(images)
        assert isinstance(api, list)
        if task == "classification":
            table = pd.read_csv(out / "predictions.csv")
            assert table["label"].tolist() == [r.label for r in api]  # type: ignore[union-attr]
            for (_, row), res in zip(table.iterrows(), api, strict=True):
                assert isinstance(res, ClassificationResult)
                for name, p in res.probabilities.items():
                    assert row[name] == pytest.approx(round(p, 6), abs=1e-6)
        elif task == "segmentation":
            for image, res in zip(images, api, strict=True):
                assert isinstance(res, SegmentationResult)
                mask = np.asarray(Image.open(out / "masks" / f"{image.stem}.png"))
                assert (mask == res.mask).all()
        else:
            rows = pd.read_csv(out / "predictions.csv").dropna(subset=["x1"])
            assert len(rows) > 0
            for image, res in zip(images, api, strict=True):
                assert isinstance(res, DetectionResult)
                mine = rows[rows["path"] == str(image)].sort_values("score", ascending=False)
                assert len(mine) == len(res)
                if len(res):
                    assert np.allclose(
                        mine[["x1", "y1", "x2", "y2"]].to_numpy(), res.boxes, atol=1e-3
                    )
                    assert np.allclose(mine["score"].to_numpy(), res.scores, atol=1e-5)
            counts = pd.read_csv(out / "counts.csv")
            assert counts["total"].tolist() == [len(r) for r in api]  # type: ignore[arg-type]


def test_load_errors(tmp_path: Path, trained_runs: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="not found"):
        mediscope.load(tmp_path / "missing")
    config = trained_runs["classification"] / "config.yaml"
    with pytest.raises(ConfigError, match="needs its checkpoint"):
        mediscope.load(config)
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(ConfigError, match="not a run folder"):
        mediscope.load(other)
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="ONNX"):
        mediscope.load(fake)
    # a checkpoint with its config, given either way round
    ckpt = trained_runs["classification"] / "checkpoints" / "best.ckpt"
    assert mediscope.load(config, checkpoint=ckpt).classes == mediscope.load(ckpt).classes
