"""Building Lightning's Trainer from the config."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.accelerators import AcceleratorRegistry
from lightning.pytorch.callbacks import Checkpoint, EarlyStopping, ModelCheckpoint
from lightning.pytorch.callbacks.progress.rich_progress import RichProgressBarTheme

from mediscope.config.loader import locate
from mediscope.config.schema import Config
from mediscope.engine.callbacks import (
    BestCheckpoint,
    EpochSeed,
    LastCheckpoint,
    PlainProgress,
    ProgressBar,
    StopOnNonFiniteLoss,
    WeightEMA,
)
from mediscope.engine.checkpoints import AtomicCheckpointIO
from mediscope.engine.loggers import LogConfig, build_loggers
from mediscope.engine.run_dir import CHECKPOINTS
from mediscope.errors import ConfigError

# Lightning and torch messages that say nothing to a mediscope user.
_QUIET_WARNINGS = (
    ".*does not have many workers.*",
    ".*smaller than the logging interval.*",
    ".*GPU available but not used.*",
    ".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
    ".*Checkpoint directory .* exists and is not empty.*",
    ".*Experiment logs directory .* exists.*",
    ".*The `srun` command is available on your system.*",
    ".*TensorBoard support.*",
    ".*No positive samples in targets.*",  # a validation batch without some class
    ".*No negative samples in targets.*",
    # Epoch metrics are torchmetrics states, which every process already has in full.
    ".*when logging on epoch level in distributed setting.*",
    # model.channels_last converts the images in the task's hook, which is meant.
    ".*overridden `on_after_batch_transfer` in `LightningModule`.*",
)


def quiet_lightning() -> None:
    """Silences Lightning's banner lines and known-harmless warnings."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in _QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def progress_mode(setting: str) -> str:
    """``auto`` → ``rich`` on a terminal, ``plain`` otherwise."""
    if setting != "auto":
        return setting
    return "rich" if sys.stdout.isatty() else "plain"


def checkpoint_callbacks(config: Config, run_dir: Path) -> list[Checkpoint]:
    """``epoch=NNN.ckpt`` every N epochs, ``best.ckpt`` by the monitor, ``last.ckpt``.

    ``last.ckpt`` is written at the end of every epoch whatever ``every_n_epochs`` says,
    so that a killed run loses at most the epoch it was in.
    """
    folder = run_dir / CHECKPOINTS
    cfg = config.checkpoint
    callbacks: list[Checkpoint] = [
        BestCheckpoint(
            dirpath=folder,
            filename="best",
            monitor=cfg.monitor,
            mode=cfg.mode,
            save_top_k=1,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        ),
    ]
    if cfg.every_n_epochs:
        callbacks.append(
            ModelCheckpoint(
                dirpath=folder,
                filename="epoch={epoch:03d}",
                auto_insert_metric_name=False,
                every_n_epochs=cfg.every_n_epochs,
                save_top_k=-1,
                enable_version_counter=False,
            )
        )
    callbacks.append(LastCheckpoint(folder))
    return callbacks


def check_accelerator(config: Config) -> None:
    """Checks that the device ``trainer.accelerator`` names is on this machine.

    Raises:
        ConfigError: naming ``trainer.accelerator`` (its file and line), e.g. for
            ``gpu`` on a machine without CUDA or MPS.
    """
    name = config.trainer.accelerator
    if name in ("auto", "cpu"):
        return
    kinds = ["cuda", "mps"] if name == "gpu" else [name]
    registered = [kind for kind in kinds if kind in AcceleratorRegistry]
    if any(AcceleratorRegistry[kind]["accelerator"].is_available() for kind in registered):
        return
    devices = " or ".join(kind.upper() for kind in kinds)
    raise locate(
        ConfigError(
            f"'{name}' needs a {devices} device, and torch finds none on this machine",
            where="trainer.accelerator",
            hint="use accelerator: cpu or auto",
        ),
        config,
    )


def build_trainer(
    config: Config,
    run_dir: Path,
    *,
    resume_epoch: int | None = None,
    progress_keys: list[str] | None = None,
    extra_callbacks: list[L.Callback] | None = None,
) -> L.Trainer:
    """A Trainer with the run's loggers, checkpoints, seeding and progress display.

    Checkpoints are written atomically (:class:`AtomicCheckpointIO`) and training stops
    at the first NaN or infinite loss (:class:`StopOnNonFiniteLoss`).
    """
    quiet_lightning()
    t = config.trainer
    loggers = build_loggers(config, run_dir, resume_epoch=resume_epoch)
    callbacks: list[L.Callback] = [
        EpochSeed(config.seed),
        StopOnNonFiniteLoss(),
        *checkpoint_callbacks(config, run_dir),
    ]
    if loggers:
        callbacks.append(LogConfig(config))
    if t.ema is not None:
        # Before the extra callbacks: DistributedRun then shares the averaged buffers.
        callbacks.append(WeightEMA(t.ema))
    callbacks.extend(extra_callbacks or [])
    if t.early_stopping is not None:
        stop = t.early_stopping
        callbacks.append(
            EarlyStopping(
                monitor=stop.monitor,
                patience=stop.patience,
                mode=stop.mode,
                min_delta=stop.min_delta,
            )
        )
    mode = progress_mode(config.logging.progress)
    if mode == "rich":
        callbacks.append(ProgressBar(leave=True, theme=RichProgressBarTheme(metrics_format=".4f")))
    elif mode == "plain":
        keys = progress_keys or ["train/loss", "val/loss"]
        callbacks.append(PlainProgress(keys, every=config.logging.progress_every))
    kwargs: dict[str, Any] = {
        "max_epochs": t.max_epochs,
        "accelerator": t.accelerator,
        "devices": t.devices,
        "strategy": t.strategy,
        "num_nodes": t.num_nodes,
        "precision": t.precision,
        "gradient_clip_val": t.gradient_clip_val,
        "gradient_clip_algorithm": t.gradient_clip_algorithm,
        "accumulate_grad_batches": t.accumulate_grad_batches,
        "deterministic": t.deterministic,
        "log_every_n_steps": t.log_every_n_steps,
        "logger": loggers or False,
        "callbacks": callbacks,
        "enable_progress_bar": mode == "rich",
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "default_root_dir": str(run_dir),
        "plugins": [AtomicCheckpointIO()],
        # The data module gives each process its share (EpochSampler): no wrapper.
        "use_distributed_sampler": False,
    }
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        value = getattr(t, key)
        if value is not None:
            kwargs[key] = value
    return L.Trainer(**kwargs)
