"""``export``: a run's model as an ONNX or TorchScript file, with its model card."""

from __future__ import annotations

from pathlib import Path

import typer


def _size(path: Path) -> str:
    count = float(path.stat().st_size)
    for unit in ("bytes", "KB", "MB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


def export_command(
    run_dir: Path = typer.Argument(..., help="A run folder written by fit.", metavar="RUN_DIR"),
    format: str = typer.Option(
        "onnx", "--format", "-f", help="onnx or torchscript.", metavar="onnx|torchscript"
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="The file to write (default RUN_DIR/export/model.onnx or model.torchscript.pt).",
    ),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (13 to 20).", metavar="N"),
    dynamic_batch: bool = typer.Option(
        False,
        "--dynamic-batch",
        help="ONNX: any batch size (default: one image per run; segmentation files take "
        "any H and W either way).",
    ),
    quantize: str | None = typer.Option(
        None,
        "--quantize",
        help="int8: also model.int8.onnx, calibrated on the validation split, and "
        "model.int8.json with its accuracy change (ONNX only).",
        metavar="int8",
    ),
) -> None:
    """Export RUN_DIR's best.ckpt for inference without training code: ONNX (onnxruntime)
    or TorchScript. The file carries the classes, input size and normalisation, and its
    outputs are checked against the PyTorch model; model_card.md is written beside it."""
    from rich.console import Console

    from mediscope.export.api import export_run
    from mediscope.export.card import int8_change

    result = export_run(
        run_dir,
        format=format,
        output=output,
        opset=opset,
        dynamic_batch=dynamic_batch,
        quantize=quantize,
    )
    console = Console(highlight=False)
    export = result.info.export
    detail = f"opset {export['opset']}, " if "opset" in export else ""
    shape = "x".join(str(d) for d in export.get("input_shape", []))
    console.print(
        f"{result.info.task} model, {len(result.info.classes)} classes, from "
        f"{result.checkpoint.name if result.checkpoint else 'checkpoint'}"
    )
    console.print(
        f"model: {result.model} ({export['format']}, {detail}input {shape}, {_size(result.model)})",
        soft_wrap=True,
    )
    differences = export.get("max_abs_difference") or {}
    if differences:
        console.print(
            "checked against PyTorch: largest difference "
            + ", ".join(f"{k} {v:.1e}" for k, v in differences.items())
        )
    if result.int8 is not None and result.int8_model is not None:
        measured = result.int8
        console.print(
            f"int8: {result.int8_model} ({_size(result.int8_model)}); {int8_change(measured)}",
            soft_wrap=True,
        )
        console.print(f"int8 accuracy: {result.int8_report}", soft_wrap=True)
    console.print(f"card: {result.card}", soft_wrap=True)
