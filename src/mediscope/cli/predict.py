"""``predict`` and ``ensemble``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from mediscope.errors import ConfigError


def predict_command(
    source: Path = typer.Argument(
        ...,
        help="A run folder, a config file (with --checkpoint), or an exported model "
        "(.onnx, TorchScript .pt).",
        metavar="RUN_DIR|CONFIG|MODEL",
    ),
    inputs: list[Path] = typer.Option(
        ...,
        "--input",
        help="Folder, CSV (path column), NPZ, image file or whole slide (.svs, .ndpi, "
        "pyramidal .tif; repeatable).",
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
    score_threshold: float | None = typer.Option(
        None,
        "--score-threshold",
        help="Detection: boxes scoring less are dropped from predictions, counts and "
        "overlays. Default: the run's calibrated threshold (best F1 on its validation "
        "split), else 0.3 with a warning.",
        metavar="SCORE",
        show_default=False,
    ),
    iou_threshold: float | None = typer.Option(
        None,
        "--iou-threshold",
        help="Detection: boxes overlapping by more are one object (NMS and the merge of "
        "tiles). Default: inference.iou_threshold (0.5).",
        metavar="IOU",
        show_default=False,
    ),
    agnostic_nms: bool | None = typer.Option(
        None,
        "--agnostic-nms/--per-class-nms",
        help="Detection: suppress overlapping boxes across classes, so that an object the "
        "model hesitates over is counted once (--per-class-nms: within each class only). "
        "Default: inference.agnostic_nms (true).",
        show_default=False,
    ),
) -> None:
    """Predict classes (a CSV with path, label and one probability column per class),
    segment images (a folder of class-index masks, overlays and predictions.csv; sliding
    window and flips by --set inference.window=512 --set inference.tta=true), or detect
    objects (a folder: predictions.csv / .json, YOLO labels/, counts.csv per image and
    class, overlays/, settings.txt with the thresholds used; large images in overlapping
    tiles by --set inference.window=640; each tile and its flips vote on every object by
    --set inference.tta=true). NPZ inputs need only images, no labels.
    Whole slides (.svs, .ndpi, pyramidal .tif) are streamed over their tissue at
    inference.mpp into a folder per slide: tissue map, class areas, GeoJSON."""
    from mediscope.cli.slides import predict_slides, slide_inputs
    from mediscope.runtime.outputs import is_exported

    slides = slide_inputs(inputs)
    if slides:  # whole slides: streamed, a folder of maps and tables per slide
        predict_slides(source, slides, output, checkpoint=checkpoint, overrides=overrides or [])
        return

    detection: dict[str, Any] = {
        "score_threshold": score_threshold,
        "iou_threshold": iou_threshold,
        "agnostic_nms": agnostic_nms,
    }

    if is_exported(source):  # the runtime: no training stack, no config
        from mediscope.runtime.outputs import predict_exported

        for option, given in (("--checkpoint", checkpoint), ("--set", overrides)):
            if given:
                raise ConfigError(
                    "an exported model carries its weights and settings",
                    where=option,
                    hint=f"drop {option}, or give the run folder instead of {source.name}",
                )
        table = predict_exported(
            source, inputs=inputs, output=output, probabilities=probabilities, **detection
        )
        rows, columns, path = table.rows, table.columns, str(table.path)
        attrs = table.attrs()  # no pandas: the runtime's path
    else:
        from mediscope.inference.predict import predict

        frame = predict(
            source,
            inputs=inputs,
            output=output,
            checkpoint=checkpoint,
            overrides=overrides or [],
            probabilities=probabilities,
            **detection,
        )
        rows, columns = frame.to_dict("records"), [str(c) for c in frame.columns]
        path, attrs = str(frame.attrs["path"]), dict(frame.attrs)
    _print_predictions(rows, columns, path, attrs, output)


def _print_predictions(
    rows: list[dict[str, Any]],
    columns: list[str],
    path: str,
    attrs: dict[str, Any],
    output: Path,
) -> None:
    console = Console(highlight=False)
    threshold = attrs.get("score_threshold")
    if "mask" in columns:
        console.print(f"{len(rows)} images segmented: masks/ and overlays/ in {output}")
        console.print(f"predictions: {path}", soft_wrap=True)
        return
    if "total" in columns:  # detection: what a clinician reads off each image
        classes = columns[1:-1]
        for row in rows[:20]:
            detail = ", ".join(f"{c} {int(row[c])}" for c in classes)
            console.print(f"{Path(str(row['path'])).name}: {int(row['total'])} ({detail})")
        if len(rows) > 20:
            console.print(f"... {len(rows) - 20} more images in counts.csv")
        total = sum(int(row["total"]) for row in rows)
        across = ", suppressed across classes" if attrs.get("agnostic_nms") else ""
        console.print(
            f"{len(rows)} images, {total} objects (scores >= {threshold or 0:.3f}{across})"
        )
        if attrs.get("score_threshold_source") == "default":
            # stderr: one line a log or a terminal shows, whatever stdout goes to
            Console(stderr=True, highlight=False).print(
                f"[yellow]warning:[/] no calibrated score threshold (no score_threshold_f1 "
                f"in the run's val_metrics.json: it stopped before its final validation); "
                f"counted at the default {threshold:g}. Give --score-threshold, or run "
                f"`mediscope validate` to calibrate it (noted in {Path(path) / 'settings.txt'})",
                soft_wrap=True,
            )
        console.print(f"predictions: {path}", soft_wrap=True)
        return
    counts = Counter(str(row["label"]) for row in rows)
    console.print(f"{len(rows)} images: " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))
    console.print(f"predictions: {path}", soft_wrap=True)


def ensemble_command(
    predictions: list[Path] = typer.Argument(
        ...,
        help="Prediction files: classification CSVs, or detection predictions.csv / "
        "predictions.json (or their folders).",
        metavar="PRED...",
    ),
    method: str = typer.Option(
        "vote",
        "--method",
        help="Classification: vote (majority) or mean (soft). Detection: wbf (weighted "
        "boxes fusion) or nms.",
    ),
    output: Path = typer.Option(
        ..., "--output", help="The CSV to write (classification) or a folder (detection)."
    ),
    weights: list[float] | None = typer.Option(
        None,
        "--weight",
        help="Detection: one weight per file, in order (repeatable).",
        metavar="WEIGHT",
    ),
    iou_threshold: float | None = typer.Option(
        None,
        "--iou-threshold",
        help="Detection: boxes overlapping more are one object (default 0.55 wbf, 0.5 nms).",
    ),
    score_threshold: float = typer.Option(
        0.0, "--score-threshold", help="Detection: boxes scoring less are dropped first."
    ),
    max_detections: int | None = typer.Option(
        None, "--max-detections", help="Detection: boxes kept per image (default: all)."
    ),
) -> None:
    """Combine the predictions of several models: classification CSVs by majority vote or
    mean probability; detection files by weighted boxes fusion or NMS, image by image,
    into predictions.csv, predictions.json, labels/ and counts.csv."""
    from mediscope.inference.ensemble import DETECTION_METHODS, ensemble, ensemble_detections

    console = Console(highlight=False)
    if method in DETECTION_METHODS:
        records, _ = ensemble_detections(
            predictions,
            output=output,
            method=method,
            weights=weights or None,
            iou_threshold=iou_threshold,
            score_threshold=score_threshold,
            max_detections=max_detections,
        )
        boxes = sum(len(r.boxes) for r in records)
        console.print(
            f"{len(records)} images, {boxes} boxes; ensemble ({method}): {output}",
            soft_wrap=True,
        )
        return
    detection_options = {
        "--weight": bool(weights),
        "--iou-threshold": iou_threshold is not None,
        "--score-threshold": score_threshold != 0.0,
        "--max-detections": max_detections is not None,
    }
    for option, given in detection_options.items():
        if given:
            raise ConfigError(
                f"{option} is for detection ensembles",
                where=option,
                hint=f"drop it, or use --method wbf or nms (method here: {method})",
            )
    table = ensemble(predictions, method=method, output=output)
    console.print(f"{len(table)} images; ensemble: {output}", soft_wrap=True)
