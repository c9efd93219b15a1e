"""``predict``'s detection settings: the warning and the note when no score threshold was
calibrated, ``--score-threshold`` / ``--iou-threshold`` / ``--agnostic-nms`` (and the
same in ``mediscope.load`` and on exported models)."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mediscope
from mediscope.errors import ConfigError
from mediscope.runtime.info import DEFAULT_SCORE_THRESHOLD
from mediscope.runtime.results import DetectionResult


@pytest.fixture(scope="module")
def smears(tiny_smears: Path) -> list[Path]:
    return sorted((tiny_smears / "images" / "test").glob("*.png"))[:2]


@pytest.fixture(scope="module")
def uncalibrated(trained_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The detection run as if stopped before its final validation: no val_metrics.json."""
    run = tmp_path_factory.mktemp("stopped") / "run"
    shutil.copytree(trained_runs["detection"], run)
    (run / "val_metrics.json").unlink()
    return run


def _inputs(images: list[Path]) -> list[object]:
    return [x for image in images for x in ("--input", image)]


def test_uncalibrated_threshold_warns_and_is_noted(
    cli, uncalibrated: Path, trained_runs: dict[str, Path], smears: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "counts"
    result = cli("predict", uncalibrated, *_inputs(smears), "--output", out)
    assert result.code == 0, result.err
    warning = [line for line in result.err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "no calibrated score threshold" in warning[0]
    assert f"{DEFAULT_SCORE_THRESHOLD:g}" in warning[0] and "--score-threshold" in warning[0]
    note = (out / "settings.txt").read_text()
    assert f"score threshold: {DEFAULT_SCORE_THRESHOLD:g} (the default" in note
    assert "WARNING" in note
    boxes = pd.read_csv(out / "predictions.csv").dropna(subset=["score"])
    assert (boxes["score"] >= DEFAULT_SCORE_THRESHOLD).all()

    calibrated = cli("predict", trained_runs["detection"], *_inputs(smears), "--output", out)
    assert calibrated.code == 0 and "warning" not in calibrated.err
    assert "validation split" in (out / "settings.txt").read_text()

    with pytest.warns(UserWarning, match="no calibrated score threshold"):
        predictor = mediscope.load(uncalibrated)
    assert predictor.info.inference.score_threshold == DEFAULT_SCORE_THRESHOLD
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a chosen threshold is no surprise
        chosen = mediscope.load(uncalibrated, score_threshold=0.2)
    assert chosen.info.inference.score_threshold_source == "set"


def test_predict_flags_equal_the_api(
    cli, trained_runs: dict[str, Path], smears: list[Path], tmp_path: Path
) -> None:
    run = trained_runs["detection"]
    assert mediscope.load(run).info.inference.agnostic_nms  # the default: counts
    flags = ["--score-threshold", "0.01", "--iou-threshold", "0.3", "--per-class-nms"]
    out = tmp_path / "flags"
    result = cli("predict", run, *_inputs(smears), "--output", out, *flags)
    assert result.code == 0, result.err
    assert "suppressed across classes" not in result.out
    note = (out / "settings.txt").read_text()
    assert "score threshold: 0.01 (set by --score-threshold" in note
    assert "suppressed within each class above IoU 0.3" in note
    api = mediscope.load(run, score_threshold=0.01, iou_threshold=0.3, agnostic_nms=False)
    settings = api.info.inference
    assert (settings.score_threshold, settings.iou_threshold, settings.agnostic_nms) == (
        0.01,
        0.3,
        False,
    )
    counts = pd.read_csv(out / "counts.csv")
    found = api.predict(smears)
    assert isinstance(found, list)
    assert counts["total"].tolist() == [len(r) for r in found]  # type: ignore[arg-type]
    assert counts["total"].sum() > 0  # the one-epoch model finds boxes at 0.01
    for res in found:
        assert isinstance(res, DetectionResult) and (res.scores >= 0.01).all()


def test_predict_flags_are_checked_and_documented(
    cli, trained_runs: dict[str, Path], smears: list[Path], tmp_path: Path
) -> None:
    run = trained_runs["detection"]
    out = tmp_path / "bad"
    bad = cli("predict", run, *_inputs(smears), "--output", out, "--score-threshold", "1.5")
    assert bad.code == 2 and "--score-threshold" in bad.err and not out.exists()
    bad = cli("predict", run, *_inputs(smears), "--output", out, "--iou-threshold", "0")
    assert bad.code == 2 and "--iou-threshold" in bad.err
    crops = sorted(trained_runs["classification"].parent.parent.rglob("*.png"))[:1]
    not_detection = cli(
        "predict",
        trained_runs["classification"],
        *_inputs(crops or smears),
        "--output",
        tmp_path / "c.csv",
        "--agnostic-nms",
    )
    assert not_detection.code == 2 and "for detectors" in not_detection.err
    with pytest.raises(ConfigError, match="for detectors"):
        mediscope.load(trained_runs["classification"], score_threshold=0.5)
    helped = cli("predict", "--help")
    for flag in ("--score-threshold", "--iou-threshold", "--agnostic-nms"):
        assert flag in helped.out


def test_flags_on_an_exported_model(
    cli, trained_runs: dict[str, Path], smears: list[Path], tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    from mediscope.export.api import export_run

    model = export_run(trained_runs["detection"], format="onnx", output=tmp_path / "m.onnx").model
    out = tmp_path / "onnx"
    flags = ["--score-threshold", "0.02", "--agnostic-nms"]
    result = cli("predict", model, *_inputs(smears), "--output", out, *flags)
    assert result.code == 0, result.err
    assert "suppressed across classes" in result.out
    assert "score threshold: 0.02 (set by" in (out / "settings.txt").read_text()
    api = mediscope.load(model, score_threshold=0.02, agnostic_nms=True)
    found = api.predict(smears)
    assert isinstance(found, list)
    counts = pd.read_csv(out / "counts.csv")
    assert counts["total"].tolist() == [len(r) for r in found]  # type: ignore[arg-type]
    plain = mediscope.load(model, score_threshold=0.02, agnostic_nms=False).predict(smears)
    assert isinstance(plain, list)
    assert sum(map(len, found)) <= sum(map(len, plain))  # type: ignore[arg-type]
    for res in found:
        assert isinstance(res, DetectionResult)
        # no two kept boxes of different classes overlap by more than the IoU threshold
        for i in range(len(res)):
            for j in range(i + 1, len(res)):
                a, b = res.boxes[i], res.boxes[j]
                inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(
                    0.0, min(a[3], b[3]) - max(a[1], b[1])
                )
                union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
                assert inter / union <= api.info.inference.iou_threshold + 1e-6
