"""Every task's demo model (the packaged demo configs, on tiny data, one epoch): the CLI
``predict`` equals the Python API, and its ONNX, int8 and TorchScript exports predict
as the eager model, tiles of a large smear included (the detector's flipped views voting
in every format)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import mediscope
from mediscope.api import fit
from mediscope.demo import demo_config, detection_demo_config, segmentation_demo_config
from mediscope.export.api import export_run
from mediscope.runtime.results import ClassificationResult, DetectionResult, SegmentationResult

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_runs(
    tiny_crops: Path,
    tiny_lesions: Path,
    tiny_smears: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    runs = tmp_path_factory.mktemp("demo-runs")
    configs = {
        "classification": demo_config(tiny_crops, runs, epochs=1),
        "segmentation": segmentation_demo_config(tiny_lesions, runs, epochs=1),
        "detection": detection_demo_config(tiny_smears, runs, epochs=1),
    }
    return {task: fit(config).run_dir for task, config in configs.items()}


@pytest.fixture(scope="module")
def images(tiny_crops: Path, tiny_lesions: Path, tiny_smears: Path) -> dict[str, list[Path]]:
    return {
        "classification": sorted((tiny_crops / "test").rglob("*.png"))[:6],
        "segmentation": sorted((tiny_lesions / "img" / "test").glob("*.jpg"))[:3],
        # a 600 x 450 smear: cut into the demo's 256 px tiles
        "detection": sorted((tiny_smears / "large" / "images").glob("*.png"))[:1]
        + sorted((tiny_smears / "images" / "test").glob("*.png"))[:2],
    }


def _close(a: object, b: object, *, atol: float, mask_share: float, box_px: float) -> None:
    if isinstance(a, ClassificationResult):
        assert isinstance(b, ClassificationResult)
        assert np.allclose(
            list(a.probabilities.values()), list(b.probabilities.values()), atol=atol
        )
    elif isinstance(a, SegmentationResult):
        assert isinstance(b, SegmentationResult)
        assert (a.mask != b.mask).mean() <= mask_share
    else:
        assert isinstance(a, DetectionResult) and isinstance(b, DetectionResult)
        assert len(a) == len(b)
        assert _box_gap(a, b) <= box_px


@pytest.mark.parametrize("task", ["classification", "segmentation", "detection"])
def test_demo_model_cli_api_and_exports_agree(
    task: str, demo_runs: dict[str, Path], images: dict[str, list[Path]], cli, tmp_path: Path
) -> None:
    run = demo_runs[task]
    low = ["inference.score_threshold=0.001", "inference.max_detections=30"]
    overrides = low if task == "detection" else []
    eager = mediscope.load(run, overrides=overrides)
    if task == "detection":
        assert eager.info.inference.window == (256, 256)  # the large smear goes in tiles
        assert eager.info.inference.tta  # the demo's flipped views vote, in every format
        assert max(Image.open(p).size[0] for p in images[task]) > 256
    reference = eager.predict(images[task])
    assert isinstance(reference, list)

    # the CLI writes what the API returns
    out = tmp_path / "cli"
    out.mkdir()
    args = [x for image in images[task] for x in ("--input", image)]
    sets = [x for item in overrides for x in ("--set", item)]
    assert cli("predict", run, *args, "--output", out, *sets).code == 0
    if task == "classification":
        table = pd.read_csv(out / "predictions.csv")
        assert table["label"].tolist() == [r.label for r in reference]  # type: ignore[union-attr]
    elif task == "segmentation":
        for image, result in zip(images[task], reference, strict=True):
            assert isinstance(result, SegmentationResult)
            assert (
                np.asarray(Image.open(out / "masks" / f"{image.stem}.png")) == result.mask
            ).all()
    else:
        counts = pd.read_csv(out / "counts.csv")
        assert counts["total"].tolist() == [len(r) for r in reference]  # type: ignore[arg-type]
        assert counts["total"].sum() > 0

    # exports: fp32 ONNX and TorchScript as the eager model; int8 close to it
    exported = tmp_path / "export"
    onnx = export_run(run, format="onnx", output=exported / "model.onnx", quantize="int8")
    script = export_run(run, format="torchscript", output=exported / "model.pt")
    for path in (onnx.model, script.model):
        predictor = mediscope.load(path)
        if task == "detection":  # the same low threshold as the eager reference
            assert predictor.info.inference.tta  # the export keeps the votes
            predictor.info.inference = dataclasses.replace(
                predictor.info.inference, score_threshold=0.001, max_detections=30
            )
        results = predictor.predict(images[task])
        assert isinstance(results, list)
        for a, b in zip(reference, results, strict=True):
            _close(a, b, atol=1e-4, mask_share=1e-3, box_px=0.5)
    assert onnx.int8 is not None and onnx.int8_model is not None
    int8 = mediscope.load(onnx.int8_model)
    assert int8.predict(images[task][0]) is not None


def _box_gap(a: DetectionResult, b: DetectionResult) -> float:
    """The largest distance (pixels, any corner) from a box of ``a`` to the nearest box of
    ``b`` with the same class: boxes scoring the same may come in either order."""
    gap = 0.0
    for box, label in zip(a.boxes, a.class_indices, strict=True):
        same = b.boxes[b.class_indices == label]
        assert len(same), f"no box of class {label} in the other result"
        gap = max(gap, float(np.abs(same - box).max(axis=1).min()))
    return gap
