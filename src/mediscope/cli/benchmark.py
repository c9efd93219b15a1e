"""``benchmark``: speed and accuracy of a run's model as eager PyTorch, TorchScript, ONNX
and int8 ONNX, measured on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

#: The JSON written into the run folder when ``--output`` is not given.
DEFAULT_OUTPUT = "benchmark.json"
#: Short column titles of the accuracy metrics.
METRIC_LABELS = {"accuracy": "acc", "dice_mean": "dice", "map_50": "mAP50"}


def benchmark_command(
    run_dir: Path = typer.Argument(..., help="A run folder written by fit.", metavar="RUN_DIR"),
    formats: str = typer.Option(
        "eager,torchscript,onnx,int8",
        "--formats",
        help="Comma-separated formats to measure: eager, torchscript, onnx, int8.",
        metavar="F1,F2",
    ),
    batch: str = typer.Option(
        "1,16", "--batch", help="Comma-separated batch sizes.", metavar="B1,B2"
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help=f"The JSON to write (default RUN_DIR/{DEFAULT_OUTPUT})."
    ),
    repeats: int = typer.Option(10, "--repeats", help="Timed calls per format and round."),
    rounds: int = typer.Option(3, "--rounds", help="Rounds of interleaved timed calls."),
    warmup: int = typer.Option(3, "--warmup", help="Untimed calls per format first."),
    threads: int | None = typer.Option(
        None, "--threads", help="torch and onnxruntime threads (default: the core count)."
    ),
    predict: bool = typer.Option(
        True, "--predict/--no-predict", help="Also time Predictor.predict end to end."
    ),
    accuracy: bool = typer.Option(
        True, "--accuracy/--no-accuracy", help="Also measure accuracy on the validation split."
    ),
    limit: int | None = typer.Option(
        None, "--limit", help="At most this many validation images.", metavar="N"
    ),
) -> None:
    """Measure RUN_DIR's model in each format on this machine: images per second and
    latency (p50, p95) of the network call and of Predictor.predict per batch size, and
    accuracy on the validation split (classification accuracy, segmentation mean Dice,
    detection mAP@0.5). The formats are exported from best.ckpt into a temporary folder;
    all use the same number of threads; their timed calls are interleaved."""
    import os
    import sys

    from rich.console import Console

    if "torch" not in sys.modules:
        # torch's OpenMP threads wait without spinning, as mediscope's onnxruntime
        # sessions do: on a machine busier than its cores, spinning made eager PyTorch
        # at 2 threads up to 30 times slower than at 1 (read once, when torch loads).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from mediscope.errors import ConfigError
    from mediscope.evaluation.speed import (
        BenchmarkSettings,
        benchmark_run,
        parse_batches,
        parse_formats,
    )
    from mediscope.files import write_json_atomic

    if limit is not None and limit < 1:
        raise ConfigError(f"must be at least 1, got {limit}", where="--limit")
    settings = BenchmarkSettings(
        formats=parse_formats(formats),
        batches=parse_batches(batch),
        warmup=warmup,
        repeats=repeats,
        rounds=rounds,
        threads=threads,
        predict=predict,
        accuracy=accuracy,
        limit=limit,
    )
    settings.check()
    target = output if output is not None else run_dir / DEFAULT_OUTPUT
    if target.is_dir():
        raise ConfigError(
            "is a folder; --output names the JSON file to write",
            where=target,
            hint=f"e.g. --output {target / DEFAULT_OUTPUT}",
        )
    console = Console(highlight=False, stderr=True)
    result = benchmark_run(
        run_dir, settings, log=lambda line: console.print(f"[dim]{line}[/dim]", soft_wrap=True)
    )
    write_json_atomic(target, result)
    out = Console(highlight=False)
    out.print(result_table(result))
    for fmt, entry in result["formats"].items():
        if entry.get("note"):
            out.print(f"note, {fmt}: {entry['note']}", soft_wrap=True)
    out.print(machine_line(result), soft_wrap=True)
    out.print(f"written: {target}", soft_wrap=True)


def _figure(value: float | None) -> str:
    """A figure with 3 significant digits at most, without an exponent.

    Example:
        >>> [_figure(v) for v in (1234.5, 171.44, 12.345, 0.1234, None)]
        ['1234', '171', '12.3', '0.123', '-']
    """
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def result_table(result: dict[str, Any]) -> Any:
    """A rich table of :func:`~mediscope.evaluation.speed.benchmark_run`'s result: per
    format and batch size, the network call (images per second, p50 and p95 latency,
    speed-up over eager), ``Predictor.predict`` (p50, speed-up) and the accuracy."""
    from rich import box
    from rich.table import Table

    metric = next(
        (e["accuracy"]["metric"] for e in result["formats"].values() if "accuracy" in e), None
    )
    size = "x".join(map(str, result["image_size"]))
    table = Table(
        title=f"{result['task']}, {result['model']}, {size} px, "
        f"{result['settings']['threads']} threads",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        collapse_padding=True,
        caption="bs: batch size; img/s, p50 ms, p95 ms: the network call; predict: "
        "Predictor.predict, p50 ms; ×eager: eager's p50 over the format's",
    )
    columns = ["format", "bs", "img/s", "p50 ms", "p95 ms", "×eager", "predict", "×eager"]
    for column in [*columns, *([METRIC_LABELS.get(metric, metric)] if metric else [])]:
        left = column == "format"
        table.add_column(column, justify="left" if left else "right", no_wrap=left)
    for fmt, entry in result["formats"].items():
        for index, (batch, net) in enumerate(entry["network"].items()):
            pred = entry["predict"].get(batch, {})
            speedup, pred_speedup = net.get("speedup"), pred.get("speedup")
            row = [
                fmt,
                batch,
                _figure(net["images_per_second"]),
                _figure(net["p50_ms"]),
                _figure(net["p95_ms"]),
                f"{_figure(speedup)}x" if speedup is not None else "-",
                _figure(pred.get("p50_ms")),
                f"{_figure(pred_speedup)}x" if pred_speedup is not None else "-",
            ]
            if metric is not None:
                value = entry.get("accuracy", {}).get("value")
                row.append("" if index else ("-" if value is None else f"{value:.4f}"))
            table.add_row(*row)
    return table


def machine_line(result: dict[str, Any]) -> str:
    """The machine, threads and load averages of a result, in one line."""
    machine, load = result["machine"], result.get("load_average") or {}
    return (
        f"{machine['cpu_count']} cores, {machine['threads']} threads (torch and onnxruntime); "
        f"load average before {load.get('before')}, after {load.get('after')}; "
        f"torch {machine['torch']}, onnxruntime {machine['onnxruntime']}"
    )
