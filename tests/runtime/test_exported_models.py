"""Exported models through mediscope.load and ``mediscope predict``: the same results as
the eager model, and the ONNX path without the training stack."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mediscope
from mediscope.export.api import export_run
from mediscope.runtime.results import ClassificationResult, DetectionResult, SegmentationResult

#: What a deployment installs without: the test blocks their import.
TRAINING_STACK = (
    "torch",
    "torchvision",
    "lightning",
    "pytorch_lightning",
    "timm",
    "segmentation_models_pytorch",
    "albumentations",
    "pandas",
    "matplotlib",
    "sklearn",
)


@pytest.fixture(scope="module")
def exported(trained_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """task -> {"onnx": path, "torchscript": path}."""
    out = tmp_path_factory.mktemp("exported")
    files: dict[str, dict[str, Path]] = {}
    for task, run in trained_runs.items():
        files[task] = {
            fmt: export_run(run, format=fmt, output=out / task / f"model-{fmt}.{ext}").model
            for fmt, ext in (("onnx", "onnx"), ("torchscript", "pt"))
        }
    return files


@pytest.fixture(scope="module")
def samples(tiny_crops: Path, tiny_lesions: Path, tiny_smears: Path) -> dict[str, list[Path]]:
    return {
        "classification": sorted((tiny_crops / "test").rglob("*.png"))[:4],
        "segmentation": sorted((tiny_lesions / "img" / "test").glob("*.jpg"))[:3],
        "detection": sorted((tiny_smears / "images" / "test").glob("*.png"))[:3],
    }


def _same(a: object, b: object) -> None:
    if isinstance(a, ClassificationResult):
        assert isinstance(b, ClassificationResult)
        assert a.label == b.label
        assert np.allclose(
            list(a.probabilities.values()), list(b.probabilities.values()), atol=1e-4
        )
    elif isinstance(a, SegmentationResult):
        assert isinstance(b, SegmentationResult)
        assert (a.mask != b.mask).mean() < 1e-3  # ties at a class boundary may flip a pixel
    else:
        assert isinstance(a, DetectionResult) and isinstance(b, DetectionResult)
        assert len(a) == len(b)
        if len(a):
            assert np.abs(a.boxes - b.boxes).max() <= 0.5
            assert np.allclose(a.scores, b.scores, atol=1e-4)
            assert (a.class_indices == b.class_indices).all()


@pytest.mark.parametrize("task", ["classification", "segmentation", "detection"])
def test_exported_models_predict_as_the_eager_one(
    task: str, exported: dict, trained_runs: dict[str, Path], samples: dict[str, list[Path]]
) -> None:
    eager = mediscope.load(trained_runs[task])
    reference = eager.predict(samples[task])
    for fmt, path in exported[task].items():
        predictor = mediscope.load(path)
        assert predictor.format == fmt and predictor.task == task
        assert predictor.classes == eager.classes
        # a file exported without --dynamic-batch takes one image per call
        settings = dataclasses.replace(predictor.info.inference, batch_size=4)
        assert settings == dataclasses.replace(eager.info.inference, batch_size=4)
        results = predictor.predict(samples[task])
        assert isinstance(results, list) and isinstance(reference, list)
        for a, b in zip(reference, results, strict=True):
            _same(a, b)


def test_the_onnx_runtime_needs_no_training_stack(
    exported: dict, samples: dict[str, list[Path]], tmp_path: Path
) -> None:
    """load + predict and ``mediscope predict model.onnx`` with torch & co. unimportable;
    a training command then says which extra to install."""
    script = textwrap.dedent(
        f"""
        import importlib.abc, json, sys

        BLOCKED = {TRAINING_STACK!r}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, Block())
        import mediscope
        from mediscope.cli.main import main

        out = {{}}
        for task, model, image, folder in json.loads(sys.argv[1]):
            predictor = mediscope.load(model)
            result = predictor.predict(image)
            out[task] = {{"repr": repr(result), "json": json.loads(result.to_json())}}
            out[task]["cli"] = main(["predict", model, "--input", image, "--output", folder])
        out["train"] = main(["fit", "config.yaml"])
        out["loaded"] = sorted(m for m in BLOCKED if m in sys.modules)
        print(json.dumps(out))
        """
    )
    jobs = [
        [task, str(files["onnx"]), str(samples[task][0]), str(tmp_path / task)]
        for task, files in exported.items()
    ]
    jobs[0][3] = str(tmp_path / "classification.csv")
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(jobs)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    assert out["train"] == 2
    assert "pip install 'mediscope[train]'" in done.stderr
    for task in ("classification", "segmentation", "detection"):
        assert out[task]["cli"] == 0, (task, done.stderr[-2000:])
        assert out[task]["json"]["task"] == task
    table = pd.read_csv(tmp_path / "classification.csv")
    assert table["label"].tolist() == [out["classification"]["json"]["label"]]
    assert (tmp_path / "segmentation" / "masks").is_dir()
    assert (tmp_path / "detection" / "counts.csv").is_file()


def test_predict_refuses_options_an_export_does_not_take(cli, exported: dict, samples, tmp_path):
    model = exported["classification"]["onnx"]
    image = samples["classification"][0]
    result = cli("predict", model, "--input", image, "--output", tmp_path / "p.csv", "--set", "a=1")
    assert result.code == 2
    assert "an exported model carries its weights and settings" in result.err
    assert not (tmp_path / "p.csv").exists()


def test_bad_model_files_are_one_line_errors(cli, tmp_path: Path, samples) -> None:
    import onnx
    from onnx import TensorProto, helper

    image = samples["classification"][0]
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not onnx")
    # a valid ONNX graph, but not one of mediscope's: no metadata
    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["probabilities"])],
        "plain",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 3, 4, 4])],
    )
    plain = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), plain)
    # an opset from the future
    future = tmp_path / "future.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 99)])
    model.ir_version = 8
    onnx.save(model, future)
    expected = {
        junk: "not an ONNX model",
        plain: "without mediscope's metadata",
        future: "opset",
    }
    for path, message in expected.items():
        result = cli("predict", path, "--input", image, "--output", tmp_path / "out.csv")
        assert result.code == 2, (path, result.err)
        assert message in result.err, result.err
        assert len(result.err.strip().splitlines()) == 1
        assert not (tmp_path / "out.csv").exists()
