"""``mediscope export``: what it prints, exit codes and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mediscope.export.card import int8_change

pytest.importorskip("onnxruntime")


def test_export_prints_the_files_and_the_int8_change(cli, classification_run: Path) -> None:
    result = cli("export", classification_run, "--quantize", "int8")
    assert result.code == 0, result.err
    folder = classification_run / "export"
    measured = json.loads((folder / "model.int8.json").read_text())
    assert f"model: {folder / 'model.onnx'} (onnx, opset 17, input 1x3x32x32," in result.out
    assert "checked against PyTorch: largest difference probabilities" in result.out
    assert f"int8: {folder / 'model.int8.onnx'}" in result.out
    assert (
        f"accuracy on the validation split ({measured['n_images']} images): float32 "
        f"{measured['float32']:.4f}, int8 {measured['int8']:.4f} (change "
    ) in result.out
    assert int8_change(measured) in result.out
    assert f"card: {folder / 'model_card.md'}" in result.out


def test_export_torchscript_to_a_chosen_file(cli, segmentation_run: Path, tmp_path: Path) -> None:
    target = tmp_path / "seg.pt"
    result = cli("export", segmentation_run, "--format", "torchscript", "-o", target)
    assert result.code == 0, result.err
    assert target.is_file() and (tmp_path / "model_card.md").is_file()
    assert "(torchscript, input batchx3xheightxwidth" in result.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "tflite"], "--format: unknown format 'tflite'; use onnx or torchscript"),
        (["--opset", "7"], "--opset: opset 7 cannot be exported here"),
        (
            ["--format", "torchscript", "--quantize", "int8"],
            "--quantize: --quantize int8 works for ONNX files only",
        ),
        (
            ["--output", "CHECKPOINTS/model.onnx"],
            "--output: CHECKPOINTS/model.onnx is inside the input",
        ),
    ],
)
def test_bad_options_exit_2_with_one_line(
    cli, classification_run: Path, args: list[str], message: str
) -> None:
    checkpoints = str(classification_run / "checkpoints")
    args = [a.replace("CHECKPOINTS", checkpoints) for a in args]
    result = cli("export", classification_run, *args)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message.replace("CHECKPOINTS", checkpoints) in lines[0]
    assert result.out == ""


def test_not_a_run_folder(cli, tmp_path: Path) -> None:
    result = cli("export", tmp_path)
    assert result.code == 2
    assert result.err.strip() == (
        f"error: {tmp_path}: not a run folder: no config.yaml; give a run folder written "
        "by 'mediscope fit' (runs/NAME/TIME)"
    )
    assert not (tmp_path / "export").exists()
