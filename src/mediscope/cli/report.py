"""``report``: the HTML report of a run folder."""

from __future__ import annotations

from pathlib import Path

import typer


def report_command(
    run_dir: Path = typer.Argument(
        ..., help="A run folder (or a cross-validation folder).", metavar="RUN_DIR"
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Where to write the HTML (default RUN_DIR/report.html)."
    ),
) -> None:
    """Write RUN_DIR/report.html: config, curves, metrics with 95 % CIs, plots, galleries.

    One self-contained file (images inlined). fit, validate and test write it too.
    """
    from mediscope.reports.html import write_report

    path = write_report(run_dir, output)
    print(f"report: {path}")
