"""``mediscope ensemble --method wbf|nms`` over detection prediction files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mediscope.errors import ConfigError, DataError
from mediscope.inference.ensemble import ensemble_detections
from mediscope.runtime.detection_files import (
    DetectionRecord,
    read_detection_predictions,
    write_detection_predictions,
)

CELL = [100.0, 100.0, 160.0, 150.0]
SHIFTED = [104.0, 102.0, 164.0, 150.0]  # IoU 0.81 with CELL
LONE = [300.0, 50.0, 340.0, 90.0]


@pytest.fixture
def two_models(tmp_path: Path) -> tuple[Path, Path]:
    """Model A (CSV; classes rbc, wbc) and model B (JSON; classes in the other order).

    smear1: both find the same rbc (0.9 and 0.7), only A finds a wbc; smear2: nothing.
    """
    a = write_detection_predictions(
        tmp_path / "a",
        [
            DetectionRecord("smear1.png", 400, 300, [CELL, LONE], [0.9, 0.6], [0, 1]),
            DetectionRecord("smear2.png", 640, 480),
        ],
        ["rbc", "wbc"],
    )
    b = write_detection_predictions(
        tmp_path / "b",
        [
            DetectionRecord("smear1.png", 400, 300, [SHIFTED], [0.7], [1]),
            DetectionRecord("smear2.png", 640, 480),
        ],
        ["wbc", "rbc"],
    )
    return a["csv"], b["json"]


def test_wbf_fuses_boxes_both_models_found(two_models: tuple[Path, Path], tmp_path: Path) -> None:
    records, classes = ensemble_detections(list(two_models), output=tmp_path / "fused")
    assert classes == ["rbc", "wbc"]
    smear1, smear2 = records
    assert (smear1.path, smear2.path) == ("smear1.png", "smear2.png")
    # the rbc: corners averaged by score, score the mean of both models
    expected = (0.9 * np.array(CELL) + 0.7 * np.array(SHIFTED)) / 1.6
    np.testing.assert_allclose(smear1.boxes[0], expected, atol=1e-3)
    assert smear1.scores[0] == pytest.approx(0.8, abs=1e-6)
    # the wbc only model A found: half its score (one model of two)
    np.testing.assert_allclose(smear1.boxes[1], LONE, atol=1e-3)
    assert smear1.scores[1] == pytest.approx(0.3, abs=1e-6)
    assert smear1.labels.tolist() == [0, 1]
    assert len(smear2.boxes) == 0
    # the same in every file written
    read, read_classes = read_detection_predictions(tmp_path / "fused" / "predictions.csv")
    assert read_classes == classes
    np.testing.assert_allclose(read[0].boxes, smear1.boxes, atol=1e-6)
    with (tmp_path / "fused" / "counts.csv").open(newline="") as handle:
        assert list(csv.reader(handle)) == [
            ["path", "rbc", "wbc", "total"],
            ["smear1.png", "1", "1", "2"],
            ["smear2.png", "0", "0", "0"],
        ]
    coco = json.loads((tmp_path / "fused" / "predictions.json").read_text())
    assert len(coco["annotations"]) == 2 and len(coco["images"]) == 2
    assert (tmp_path / "fused" / "labels" / "smear2.txt").read_text() == ""


def test_weights_and_thresholds(two_models: tuple[Path, Path], tmp_path: Path) -> None:
    records, _ = ensemble_detections(
        list(two_models), output=tmp_path / "w", weights=[3.0, 1.0], score_threshold=0.65
    )
    boxes = records[0]
    # A's weight 3: its corners count 3 x; the 0.6 wbc is under the score threshold
    expected = (3 * 0.9 * np.array(CELL) + 0.7 * np.array(SHIFTED)) / (3 * 0.9 + 0.7)
    np.testing.assert_allclose(boxes.boxes, [expected], atol=1e-3)
    # above the pair's IoU nothing is fused: two rbc boxes, each with a share of its score
    apart, _ = ensemble_detections(list(two_models), output=tmp_path / "i", iou_threshold=0.9)
    assert apart[0].labels.tolist().count(0) == 2


def test_cli_wbf_and_nms(cli, two_models: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = cli("ensemble", *two_models, "--method", "wbf", "--output", out)
    assert result.code == 0, result.err
    assert "2 images, 2 boxes; ensemble (wbf)" in result.out
    assert sorted(p.name for p in out.iterdir()) == [
        "counts.csv",
        "labels",
        "predictions.csv",
        "predictions.json",
    ]
    # folders work as inputs too; NMS keeps model A's better rbc box as it is
    nms = cli(
        "ensemble", tmp_path / "a", tmp_path / "b", "--method", "nms", "--output", tmp_path / "n"
    )
    assert nms.code == 0, nms.err
    records, _ = read_detection_predictions(tmp_path / "n")
    np.testing.assert_allclose(records[0].boxes, [CELL, LONE])
    np.testing.assert_allclose(records[0].scores, [0.9, 0.6])


def test_cli_bad_files_one_line_exit_2(cli, two_models: tuple[Path, Path], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    classification = tmp_path / "classes.csv"
    classification.write_text("path,label,a,b\nsmear1.png,a,0.6,0.4\n")
    bad_row = tmp_path / "bad" / "predictions.csv"
    bad_row.parent.mkdir()
    bad_row.write_text(
        "path,width,height,class,score,x1,y1,x2,y2\nsmear1.png,400,300,rbc,high,1,2,3,4\n"
    )
    cases = [
        (garbage, "cannot read the predictions"),
        (classification, "not a detection prediction file"),
        (bad_row, "predictions.csv:2: bad number"),
        (tmp_path / "missing.csv", "no such file"),
    ]
    for bad, message in cases:
        out = tmp_path / "out"
        result = cli("ensemble", two_models[0], bad, "--method", "wbf", "--output", out)
        assert result.code == 2, result.out
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
        assert not out.exists()
    # detection files given to the classification vote: a hint names the right methods
    vote = cli("ensemble", *two_models, "--output", tmp_path / "v.csv")
    assert vote.code == 2 and "use --method wbf or nms" in vote.err
    weight = cli("ensemble", *two_models, "--weight", "2", "--output", tmp_path / "v.csv")
    assert weight.code == 2 and "--weight is for detection ensembles" in weight.err


def test_errors(two_models: tuple[Path, Path], tmp_path: Path) -> None:
    other = write_detection_predictions(
        tmp_path / "c", [DetectionRecord("elsewhere.png", 400, 300)], ["rbc"]
    )
    with pytest.raises(DataError, match="the images differ from the first file's"):
        ensemble_detections([two_models[0], other["csv"]], output=tmp_path / "o")
    resized = write_detection_predictions(
        tmp_path / "d",
        [DetectionRecord("smear1.png", 800, 600), DetectionRecord("smear2.png", 640, 480)],
        ["rbc"],
    )
    with pytest.raises(DataError, match="smear1.png is 800 x 600 here, 400 x 300"):
        ensemble_detections([two_models[0], resized["json"]], output=tmp_path / "o")
    with pytest.raises(ConfigError, match="1 weights for 2 prediction files"):
        ensemble_detections(list(two_models), output=tmp_path / "o", weights=[1.0])
    with pytest.raises(DataError, match="detection ensembles write a folder"):
        ensemble_detections(list(two_models), output=tmp_path / "o.csv")
    with pytest.raises(DataError, match="at least two prediction files"):
        ensemble_detections(two_models[:1], output=tmp_path / "o")
    assert not (tmp_path / "o").exists()
