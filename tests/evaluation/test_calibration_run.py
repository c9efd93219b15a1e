"""report.calibrate and report.operating_point on a tiny classification run: the run's
calibration.json, the metrics files, terminal, report, predict and export use them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mediscope
from helpers import tiny_config
from mediscope import api
from mediscope.metrics.calibration import (
    CALIBRATION_FILE,
    apply_temperature,
    expected_calibration_error,
    read_calibration,
)
from mediscope.metrics.operating_points import sensitivity_specificity
from mediscope.runtime.info import ModelInfo
from mediscope.tasks.validate import config_from_dict

CLASSES = ["G+bacilli", "G+cocci", "G-bacilli", "G-cocci"]


@pytest.fixture(scope="module")
def calibrated(tiny_crops: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    runs = tmp_path_factory.mktemp("calibrated-runs")
    config = config_from_dict(
        tiny_config(
            tiny_crops,
            runs,
            trainer={"max_epochs": 2},
            report={
                "bootstrap": 100,
                "gradcam": 0,
                "calibrate": "temperature",
                "operating_point": {"sensitivity": 0.9},
            },
        )
    )
    result = api.fit(config)
    api.test(config, result.best_checkpoint)
    return config, result.run_dir


def _metrics(run: Path, split: str) -> dict[str, float]:
    return json.loads((run / f"{split}_metrics.json").read_text())


def test_validation_fixes_temperature_and_thresholds(calibrated: Any) -> None:
    _, run = calibrated
    stored = read_calibration(run)
    assert stored is not None and stored.temperature > 0 and stored.fitted_on == "val"
    assert (run / CALIBRATION_FILE).is_file()
    val = _metrics(run, "val")
    assert val["temperature"] == pytest.approx(stored.temperature)
    assert val["op_target_sensitivity"] == 0.9
    results = np.load(run / "val_results.npz")
    labels, probs = results["labels"], results["probs"].astype(np.float64)
    # results hold the calibrated probabilities; the raw ones come back with 1 / T
    raw = apply_temperature(probs, 1.0 / stored.temperature)
    assert val["ece"] == pytest.approx(expected_calibration_error(labels, probs), abs=1e-5)
    assert val["ece_uncalibrated"] == pytest.approx(
        expected_calibration_error(labels, raw), abs=1e-5
    )
    assert "ci_low/ece_uncalibrated" in val
    for name in CLASSES:
        # chosen on this split: the target is reached by construction
        assert val[f"op_sensitivity/{name}"] >= 0.9
        assert val[f"op_threshold/{name}"] == stored.thresholds[f"op_threshold/{name}"]
        low, high = val[f"ci_low/op_specificity/{name}"], val[f"ci_high/op_specificity/{name}"]
        assert low <= val[f"op_specificity/{name}"] <= high
        assert f"youden_sensitivity/{name}" in val


def test_test_split_uses_the_validation_thresholds(calibrated: Any) -> None:
    _, run = calibrated
    stored = read_calibration(run)
    assert stored is not None
    test = _metrics(run, "test")
    assert test["temperature"] == pytest.approx(stored.temperature)
    results = np.load(run / "test_results.npz")
    labels, probs = results["labels"], results["probs"]
    for c, name in enumerate(CLASSES):
        threshold = stored.thresholds[f"op_threshold/{name}"]
        sens, spec = sensitivity_specificity(labels == c, probs[:, c], threshold)
        assert test[f"op_sensitivity/{name}"] == pytest.approx(sens)
        assert test[f"op_specificity/{name}"] == pytest.approx(spec)
        assert f"ci_high/op_sensitivity/{name}" in test


def test_report_and_terminal(calibrated: Any, cli: Any) -> None:
    _, run = calibrated
    text = (run / "report.html").read_text()
    assert "Temperature scaling (report.calibrate)" in text
    assert "sensitivity at threshold" in text and "temperature" in text
    assert (run / "plots" / "val_calibration.png").is_file()
    assert (run / "plots" / "test_calibration.png").is_file()
    out = cli("test", run / "config.yaml", "--checkpoint", run / "checkpoints" / "best.ckpt")
    assert out.code == 0, out.err
    assert "temperature" in out.out and "ece_uncalibrated" in out.out
    assert "sensitivity >= 0.9" in out.out


def test_predict_uses_the_temperature(calibrated: Any, tiny_crops: Path) -> None:
    _, run = calibrated
    stored = read_calibration(run)
    assert stored is not None
    predictor = mediscope.load(run)
    assert predictor.info.temperature == pytest.approx(stored.temperature)
    assert set(predictor.info.thresholds) == set(CLASSES)
    again = ModelInfo.from_json(predictor.info.to_json())
    assert again.temperature == predictor.info.temperature
    results = np.load(run / "test_results.npz")
    paths = [str(tiny_crops / "test" / p) for p in results["paths"][:4]]
    predicted = predictor.predict(paths)
    assert isinstance(predicted, list)
    got = np.array([[r.probabilities[c] for c in CLASSES] for r in predicted])  # type: ignore[union-attr]
    assert np.allclose(got, results["probs"][:4], atol=1e-4)


def test_export_carries_the_temperature(calibrated: Any, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from mediscope.export import export_run

    _, run = calibrated
    stored = read_calibration(run)
    assert stored is not None
    exported = export_run(run, format="onnx", output=tmp_path / "model.onnx")
    assert exported is not None
    loaded = mediscope.load(tmp_path / "model.onnx")
    assert loaded.info.temperature == pytest.approx(stored.temperature)
    eager = mediscope.load(run)
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    a, b = loaded.predict(image), eager.predict(image)
    assert a.probabilities == pytest.approx(b.probabilities, abs=1e-4)  # type: ignore[union-attr]


def test_test_without_calibration_file_fits_on_validation(calibrated: Any) -> None:
    config, run = calibrated
    stored = read_calibration(run)
    assert stored is not None
    (run / CALIBRATION_FILE).unlink()
    api.test(config, run / "checkpoints" / "best.ckpt")
    again = read_calibration(run)
    assert again is not None
    assert again.temperature == pytest.approx(stored.temperature, rel=1e-6)
    assert again.thresholds == pytest.approx(stored.thresholds)
