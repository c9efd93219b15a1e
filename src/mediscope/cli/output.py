"""What commands print: the fit summary and metric tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from mediscope.tasks import TASKS, Summary


def _console() -> Console:
    return Console(width=100, highlight=False)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.4f}"


def _with_interval(metrics: dict[str, float], key: str) -> str:
    text = f"{key} {_fmt(metrics.get(key))}"
    low, high = metrics.get(f"ci_low/{key}"), metrics.get(f"ci_high/{key}")
    if low is not None and high is not None and low == low:
        text += f" [{low:.3f}, {high:.3f}]"
    return text


#: Per-class rows printed with their intervals (the operating points).
WITH_INTERVALS = (
    "op_sensitivity/",
    "op_specificity/",
    "youden_sensitivity/",
    "youden_specificity/",
)


def _per_class(metrics: dict[str, float], prefix: str) -> str:
    items = [(k[len(prefix) :], v) for k, v in metrics.items() if k.startswith(prefix)]
    if prefix == "gt/":  # object counts
        return "  ".join(f"{name} {int(v)}" for name, v in items)
    if prefix in WITH_INTERVALS:
        return "  ".join(_with_interval(metrics, prefix + name) for name, _ in items)
    return "  ".join(f"{name} {_fmt(v)}" for name, v in items)


def _calibration_line(metrics: dict[str, float]) -> str:
    """Temperature and ECE before / after, when the evaluation was calibrated."""
    if "temperature" not in metrics:
        return ""
    parts = [f"temperature {_fmt(metrics['temperature'])} (fitted on val)"]
    parts += [_with_interval(metrics, k) for k in ("ece_uncalibrated", "ece") if k in metrics]
    return "  ".join(parts)


def _operating_point_line(metrics: dict[str, float]) -> str:
    for kind in ("sensitivity", "specificity"):
        key = f"op_target_{kind}"
        if key in metrics:
            return f"thresholds chosen on val for {kind} >= {metrics[key]:g}, and Youden's J"
    if any(k.startswith("youden_threshold/") for k in metrics):
        return "thresholds chosen on val by Youden's J"
    return ""


def metrics_grid(metrics: dict[str, float], summary: Summary | None = None) -> Table:
    """Main metrics on one line, per-class metrics (F1, sensitivity, ...) below.

    Args:
        metrics: Flat metrics (as in ``val_metrics.json``).
        summary: The task's metrics worth showing; default: classification's.
    """
    summary = summary or TASKS.get("classification").summary
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    # keys a metrics file lacks (an optional metric, an older run) are left out
    shown = [k for k in summary.terminal if k in metrics] or list(summary.terminal)
    grid.add_row("metrics", "  ".join(_with_interval(metrics, k) for k in shown))
    if "confidence" in metrics:
        from mediscope.metrics.bootstrap import resampled_what

        grid.add_row(
            "",
            f"in brackets: {metrics['confidence']:.0%} bootstrap interval, "
            f"{resampled_what(metrics)}",
        )
    calibration = _calibration_line(metrics)
    if calibration:
        grid.add_row("calibration", calibration)
    operating = _operating_point_line(metrics)
    if operating:
        grid.add_row("operating point", operating)
    for label, prefix in summary.per_class:
        line = _per_class(metrics, prefix)
        if line:
            grid.add_row(label, line)
    return grid


def print_fit_summary(
    result: Any, config: Any, *, run_line: bool = True, test_panel: bool = True
) -> None:
    """The one-screen summary at the end of fit; the last line is ``run: PATH``.

    Args:
        result: A :class:`mediscope.api.FitResult`.
        config: Its config.
        run_line: End with the line ``run: PATH``.
        test_panel: Show the test metrics, when fit measured them (the demo shows them
            under its own title).
    """
    console = _console()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    sizes = result.split_sizes
    test_metrics = getattr(result, "test_metrics", None) or {}
    tested = test_metrics.get("n_samples", test_metrics.get("n_images"))
    test_size = f"  test {int(tested)}" if tested is not None else ""
    grid.add_row("run", str(result.run_dir))
    grid.add_row(
        "data",
        f"train {sizes.get('train', 0)}  val {sizes.get('val', 0)}{test_size}  "
        f"({config.data.format}, {config.data.path})",
    )
    grid.add_row("model", f"{config.model.name}, loss {config.loss.name}")
    grid.add_row(
        "epochs",
        f"{result.epochs_run} run (numbered from 0), {result.seconds:.1f} s"
        + (f", resumed from {result.resumed_from}" if result.resumed_from else ""),
    )
    if result.best_epoch is not None:
        grid.add_row(
            "best", f"epoch {result.best_epoch}: {result.monitor} {_fmt(result.best_score)}"
        )
    console.print(Panel(grid, title="mediscope fit", title_align="left", expand=False))
    summary = TASKS.get(config.task).summary
    if result.val_metrics:
        console.print(
            Panel(
                metrics_grid(result.val_metrics, summary),
                title="validation, best.ckpt",
                title_align="left",
                expand=False,
            )
        )
    if test_metrics and test_panel:
        console.print(
            Panel(
                metrics_grid(test_metrics, summary),
                title="test, best.ckpt",
                title_align="left",
                expand=False,
            )
        )
    files = Table.grid(padding=(0, 2))
    files.add_column(style="bold")
    files.add_column()
    run = result.run_dir
    kept = "best.ckpt, last.ckpt" + (", epoch=NNN.ckpt" if config.checkpoint.every_n_epochs else "")
    files.add_row("checkpoints", f"{run / 'checkpoints'} ({kept})")
    for label, text in summary.files:
        files.add_row(label, text)
    untested = not test_metrics and result.best_checkpoint is not None
    if untested:
        files.add_row("test", _untested(result))
    files.add_row("config", "config.yaml (resolved), environment.json, split.json")
    if getattr(result, "report", None) is not None:
        files.add_row("report", f"{result.report} (open in a browser)")
    console.print(files)
    if untested:  # on a line of its own, to copy
        extra = "" if getattr(result, "has_test_data", False) else " --set data.test_path=PATH"
        console.print(f"to test it: mediscope test {run}{extra}", soft_wrap=True)
    if run_line:
        console.print(f"run: {run}", soft_wrap=True)


def _untested(result: Any) -> str:
    """Why fit did not evaluate the test data."""
    if getattr(result, "has_test_data", False):
        return "not run (trainer.test_after_fit: false)"
    return "no test data (data.test_path, or test rows in the data)"


def print_metrics(split: str, metrics: dict[str, float], path: Path, task: str) -> None:
    """Metrics of an evaluation of a ``task`` model and where they were written."""
    console = _console()
    n = int(metrics.get("n_samples", metrics.get("n_images", 0)))
    grid = metrics_grid(metrics, TASKS.get(task).summary)
    console.print(Panel(grid, title=f"{split}, {n} images", title_align="left", expand=False))
    console.print(f"metrics: {path}", soft_wrap=True)
    report = path.parent / "report.html"
    if report.is_file():
        console.print(f"report: {report}", soft_wrap=True)


def print_folds_summary(result: Any) -> None:
    """Per-fold metrics, mean ± sd, and where the summary files are."""
    console = _console()
    table = Table(box=None, header_style="bold")
    for column in result.summary.columns:
        table.add_column(str(column), justify="right")
    for _, row in result.summary.iterrows():
        cells = [str(row.iloc[0])] + [f"{float(v):.4f}" for v in row.iloc[1:]]
        table.add_row(*cells)
    console.print(Panel(table, title=f"{len(result.folds)}-fold cross-validation", expand=False))
    console.print(f"summary: {result.run_dir / 'cv_summary.md'}", soft_wrap=True)
    console.print(f"run: {result.run_dir}", soft_wrap=True)
