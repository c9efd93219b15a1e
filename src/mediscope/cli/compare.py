"""``compare``: a comparative study over a grid of config values, and its leaderboard."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from mediscope.study.cluster import RayOptions

SET_HELP = "Override a key of the base config, e.g. --set trainer.max_epochs=80 (repeatable)."
GRID_HELP = (
    "A config key and the values to compare, e.g. --grid model.name=unet,segnet (repeatable; "
    "every combination of the values is one cell)."
)


def compare_command(
    config: Path = typer.Argument(..., help="The base YAML config.", metavar="CONFIG"),
    grid: list[str] | None = typer.Option(None, "--grid", help=GRID_HELP, metavar="KEY=V1,V2"),
    overrides: list[str] | None = typer.Option(None, "--set", help=SET_HELP, metavar="KEY=VALUE"),
    seeds: str | None = typer.Option(
        None,
        "--seeds",
        help="Run every cell once per seed, e.g. 0,1,2; the leaderboard shows mean ± sd.",
        metavar="S1,S2",
    ),
    folds: int | None = typer.Option(
        None,
        "--folds",
        help="Run every cell as k-fold cross-validation; the leaderboard shows mean ± sd.",
        metavar="K",
    ),
    metric: str | None = typer.Option(
        None,
        "--metric",
        help="Rank by this metric of the metrics files (default: the checkpoint monitor's, "
        "e.g. dice_mean).",
    ),
    output: Path | None = typer.Option(
        None, "--output", help="The study folder (default: <run.dir>/<run.name>-study)."
    ),
    backend: str = typer.Option(
        "local",
        "--backend",
        help="local: one run after another in this process; ray: every run as a task on a "
        "Ray cluster (pip install 'mediscope[ray]').",
        metavar="local|ray",
    ),
    address: str | None = typer.Option(
        None,
        "--address",
        help="With --backend ray: the cluster, e.g. auto or HOST:6379 (default: RAY_ADDRESS, "
        "else a new local cluster).",
    ),
    cpus_per_cell: float | None = typer.Option(
        None, "--cpus-per-cell", help="With --backend ray: CPUs per run (default 1).", metavar="N"
    ),
    gpus_per_cell: float | None = typer.Option(
        None, "--gpus-per-cell", help="With --backend ray: GPUs per run (default 0).", metavar="N"
    ),
) -> None:
    """Train every combination of the --grid values under identical conditions (one split,
    seed, epochs and augmentation), evaluate each on the test data (else validation) and
    rank them in leaderboard.md / .csv / .png. Rerunning the command skips finished cells
    and continues unfinished ones. The last line is the study folder."""
    from mediscope.cli import require_training_stack
    from mediscope.config.loader import read_config

    require_training_stack()
    read_config(config, overrides or [])  # a mistake in it is told before torch loads
    from mediscope.study import (
        CellsFailed,
        parse_grid,
        parse_seeds,
        plan_study,
        run_study,
        run_study_on_ray,
    )

    ray = _ray_options(backend, address, cpus_per_cell, gpus_per_cell)
    plan = plan_study(
        config,
        grid=parse_grid(grid or []),
        overrides=overrides or [],
        seeds=parse_seeds(seeds) if seeds is not None else None,
        folds=folds,
        metric=metric,
        output=output,
    )
    console = _console()
    runs = f" × {len(plan.repeats)} runs" if len(plan.repeats) > 1 else ""
    console.print(
        f"study: {len(plan.cells)} cells{runs}, ranked by {plan.metric} on the "
        f"{'test' if plan.has_test else 'validation'} split; folder {plan.folder}",
        soft_wrap=True,
    )

    def show(event: Any) -> None:
        print_event(console, event)

    if ray is None:
        result = run_study(plan, on_event=show)
    else:
        result = run_study_on_ray(plan, ray, on_event=show)
    print_leaderboard(console, result)
    console.print(f"study: {result.folder}", soft_wrap=True)
    if result.failed:
        raise CellsFailed(
            f"{len(result.failed)} of {len(plan.cells)} cells failed "
            f"({', '.join(result.failed)}; see error.txt in their folders)",
            hint="rerun the command to retry them",
        )


def _ray_options(
    backend: str, address: str | None, cpus: float | None, gpus: float | None
) -> RayOptions | None:
    """The Ray options of ``--backend ray`` (checked, Ray imported), else None."""
    from mediscope.errors import ConfigError

    if backend not in ("local", "ray"):
        raise ConfigError(
            f"unknown backend '{backend}'", where="--backend", hint="choose local or ray"
        )
    given = {"--address": address, "--cpus-per-cell": cpus, "--gpus-per-cell": gpus}
    if backend == "local":
        named = [name for name, value in given.items() if value is not None]
        if named:
            raise ConfigError(f"{named[0]} needs --backend ray", where=named[0])
        return None
    from mediscope.study.cluster import RayOptions, import_ray

    options = RayOptions(
        address=address,
        cpus_per_cell=1.0 if cpus is None else cpus,
        gpus_per_cell=0.0 if gpus is None else gpus,
    )
    options.check()
    import_ray()  # not installed: one line before anything is planned
    return options


def _console() -> Console:
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _value(event: Any) -> str:
    from mediscope.reports.leaderboard import fmt_interval, fmt_value

    text = f"{event.metric} {fmt_value(event.value)}"
    if event.interval is not None:
        text += f" {fmt_interval(*event.interval)}"
    return text


def print_event(console: Console, event: Any) -> None:
    """One line per run of a cell: started, finished (its metric), skipped or failed."""
    head = f"cell {event.cell.index}/{event.cells}  {event.cell.describe()}"
    if event.repeats > 1:
        head += f"  {event.repeat.label} ({event.repeat_index}/{event.repeats})"
    if event.kind == "start":
        line = f"{head}  training"
        if event.cell.notes:
            line += f" ({'; '.join(event.cell.notes)})"
    elif event.kind == "queued":
        line = f"{head}  queued on Ray"
    elif event.kind == "skip":
        line = f"{head}  finished earlier: {_value(event)}"
    elif event.kind == "failed":
        line = f"{head}  failed: {event.error}"
    else:
        seconds = f"  ({event.seconds:.1f} s)" if event.seconds is not None else ""
        line = f"{head}  {_value(event)}{seconds}"
    console.print(line, soft_wrap=True)


def print_leaderboard(console: Console, result: Any) -> None:
    """The leaderboard table and where its files are."""
    from mediscope.reports.leaderboard import display_table

    board = result.leaderboard
    headers, rows = display_table(board)
    source = board.split + (f", {board.repeat_kind}" if board.repeat_kind else "")
    table = Table(
        title=f"leaderboard: {board.metric} on {source}",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
    )
    for i, header in enumerate(headers):
        table.add_column(
            header, justify="left" if i <= len(board.grid_keys) else "right", no_wrap=True
        )
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if board.paired is not None:
        from mediscope.reports.leaderboard import paired_note

        console.print(paired_note(board), soft_wrap=True)
    for kind in ("md", "csv", "png"):
        if kind in result.files:
            console.print(f"leaderboard: {result.files[kind]}", soft_wrap=True)
