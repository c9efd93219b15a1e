"""Exported files through ``mediscope.load``: the same predictions as the run folder's
PyTorch model, for every task and format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mediscope
from mediscope.export import export_run

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def images(tiny_crops: Path, tiny_lesions: Path, tiny_smears: Path) -> dict[str, list[Path]]:
    return {
        "classification": sorted((tiny_crops / "test").rglob("*.png"))[:6],
        "segmentation": sorted((tiny_lesions / "img" / "test").glob("*.jpg"))[:3],
        "detection": sorted((tiny_smears / "images" / "test").glob("*.png"))[:3],
    }


def assert_same_results(found: Any, expected: Any, task: str) -> None:
    for got, want in zip(found, expected, strict=True):
        if task == "classification":
            assert got.label == want.label
            for name, value in want.probabilities.items():
                assert got.probabilities[name] == pytest.approx(value, abs=1e-4)
        elif task == "segmentation":
            np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-4)
            assert (got.mask == want.mask).mean() > 0.999
        else:
            assert len(got.boxes) == len(want.boxes)
            np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)
            np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-2)
            assert got.class_indices.tolist() == want.class_indices.tolist()


@pytest.mark.parametrize("task", ["classification", "segmentation", "detection"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_model_predicts_as_the_run(
    task: str,
    fmt: str,
    export_runs: dict[str, Path],
    images: dict[str, list[Path]],
    tmp_path: Path,
) -> None:
    run = export_runs[task]
    name = "model.onnx" if fmt == "onnx" else "model.pt"
    result = export_run(run, format=fmt, output=tmp_path / name)
    exported = mediscope.load(result.model)
    assert exported.format == fmt and exported.classes == result.info.classes
    eager = mediscope.load(run)
    if task == "detection":  # a threshold at which these tiny detectors find boxes
        threshold = 0.5 * float(max(r.scores.max(initial=0.0) for r in _low(eager, images[task])))
        for predictor in (exported, eager):
            predictor.info.inference.score_threshold = threshold
    probabilities = task == "segmentation"
    expected = eager.predict(images[task], probabilities=probabilities)
    found = exported.predict(images[task], probabilities=probabilities)
    if task == "detection":
        assert sum(len(r.boxes) for r in expected) > 0
    assert_same_results(found, expected, task)


def _low(predictor: Any, paths: list[Path]) -> Any:
    predictor.info.inference.score_threshold = 0.0
    return predictor.predict(paths)
