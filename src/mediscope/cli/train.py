"""``fit``, ``validate`` and ``test``."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from mediscope.errors import ConfigError, InterruptedRun

SET_HELP = "Override a config key, e.g. --set optimizer.lr=0.001 (repeatable)."


def fit_command(
    config: Path = typer.Argument(..., help="The YAML config file.", metavar="CONFIG"),
    overrides: list[str] | None = typer.Option(None, "--set", help=SET_HELP, metavar="KEY=VALUE"),
    resume: str | None = typer.Option(
        None,
        "--resume",
        help="Continue a run: 'last' (newest run of run.name), a run folder or a .ckpt.",
        metavar="last|PATH",
    ),
    weights: Path | None = typer.Option(
        None, "--weights", help="Start from these weights, without their optimizer state."
    ),
    folds: int | None = typer.Option(
        None, "--folds", help="k-fold cross-validation: one sub-run per fold, then a summary."
    ),
) -> None:
    """Train a model as CONFIG says; prints the run folder as its last line."""
    from mediscope.cli import require_training_stack
    from mediscope.tasks.validate import load_config

    require_training_stack()
    cfg = load_config(config, overrides or [])  # a mistake is told before torch loads
    from mediscope.cli.output import print_fit_summary, print_folds_summary

    try:
        if folds is not None:
            from mediscope.api.folds import fit_folds

            if weights is not None:
                raise ConfigError("--folds and --weights exclude each other", where="command line")
            print_folds_summary(fit_folds(cfg, folds, resume=resume))
            return
        from mediscope.api import fit

        result = fit(cfg, resume=resume, weights=weights)
    except InterruptedRun as exc:
        _add_commands(exc, config, overrides or [], folds)
        raise
    from mediscope.engine.distributed import is_launch_zero

    if is_launch_zero():  # one summary for a DDP run, by the process that wrote it
        print_fit_summary(result, cfg)


def _add_commands(
    exc: InterruptedRun, config: Path, overrides: list[str], folds: int | None
) -> None:
    """Puts the full command that continues (or evaluates) the run into the hint."""
    if exc.run_dir is None:
        return
    base = ["mediscope", "fit", str(config)]
    for item in overrides:
        base += ["--set", item]
    if exc.resumable:
        target = exc.run_dir.parent if folds is not None else exc.run_dir
        extra = ["--folds", str(folds)] if folds is not None else []
        exc.hint = f"continue with: {shlex.join([*base, *extra, '--resume', str(target)])}"
    elif exc.hint and "CONFIG" in exc.hint:
        exc.hint = exc.hint.replace("CONFIG", shlex.quote(str(config)))


#: The first argument of validate and test.
SOURCE_HELP = "A run folder (its config.yaml and best.ckpt), or a config file with --checkpoint."


def _evaluate(
    split: str, source: Path, checkpoint: Path | None, overrides: list[str] | None
) -> None:
    """Evaluates the checkpoint of ``source`` on ``split`` and prints its metrics."""
    from mediscope import api
    from mediscope.cli.output import print_metrics
    from mediscope.engine.run_dir import run_source
    from mediscope.tasks.validate import load_config

    config_file, ckpt = run_source(source, checkpoint)
    cfg = load_config(config_file, overrides or [])
    evaluate = api.validate if split == "val" else api.test
    metrics, path = evaluate(cfg, ckpt)
    print_metrics("validation" if split == "val" else "test", metrics, path, cfg.task)


def validate_command(
    source: Path = typer.Argument(..., help=SOURCE_HELP, metavar="RUN_DIR|CONFIG"),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="A .ckpt; default: the run folder's best.ckpt."
    ),
    overrides: list[str] | None = typer.Option(None, "--set", help=SET_HELP, metavar="KEY=VALUE"),
) -> None:
    """Evaluate a checkpoint on its run's validation split (val_metrics.json, plots and
    report.html in the run folder)."""
    _evaluate("val", source, checkpoint, overrides)


def test_command(
    source: Path = typer.Argument(..., help=SOURCE_HELP, metavar="RUN_DIR|CONFIG"),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="A .ckpt; default: the run folder's best.ckpt."
    ),
    overrides: list[str] | None = typer.Option(None, "--set", help=SET_HELP, metavar="KEY=VALUE"),
) -> None:
    """Evaluate a checkpoint on data.test_path or the data's test split (test_metrics.json,
    plots and report.html in the run folder); e.g. mediscope test RUN_DIR --set
    data.test_path=PATH for a run trained without test data."""
    _evaluate("test", source, checkpoint, overrides)


def register(app: typer.Typer) -> None:
    """Adds the training verbs to ``app``."""
    app.command("fit")(fit_command)
    app.command("validate")(validate_command)
    app.command("test")(test_command)
