"""export_run on tiny trained runs of each task: parity, metadata, int8, card, atomicity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mediscope.engine.restore import task_from_checkpoint
from mediscope.errors import ConfigError
from mediscope.export import export_run, inference_graph
from mediscope.export.card import int8_change
from mediscope.export.onnx_export import read_info as onnx_info
from mediscope.export.onnx_export import session
from mediscope.export.quantize import validation_data
from mediscope.export.torchscript import read_info as torchscript_info
from mediscope.inference.model_info import model_info
from mediscope.runtime.info import EXTRA_FILE, METADATA_KEY, ModelInfo
from mediscope.tasks.validate import load_config

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

#: Largest accuracy loss accepted from int8 (share of validation images, Dice or mAP@.5):
#: one image of the 13 classification images is 0.077.
INT8_MAX_DROP = 0.1
#: Probabilities and scores: eager PyTorch and the exported files agree this closely.
PROBABILITY_TOLERANCE = 1e-4


def eager(run: Path) -> tuple[Any, Any, Any, Any]:
    """The run's config, restored graph, info and normalised validation data."""
    config = load_config(run / "config.yaml")
    checkpoint = run / "checkpoints" / "best.ckpt"
    task, stats = task_from_checkpoint(config, checkpoint)
    data = validation_data(config, checkpoint, task.classes, stats)
    return (
        config,
        inference_graph(task),
        model_info(config, task.classes, checkpoint, stats=stats),
        data,
    )


def outputs(graph: Any, batch: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        result = graph(torch.from_numpy(batch))
    return [t.numpy() for t in (result if isinstance(result, tuple) else (result,))]


def assert_same(found: list[np.ndarray], expected: list[np.ndarray], names: list[str]) -> None:
    assert len(found) == len(expected) == len(names)
    for name, got, want in zip(names, found, expected, strict=True):
        assert got.shape == want.shape, name
        # boxes are in pixels: 1e-4 of the probabilities' tolerance, relative to the side
        atol = PROBABILITY_TOLERANCE * (want.shape[-2] if name == "boxes" else 1)
        np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=name)


@pytest.fixture(scope="module")
def runs(classification_run: Path, segmentation_run: Path, detection_run: Path) -> dict[str, Path]:
    return {
        "classification": classification_run,
        "segmentation": segmentation_run,
        "detection": detection_run,
    }


TASKS = ["classification", "segmentation", "detection"]


@pytest.mark.parametrize("task", TASKS)
def test_onnx_matches_pytorch_and_carries_its_info(task: str, runs: dict[str, Path]) -> None:
    run = runs[task]
    result = export_run(run)
    assert result.model == run / "export" / "model.onnx" and result.model.is_file()
    assert result.paths == [result.model, run / "export" / "model_card.md"]
    assert not list((run / "export").glob(".*"))  # no staging leftovers
    _, graph, info, data = eager(run)
    runner = session(result.model.read_bytes())
    for image in data.images[:4]:  # one image at a time: the default file has N = 1
        assert_same(runner.run(None, {"image": image}), outputs(graph, image), info.outputs)
    stored = onnx_info(result.model)
    model = onnx.load(str(result.model))
    props = {p.key: p.value for p in model.metadata_props}
    assert ModelInfo.from_json(props[METADATA_KEY]) == stored == result.info
    assert props["task"] == task and props["classes"] == ", ".join(info.classes)
    # every field but the export facts is the run's model_info
    stored.export = {}
    assert stored.inference.batch_size == 1  # the file takes one image per run
    stored.inference.batch_size = info.inference.batch_size
    assert stored == info
    assert info.config == (run / "config.yaml").read_text(encoding="utf-8")
    assert result.info.export["opset"] == 17 and result.info.export["dynamic_batch"] is False


@pytest.mark.parametrize("task", TASKS)
def test_torchscript_matches_pytorch_for_any_batch(task: str, runs: dict[str, Path]) -> None:
    run = runs[task]
    result = export_run(run, format="torchscript")
    assert result.model == run / "export" / "model.torchscript.pt"
    extra = {EXTRA_FILE: ""}
    module = torch.jit.load(str(result.model), _extra_files=extra)
    assert ModelInfo.from_json(extra[EXTRA_FILE]) == torchscript_info(result.model)
    _, graph, info, data = eager(run)
    batch = np.concatenate(data.images[:3])
    with torch.no_grad():
        found = module(torch.from_numpy(batch))
    found_list = [t.numpy() for t in (found if isinstance(found, tuple) else (found,))]
    assert_same(found_list, outputs(graph, batch), info.outputs)
    assert result.info.export["format"] == "torchscript"


def test_dynamic_batch_onnx(runs: dict[str, Path], tmp_path: Path) -> None:
    run = runs["classification"]
    result = export_run(run, output=tmp_path / "dyn.onnx", dynamic_batch=True, opset=13)
    assert result.info.export["input_shape"] == ["batch", 3, 32, 32]
    _, graph, info, data = eager(run)
    batch = np.concatenate(data.images[:5])
    (probs,) = session(result.model.read_bytes()).run(None, {"image": batch})
    assert probs.shape == (5, len(info.classes))
    assert_same([probs], outputs(graph, batch), info.outputs)
    assert (tmp_path / "model_card.md").is_file()


@pytest.mark.parametrize("task", TASKS)
def test_int8_model_and_its_measured_accuracy(task: str, runs: dict[str, Path]) -> None:
    run = runs[task]
    result = export_run(run, quantize="int8")
    assert result.int8_model == run / "export" / "model.int8.onnx"
    assert result.int8_report == run / "export" / "model.int8.json"
    assert result.int8_model.stat().st_size > 0
    measured = json.loads(result.int8_report.read_text())
    assert measured == result.int8
    assert measured["split"] == "val" and measured["quantization"].startswith("int8 static QDQ")
    split = json.loads((run / "split.json").read_text())
    assert measured["n_images"] == len(split["val"])
    assert measured["change"] == pytest.approx(measured["int8"] - measured["float32"])
    assert measured["change"] >= -INT8_MAX_DROP, measured
    int8_info = onnx_info(result.int8_model)
    assert int8_info.export["quantization"] == measured["quantization"]
    # the int8 graph really holds quantized operators
    ops = {node.op_type for node in onnx.load(str(result.int8_model)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    if task == "classification":
        assert measured["metric"] == "accuracy" and measured["agreement"] >= 0.9
        assert measured["max_abs_probability_difference"] < 0.1
    elif task == "segmentation":
        assert measured["metric"] == "dice_mean" and measured["mask_agreement"] >= 0.95
    else:
        assert measured["metric"] == "map_50"
        assert measured["max_abs_score_difference"] < 0.05
    card = result.card.read_text()
    assert f"float32 {measured['float32']:.4f}, int8 {measured['int8']:.4f}" in card
    assert int8_change(measured) in card
    assert "model.int8.onnx" in card


@pytest.mark.parametrize("task", TASKS)
def test_model_card_holds_the_runs_figures(task: str, runs: dict[str, Path]) -> None:
    run = runs[task]
    result = export_run(run)
    card = result.card.read_text()
    val = json.loads((run / "val_metrics.json").read_text())
    split = json.loads((run / "split.json").read_text())
    key = {"classification": "accuracy", "segmentation": "dice_mean", "detection": "map_50"}[task]
    figure = f"{val[key]:.4f} [{val['ci_low/' + key]:.4f}, {val['ci_high/' + key]:.4f}]"
    assert figure in card
    assert f"validation {len(split['val'])}" in card and f"train {len(split['train'])}" in card
    assert "95% bootstrap interval" in card
    assert "Synthetic: yes" in card and "The data is synthetic" in card
    assert "No external validation" in card
    assert "| test | not measured |" in card  # no test_metrics.json in these runs
    assert "best.ckpt" in card and "model.onnx" in card


def test_model_card_reports_test_metrics_when_the_run_has_them(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    from mediscope import api

    run = tmp_path / "run"  # a copy: the shared run stays without test metrics
    shutil.copytree(runs["classification"], run)
    config = load_config(run / "config.yaml")
    test_metrics, _ = api.test(config, run / "checkpoints" / "best.ckpt")
    card = export_run(run).card.read_text()
    n = int(test_metrics["n_samples"])
    low, high = test_metrics["ci_low/accuracy"], test_metrics["ci_high/accuracy"]
    assert f"| test | {n} | {test_metrics['accuracy']:.4f} [{low:.4f}, {high:.4f}]" in card
    assert f"test {n}" in card  # images per split: the test folder's, from its metrics


def test_nothing_is_written_when_a_step_fails(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mediscope.export import quantize

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ConfigError("calibration failed", where="test")

    monkeypatch.setattr(quantize, "measure", broken)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="calibration failed"):
        export_run(runs["classification"], output=out / "model.onnx", quantize="int8")
    assert list(out.iterdir()) == []  # neither model.onnx nor the int8 file nor a stage


def test_a_quantizer_failure_is_a_one_line_error(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnxruntime's own errors (e.g. a QLinearMul it cannot broadcast) become one line."""
    from mediscope.export import quantize

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("[ONNXRuntimeError] : QLinearMul: cannot broadcast 11394 by 12096")

    monkeypatch.setattr(quantize, "quantize_model", broken)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"int8 quantization failed \(\[ONNXRuntimeError\]"):
        export_run(runs["classification"], output=out / "model.onnx", quantize="int8")
    assert list(out.iterdir()) == []


def test_bad_inputs_are_one_line_errors(runs: dict[str, Path], tmp_path: Path) -> None:
    run = runs["classification"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"format": "tflite"}, "unknown format 'tflite'"),
        ({"opset": 9}, "opset 9 cannot be exported here"),
        ({"opset": 99}, "opset 99 cannot be exported here"),
        ({"format": "torchscript", "quantize": "int8"}, "works for ONNX files only"),
        ({"quantize": "int4"}, "unknown quantization 'int4'"),
        ({"output": tmp_path / "model.txt"}, "a onnx file must end in .onnx"),
        ({"output": tmp_path}, "is a folder"),
        ({"output": run / "checkpoints" / "model.onnx"}, "is inside the input"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message):
            export_run(run, **kwargs)
    with pytest.raises(ConfigError, match="not a run folder: no config.yaml"):
        export_run(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        export_run(tmp_path / "missing")
    assert not (tmp_path / "model.txt").exists()
