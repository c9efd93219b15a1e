"""``predict`` and ``ensemble``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console


def predict_command(
    source: Path = typer.Argument(
        ..., help="A config file (with --checkpoint) or a run folder.", metavar="CONFIG|RUN_DIR"
    ),
    inputs: list[Path] = typer.Option(
        ...,
        "--input",
        help="Folder, CSV (path column), NPZ or image file (repeatable).",
        metavar="PATH",
    ),
    output: Path = typer.Option(..., "--output", help="The CSV to write, or a folder."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Weights; default: the run folder's best.ckpt."
    ),
    overrides: list[str] | None = typer.Option(
        None, "--set", help="Override a config key (repeatable).", metavar="KEY=VALUE"
    ),
    probabilities: bool = typer.Option(
        False, "--probabilities", help="Segmentation: also write per-class probability maps."
    ),
) -> None:
    """Predict classes (a CSV with path, label and one probability column per class), or
    segment images (a folder of class-index masks, overlays and predictions.csv; sliding
    window and flips by --set inference.window=512 --set inference.tta=true)."""
    from mediscope.inference.predict import predict

    table = predict(
        source,
        inputs=inputs,
        output=output,
        checkpoint=checkpoint,
        overrides=overrides or [],
        probabilities=probabilities,
    )
    console = Console(highlight=False)
    if "mask" in table.columns:
        console.print(f"{len(table)} images segmented: masks/ and overlays/ in {output}")
        console.print(f"predictions: {table.attrs['path']}", soft_wrap=True)
        return
    counts = table["label"].value_counts().to_dict()
    console.print(f"{len(table)} images: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    console.print(f"predictions: {table.attrs['path']}", soft_wrap=True)


def ensemble_command(
    predictions: list[Path] = typer.Argument(..., help="Prediction CSVs.", metavar="PRED..."),
    method: str = typer.Option("vote", "--method", help="vote (majority) or mean (soft)."),
    output: Path = typer.Option(..., "--output", help="The CSV to write."),
) -> None:
    """Combine prediction CSVs of several models by majority vote or mean probability."""
    from mediscope.inference.ensemble import ensemble

    table = ensemble(predictions, method=method, output=output)
    Console(highlight=False).print(f"{len(table)} images; ensemble: {output}", soft_wrap=True)
