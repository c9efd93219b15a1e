"""Callbacks: per-epoch seeding, plain-text progress, and a CSV logger that resumes."""

from __future__ import annotations

import csv
import random
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import lightning as L
import numpy as np
import torch
from lightning.fabric.loggers.csv_logs import _ExperimentWriter
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.loggers import CSVLogger


def epoch_seed(seed: int, epoch: int) -> int:
    """A seed that depends only on the run's seed and the epoch."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def seed_all(seed: int) -> None:
    """Seeds Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class EpochSeed(L.Callback):
    """Reseeds every RNG at the first batch of each epoch from (seed, epoch).

    Shuffling and augmentation already depend on (seed, epoch) alone (the sampler and
    the per-sample seeds); this makes the rest (dropout, ...) do so too. A run resumed
    from any epoch's checkpoint then continues exactly as the uninterrupted run would
    have. The first batch, not the epoch start, because on a restart Lightning creates
    the data iterator (which draws from the global RNG) at another moment.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "set_epoch"):
            datamodule.set_epoch(trainer.current_epoch)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx == 0:
            seed_all(epoch_seed(self.seed, trainer.current_epoch))


class ProgressBar(RichProgressBar):
    """Lightning's rich bar showing the loss and main metrics, without the logger version."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


class PlainProgress(L.Callback):
    """One line per epoch, for logs and terminals without live display."""

    def __init__(self, keys: list[str], stream: TextIO | None = None) -> None:
        self.keys = keys
        self.stream = stream or sys.stdout
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        parts = [f"{k} {float(metrics[k]):.4f}" for k in self.keys if k in metrics]
        seconds = time.perf_counter() - self._start
        last = trainer.max_epochs - 1 if trainer.max_epochs is not None else "?"
        line = f"epoch {trainer.current_epoch}/{last}  " + "  ".join(parts) + f"  ({seconds:.1f}s)"
        print(line, file=self.stream, flush=True)


class _ResumingWriter(_ExperimentWriter):
    """Keeps an existing ``metrics.csv`` (rows before ``from_epoch``) and appends to it."""

    def __init__(self, log_dir: str, from_epoch: int | None) -> None:
        self.from_epoch = from_epoch
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        if self.from_epoch is None:
            path.unlink()
            return
        with path.open(newline="") as file:
            reader = csv.DictReader(file)
            header = list(reader.fieldnames or [])
            rows = [r for r in reader if _epoch(r) is not None and _epoch(r) < self.from_epoch]  # type: ignore[operator]
        with path.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = header


def _epoch(row: dict[str, str]) -> int | None:
    try:
        return int(float(row.get("epoch") or ""))
    except ValueError:
        return None


class RunCSVLogger(CSVLogger):
    """Lightning's CSV logger writing ``<run>/metrics.csv``, continued on resume."""

    def __init__(self, run_dir: Path, *, resume_epoch: int | None = None) -> None:
        super().__init__(save_dir=str(run_dir), name="", version="")
        self._resume_epoch = resume_epoch

    @property
    def log_dir(self) -> str:
        return str(self.save_dir)

    @property
    def experiment(self) -> Any:
        if self._experiment is None:
            self._experiment = _ResumingWriter(self.log_dir, self._resume_epoch)
        return self._experiment

    def log_hyperparams(self, params: Any = None) -> None:
        """The resolved config.yaml already records every setting."""
