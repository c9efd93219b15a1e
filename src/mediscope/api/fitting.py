"""``fit``: train, then evaluate the best checkpoint on validation (and on the test data
when there is any) and write the report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L

from mediscope.api.evaluate import evaluate_and_write, write_run_report
from mediscope.config.schema import Config
from mediscope.engine.run_dir import BEST, CHECKPOINTS
from mediscope.engine.training import Trained, best_of, evaluation_interrupted, train
from mediscope.reports.curves import plot_training_curves
from mediscope.tasks.validate import validate


@dataclass
class FitResult:
    """What a fit produced."""

    run_dir: Path
    monitor: str
    best_checkpoint: Path | None
    best_epoch: int | None
    best_score: float | None
    epochs_run: int
    seconds: float
    val_metrics: dict[str, float] = field(default_factory=dict)
    #: The best checkpoint's metrics on the test data (empty when it was not tested).
    test_metrics: dict[str, float] = field(default_factory=dict)
    #: Whether the config has test data (``data.test_path`` or test rows).
    has_test_data: bool = False
    split_sizes: dict[str, int] = field(default_factory=dict)
    resumed_from: Path | None = None
    report: Path | None = None


def fit(
    config: Config,
    *,
    resume: str | Path | None = None,
    weights: str | Path | None = None,
    callbacks: list[L.Callback] | None = None,
    run_dir: Path | None = None,
    test: bool | None = None,
) -> FitResult:
    """Trains a model as the config says and evaluates its best checkpoint on validation,
    then on the test data when there is any (``data.test_path`` or the data's test rows),
    writing ``test_metrics.json`` and the plots as :func:`mediscope.api.test` does.

    Args:
        config: A validated config.
        resume: ``"last"`` (the newest run of ``run.name``), a run folder or a ``.ckpt``:
            continue that run (weights, optimizer, scheduler, epoch); ``max_epochs`` may
            be raised to train longer.
        weights: A checkpoint or weights file to start from, without its optimizer
            (fine-tuning, possibly on new data with other classes).
        callbacks: Extra Lightning callbacks (timers, custom loggers, ...).
        run_dir: An empty folder to use instead of a new ``runs/<name>/<time>`` one.
        test: Evaluate on the test data at the end; default ``trainer.test_after_fit``.

    Returns:
        A :class:`FitResult` with the run folder and the best epoch and metrics.

    Raises:
        InterruptedRun: Ctrl-C stopped it (``TerminatedRun``: SIGTERM); ``last.ckpt``
            holds the last finished epoch, from which ``resume`` continues exactly.
        NonFiniteLossError: the training loss became NaN or infinite; the checkpoints of
            the finished epochs are kept.
        RunDirError: the run folder cannot be written, or its disk is (or becomes) full.
    """
    validate(config)
    started = time.perf_counter()
    run_test = config.trainer.test_after_fit if test is None else test
    trained = train(
        config,
        resume=resume,
        weights=weights,
        callbacks=callbacks,
        run_dir=run_dir,
        read_test=run_test,
    )
    if not trained.trainer.is_global_zero:
        # Another process of a DDP run: process 0 evaluates and reports, alone, on every
        # sample (the bootstrap, per-sample files and plots need them all in one place).
        return FitResult(
            run_dir=trained.run_dir,
            monitor=config.checkpoint.monitor,
            best_checkpoint=None,
            best_epoch=None,
            best_score=None,
            epochs_run=trained.trainer.current_epoch,
            seconds=time.perf_counter() - started,
            resumed_from=trained.resumed_from,
        )
    try:
        return _finish_fit(config, trained, started, run_test=run_test)
    except KeyboardInterrupt as exc:
        raise evaluation_interrupted(trained.run_dir, exc) from None


def _finish_fit(config: Config, trained: Trained, started: float, *, run_test: bool) -> FitResult:
    """Training curves, the best checkpoint's validation (and test) metrics and the report."""
    run_dir, trainer, datamodule = trained.run_dir, trained.trainer, trained.datamodule
    plot_training_curves(
        run_dir / "metrics.csv",
        run_dir / "plots" / "training_curves.png",
        metric=config.checkpoint.monitor,
    )
    best = run_dir / CHECKPOINTS / BEST
    best_path = best if best.is_file() else None
    best_epoch, best_score = best_of(best_path, config.checkpoint.monitor)
    val_metrics: dict[str, float] = {}
    if best_path is not None:
        val_metrics = evaluate_and_write(
            config, best_path, split="val", out_dir=run_dir, datamodule=datamodule
        )
    has_test_data = datamodule.has_test_data()
    test_metrics: dict[str, float] = {}
    if best_path is not None and run_test and has_test_data:
        test_metrics = evaluate_and_write(
            config, best_path, split="test", out_dir=run_dir, datamodule=datamodule
        )
    report = write_run_report(config, run_dir)
    return FitResult(
        run_dir=run_dir,
        monitor=config.checkpoint.monitor,
        best_checkpoint=best_path,
        best_epoch=best_epoch,
        best_score=best_score,
        epochs_run=trainer.current_epoch,
        seconds=time.perf_counter() - started,
        val_metrics=val_metrics,
        test_metrics=test_metrics,
        has_test_data=has_test_data,
        split_sizes=datamodule.split_sizes(),
        resumed_from=trained.resumed_from,
        report=report,
    )
