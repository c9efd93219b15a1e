"""The importable API behind the command line: fit, validate, test, list_models."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from mediscope.config.loader import dump_config
from mediscope.config.schema import Config
from mediscope.data.datamodule import SPLIT_FILE, MediscopeDataModule
from mediscope.data.samples import SampleSet
from mediscope.engine.checkpoints import (
    checkpoint_epoch,
    checkpoint_meta,
    load_task_weights,
    read_checkpoint,
)
from mediscope.engine.environment import environment_info
from mediscope.engine.loggers import check_loggers
from mediscope.engine.run_dir import (
    BEST,
    CHECKPOINTS,
    LAST,
    check_run_dir,
    create_run_dir,
    remove_leftovers,
    resolve_checkpoint,
    run_dir_of,
    space_needed,
)
from mediscope.engine.trainer import build_trainer, quiet_lightning
from mediscope.errors import (
    CheckpointError,
    ConfigError,
    InterruptedRun,
    MediscopeError,
    NonFiniteLossError,
    RunDirError,
    Terminated,
    TerminatedRun,
)
from mediscope.files import write_json_atomic, write_text_atomic
from mediscope.metrics.classification import classification_report
from mediscope.models.pretrained import load_weights_file
from mediscope.registry import unknown_name_hint
from mediscope.reports.curves import plot_training_curves
from mediscope.tasks import TASKS, BaseTask


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
    split_sizes: dict[str, int] = field(default_factory=dict)
    resumed_from: Path | None = None
    report: Path | None = None


@dataclass
class Evaluation:
    """Predictions of a checkpoint on one split, and their metrics."""

    metrics: dict[str, float]
    labels: np.ndarray
    probs: np.ndarray
    paths: list[str]
    classes: list[str]


def build_task(
    config: Config,
    classes: list[str],
    *,
    class_counts: list[int] | None = None,
    normalization: tuple[list[float], list[float]] | None = None,
) -> BaseTask:
    """The task's LightningModule for ``config``."""
    if config.task not in TASKS:
        raise ConfigError(
            f"task '{config.task}' is not available in this version",
            where="task",
            hint=f"available: {', '.join(TASKS.names())}",
        )
    return TASKS.get(config.task)(
        config=config, classes=classes, class_counts=class_counts, normalization=normalization
    )


def _check_monitors(config: Config, task: BaseTask) -> None:
    names = task.metric_names
    monitors = {"checkpoint.monitor": config.checkpoint.monitor}
    if config.trainer.early_stopping is not None:
        monitors["trainer.early_stopping.monitor"] = config.trainer.early_stopping.monitor
    if config.scheduler.monitor:
        monitors["scheduler.monitor"] = config.scheduler.monitor
    for key, value in monitors.items():
        if value not in names:
            raise ConfigError(
                f"'{value}' is not a metric of the {config.task} task",
                where=key,
                hint=unknown_name_hint(value, names),
            )


def _resume_point(config: Config, resume: str | Path) -> tuple[Path, int]:
    ckpt_path = resolve_checkpoint(resume, base=config.run.dir, name=config.run.name)
    data = read_checkpoint(ckpt_path)
    resume_epoch = int(data.get("epoch", -1)) + 1
    if resume_epoch >= config.trainer.max_epochs:
        raise ConfigError(
            f"the checkpoint already finished epoch {resume_epoch - 1} of "
            f"max_epochs={config.trainer.max_epochs}",
            where=ckpt_path,
            hint=f"raise it, e.g. --set trainer.max_epochs={config.trainer.max_epochs * 2}",
        )
    return ckpt_path, resume_epoch


def fit(
    config: Config,
    *,
    resume: str | Path | None = None,
    weights: str | Path | None = None,
    callbacks: list[L.Callback] | None = None,
    run_dir: Path | None = None,
) -> FitResult:
    """Trains a model as the config says and evaluates its best checkpoint on validation.

    Args:
        config: A validated config.
        resume: ``"last"`` (the newest run of ``run.name``), a run folder or a ``.ckpt``:
            continue that run (weights, optimizer, scheduler, epoch); ``max_epochs`` may
            be raised to train longer.
        weights: A checkpoint or weights file to start from, without its optimizer
            (fine-tuning, possibly on new data with other classes).
        callbacks: Extra Lightning callbacks (timers, custom loggers, ...).
        run_dir: An empty folder to use instead of a new ``runs/<name>/<time>`` one.

    Returns:
        A :class:`FitResult` with the run folder and the best epoch and metrics.

    Raises:
        InterruptedRun: Ctrl-C stopped it (``TerminatedRun``: SIGTERM); ``last.ckpt``
            holds the last finished epoch, from which ``resume`` continues exactly.
        NonFiniteLossError: the training loss became NaN or infinite; the checkpoints of
            the finished epochs are kept.
        RunDirError: the run folder cannot be written, or its disk is (or becomes) full.
    """
    quiet_lightning()
    started = time.perf_counter()
    ckpt_path: Path | None = None
    resume_epoch: int | None = None
    if resume is not None:
        if weights is not None:
            raise ConfigError("--resume and --weights exclude each other", where="command line")
        ckpt_path, resume_epoch = _resume_point(config, resume)
        run_dir = run_dir_of(ckpt_path)
    split_file = run_dir / SPLIT_FILE if run_dir is not None else None

    # Read, split and build everything before creating the run folder, so that bad
    # input leaves nothing behind.
    L.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = MediscopeDataModule(config, split_file=split_file, reuse_split=True)
    task = build_task(
        config,
        datamodule.classes,
        class_counts=datamodule.train_class_counts(),
        normalization=datamodule.normalization_stats(),
    )
    _check_monitors(config, task)
    check_loggers(config)
    if weights is not None:
        load_weights_file(task.model, Path(weights))

    created = run_dir is None
    run_dir = _prepare_run_dir(config, run_dir, need_bytes=space_needed(_state_bytes(task)))
    try:
        trainer = _train(
            config, task, datamodule, run_dir, ckpt_path, resume_epoch, callbacks, created
        )
    except BaseException:
        # A new run folder in which no epoch finished holds nothing to resume or read:
        # a stop or an error before the first checkpoint leaves nothing behind.
        if created and not (run_dir / CHECKPOINTS / LAST).is_file():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    try:
        return _finish_fit(config, run_dir, trainer, datamodule, started, ckpt_path)
    except KeyboardInterrupt as exc:
        raise _evaluation_interrupted(run_dir, exc) from None


def _train(
    config: Config,
    task: BaseTask,
    datamodule: MediscopeDataModule,
    run_dir: Path,
    ckpt_path: Path | None,
    resume_epoch: int | None,
    callbacks: list[L.Callback] | None,
    created: bool,
) -> L.Trainer:
    """Writes the run's records and trains; turns stops and NaN losses into one-liners."""
    write_text_atomic(run_dir / "config.yaml", dump_config(config))
    write_json_atomic(run_dir / "environment.json", environment_info(config.seed))
    if resume_epoch is None or not (run_dir / SPLIT_FILE).is_file():
        datamodule.write_split(run_dir / SPLIT_FILE)
    trainer = build_trainer(
        config,
        run_dir,
        resume_epoch=resume_epoch,
        progress_keys=["train/loss", "val/loss", config.checkpoint.monitor],
        extra_callbacks=callbacks,
    )
    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except NonFiniteLossError as exc:
        raise _non_finite(exc, config, run_dir, created=created) from None
    except MediscopeError:
        raise
    except BaseException as exc:
        # Lightning turns Ctrl-C into a graceful shutdown and sys.exit(1), and SIGTERM
        # into a SystemExit at the next step.
        by = _stopped_by(exc, trainer)
        if by is None:
            raise
        raise _interrupted(run_dir, trainer, by, created=created) from None
    if trainer.interrupted:
        by = "SIGTERM" if trainer.received_sigterm else "Ctrl-C"
        raise _interrupted(run_dir, trainer, by, created=created)
    return trainer


def _state_bytes(task: BaseTask) -> int:
    """Bytes of the task's weights and buffers (one copy, as a checkpoint holds them)."""
    tensors = [*task.parameters(), *task.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _prepare_run_dir(config: Config, run_dir: Path | None, *, need_bytes: int) -> Path:
    """A new run folder, or the given one (resumed or chosen), checked to be writable."""
    if run_dir is None:
        return create_run_dir(config.run.dir, config.run.name, need_bytes=need_bytes)
    try:
        (run_dir / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(
            f"cannot create the run folder ({exc.strerror or exc})",
            where=run_dir,
            hint="check its permissions, or choose another folder",
        ) from None
    check_run_dir(run_dir, need_bytes=need_bytes)
    remove_leftovers(run_dir)  # temporary files of a killed run
    return run_dir


def _stopped_by(exc: BaseException, trainer: L.Trainer) -> str | None:
    """``SIGTERM`` or ``Ctrl-C`` when ``exc`` ends a stopped training, else None."""
    if isinstance(exc, Terminated) or trainer.received_sigterm:
        return "SIGTERM"
    if isinstance(exc, KeyboardInterrupt | SystemExit) and trainer.interrupted:
        return "Ctrl-C"
    return None


def _interrupted(run_dir: Path, trainer: L.Trainer, by: str, *, created: bool) -> InterruptedRun:
    """The one-line error of a stopped training: where the run is, what it holds."""
    kind = TerminatedRun if by == "SIGTERM" else InterruptedRun
    done = checkpoint_epoch(run_dir / CHECKPOINTS / LAST)
    stopped = f"training stopped by {by} in epoch {trainer.current_epoch}"
    if done is None:
        gone = ", and the new run folder was removed" if created else ""
        error = kind(
            f"{stopped}, before any epoch finished: there is no checkpoint to resume{gone}",
            where=None if created else run_dir,
            hint="start the run again",
        )
    else:
        error = kind(
            f"{stopped}; checkpoints/{LAST} holds epoch {done}, the last finished one",
            where=run_dir,
            hint=f"continue with --resume {run_dir}",
        )
        error.resumable = True
    error.run_dir = run_dir
    return error


def _non_finite(
    exc: NonFiniteLossError, config: Config, run_dir: Path, *, created: bool
) -> NonFiniteLossError:
    """The NaN-loss error with the last good checkpoint and what to change."""
    last = run_dir / CHECKPOINTS / LAST
    done = checkpoint_epoch(last)
    remedy = (
        f"lower optimizer.lr (now {config.optimizer.lr:g}), set trainer.gradient_clip_val "
        "or check the data for NaN values"
    )
    if done is None:
        gone = " (the new run folder was removed)" if created else ""
        error = NonFiniteLossError(
            f"{exc.message}; no epoch had finished, so there is no checkpoint{gone}",
            hint=f"{remedy}, and start again",
        )
    else:
        error = NonFiniteLossError(
            f"{exc.message}; the last good checkpoint is {last} (epoch {done})",
            hint=f"{remedy}; then start again, or from these weights with --weights {last}",
        )
    error.epoch, error.step, error.batch = exc.epoch, exc.step, exc.batch
    return error


def _evaluation_interrupted(run_dir: Path, exc: KeyboardInterrupt) -> InterruptedRun:
    kind = TerminatedRun if isinstance(exc, Terminated) else InterruptedRun
    by = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
    error = kind(
        f"training finished, but its evaluation was stopped by {by}",
        where=run_dir,
        hint=f"evaluate the best checkpoint with 'mediscope validate CONFIG --checkpoint "
        f"{run_dir / CHECKPOINTS / BEST}'",
    )
    error.run_dir = run_dir
    return error


def _finish_fit(
    config: Config,
    run_dir: Path,
    trainer: L.Trainer,
    datamodule: MediscopeDataModule,
    started: float,
    ckpt_path: Path | None,
) -> FitResult:
    """Training curves, the best checkpoint's validation metrics and the report."""
    plot_training_curves(
        run_dir / "metrics.csv",
        run_dir / "plots" / "training_curves.png",
        metric=config.checkpoint.monitor,
    )
    best = run_dir / CHECKPOINTS / BEST
    best_path = best if best.is_file() else None
    best_epoch, best_score = _best_of(best_path, config.checkpoint.monitor)
    val_metrics: dict[str, float] = {}
    if best_path is not None:
        val_metrics = evaluate_and_write(
            config, best_path, split="val", out_dir=run_dir, datamodule=datamodule
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
        split_sizes=datamodule.split_sizes(),
        resumed_from=ckpt_path,
        report=report,
    )


def write_run_report(config: Config, run_dir: Path) -> Path | None:
    """Writes ``report.html`` in ``run_dir`` unless ``report.html`` is off in the config."""
    if not config.report.html or not (run_dir / "config.yaml").is_file():
        return None
    from mediscope.reports.html import write_report

    return write_report(run_dir)


def _best_of(best: Path | None, monitor: str) -> tuple[int | None, float | None]:
    if best is None:
        return None, None
    data = read_checkpoint(best)
    for state in data.get("callbacks", {}).values():
        if isinstance(state, dict) and state.get("monitor") == monitor:
            score = state.get("best_model_score")
            value = float(score) if score is not None else None
            return int(data.get("epoch", -1)), value
    return int(data.get("epoch", -1)), None


@torch.inference_mode()
def predict_probs(task: BaseTask, loader: DataLoader[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and class probabilities over a loader, in loader order."""
    task.eval()
    labels, probs = [], []
    for images, targets in loader:
        probs.append(task.model(images.to(task.device)).softmax(dim=1).float().cpu().numpy())
        labels.append(targets.cpu().numpy())
    return np.concatenate(labels), np.concatenate(probs)


def task_from_checkpoint(
    config: Config, checkpoint: Path
) -> tuple[BaseTask, tuple[list[float], list[float]] | None]:
    """The config's task with the checkpoint's classes and weights, and its input stats."""
    data = read_checkpoint(checkpoint)
    meta = checkpoint_meta(data)
    stats = meta.get("normalization")
    normalization = (list(stats[0]), list(stats[1])) if stats else None
    task = build_task(
        config,
        list(meta["classes"]),
        class_counts=meta.get("class_counts"),  # class-weighted losses hold buffers
        normalization=normalization,
    )
    load_task_weights(task, data, checkpoint)
    task.eval()
    return task, normalization


def split_samples(
    config: Config,
    checkpoint: Path,
    classes: list[str],
    *,
    split: str,
    stats: tuple[list[float], list[float]] | None,
    datamodule: MediscopeDataModule | None = None,
) -> tuple[MediscopeDataModule, SampleSet]:
    """The data module and the samples of the ``val`` (the run's split) or ``test`` split."""
    if datamodule is None:
        run_dir = run_dir_of(checkpoint)
        split_file = run_dir / SPLIT_FILE if run_dir is not None else None
        datamodule = MediscopeDataModule(
            config, split_file=split_file, reuse_split=True, stats=stats
        )
    if split != "val":
        return datamodule, datamodule.test_set(classes)
    if datamodule.classes != classes:
        raise CheckpointError(
            f"the checkpoint's classes {classes} differ from the data's {datamodule.classes}",
            where=checkpoint,
        )
    datamodule.prepare_samples()
    assert datamodule.val_set is not None
    return datamodule, datamodule.val_set


@dataclass
class EvaluationInputs:
    """What evaluating a checkpoint on a split starts from."""

    task: BaseTask
    datamodule: MediscopeDataModule
    samples: SampleSet
    dataset: Any
    mean: list[float]
    std: list[float]


def evaluation_inputs(
    config: Config,
    checkpoint: Path,
    *,
    split: str,
    datamodule: MediscopeDataModule | None = None,
) -> EvaluationInputs:
    """The checkpoint's task, the split's samples and their unaugmented dataset."""
    quiet_lightning()
    task, stats = task_from_checkpoint(config, checkpoint)
    datamodule, samples = split_samples(
        config, checkpoint, task.classes, split=split, stats=stats, datamodule=datamodule
    )
    mean, std = datamodule.normalization_stats()
    dataset = datamodule.dataset(samples, train=False)
    return EvaluationInputs(task, datamodule, samples, dataset, mean, std)


def evaluate_and_write(
    config: Config,
    checkpoint: Path,
    *,
    split: str,
    out_dir: Path,
    datamodule: MediscopeDataModule | None = None,
) -> dict[str, float]:
    """Evaluates ``checkpoint`` on a split and writes ``<split>_metrics.json`` and plots."""
    if config.task == "segmentation":
        from mediscope.engine.segmentation_eval import evaluate_segmentation

        return evaluate_segmentation(
            config, checkpoint, split=split, out_dir=out_dir, datamodule=datamodule
        )
    if config.task == "detection":
        from mediscope.engine.detection_eval import evaluate_detection

        return evaluate_detection(
            config, checkpoint, split=split, out_dir=out_dir, datamodule=datamodule
        )
    from mediscope.engine.classification_eval import evaluate_classification

    return evaluate_classification(
        config, checkpoint, split=split, out_dir=out_dir, datamodule=datamodule
    )


def evaluate_checkpoint(
    config: Config,
    checkpoint: Path,
    *,
    split: str,
    datamodule: MediscopeDataModule | None = None,
) -> Evaluation:
    """Predictions and metrics of ``checkpoint`` on the ``val`` or ``test`` split."""
    quiet_lightning()
    task, stats = task_from_checkpoint(config, checkpoint)
    classes = task.classes
    datamodule, samples = split_samples(
        config, checkpoint, classes, split=split, stats=stats, datamodule=datamodule
    )
    loader = datamodule.loader(datamodule.dataset(samples, train=False), train=False)
    labels, probs = predict_probs(task, loader)
    metrics = classification_report(labels, probs, classes)
    metrics["epoch"] = float(read_checkpoint(checkpoint).get("epoch", -1))
    return Evaluation(metrics, labels, probs, samples.ids(), classes)


def _output_dir(checkpoint: Path) -> Path:
    return run_dir_of(checkpoint) or checkpoint.resolve().parent


def test(config: Config, checkpoint: str | Path) -> tuple[dict[str, float], Path]:
    """Evaluates ``checkpoint`` on the test data; writes ``test_metrics.json`` and plots.

    The test data is ``data.test_path``, or the rows the data marks as test.

    Returns:
        The metrics and the path of the JSON file (in the checkpoint's run folder).
    """
    path = Path(checkpoint)
    out = _output_dir(path)
    metrics = evaluate_and_write(config, path, split="test", out_dir=out)
    write_run_report(config, out)
    return metrics, out / "test_metrics.json"


def validate(config: Config, checkpoint: str | Path) -> tuple[dict[str, float], Path]:
    """Evaluates ``checkpoint`` on the run's validation split; writes ``val_metrics.json``."""
    path = Path(checkpoint)
    out = _output_dir(path)
    metrics = evaluate_and_write(config, path, split="val", out_dir=out)
    write_run_report(config, out)
    return metrics, out / "val_metrics.json"


def list_models(task: str | None = None) -> list[str]:
    """Registered model names (``timm:<name>`` works for any timm classifier too)."""
    from mediscope.models import model_names

    return model_names(task)


__all__ = ["Evaluation", "FitResult", "fit", "list_models", "test", "validate"]
