"""``mediscope demo``: the embedded end-to-end example."""

from __future__ import annotations

from pathlib import Path

import typer


def demo_command(
    runs: Path = typer.Option(Path("runs"), "--runs", help="Where the run folder goes."),
    cache: Path | None = typer.Option(
        None, "--cache", help="Where the synthetic data is kept (default: the user cache)."
    ),
    epochs: int | None = typer.Option(None, "--epochs", help="Override the epochs."),
) -> None:
    """Generate synthetic Gram-stain crops (once), train a classifier, test it."""
    from mediscope.cli.output import print_fit_summary, print_metrics
    from mediscope.demo import run_demo

    def summary(fit_result: object, config: object) -> None:
        print_fit_summary(fit_result, config, run_line=False)

    result = run_demo(runs=runs, cache=cache, epochs=epochs, on_fit=summary)
    print_metrics("test (held-out synthetic crops)", result.test_metrics, result.test_metrics_path)
    print(f"run: {result.fit.run_dir}")
