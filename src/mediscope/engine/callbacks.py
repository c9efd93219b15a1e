"""Callbacks: per-epoch seeding, plain-text progress, checkpoints that survive a kill,
a stop on a NaN loss, a CSV logger that resumes and a moving average of the weights."""

from __future__ import annotations

import csv
import io
import math
import os
import random
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import lightning as L
import numpy as np
import torch
from lightning.fabric.loggers.csv_logs import _ExperimentWriter
from lightning.pytorch.callbacks import (
    Checkpoint,
    ModelCheckpoint,
    RichProgressBar,
    WeightAveraging,
)
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment

from mediscope.errors import NonFiniteLossError
from mediscope.files import write_text_atomic


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
    """Plain lines for logs, pipes and terminals without live display (SLURM, nohup, CI).

    A line at the end of each epoch (the epoch's metrics and seconds) and, within an epoch,
    a line at most every ``every`` seconds, or every N % of the epoch when ``every`` is
    ``"N%"``: the batches done of all, the epoch's mean training loss so far, images per
    second and the time the rest of the phase should take (ETA)::

        epoch 3/9  train batch 120/800 (15%)  loss 0.4321  38.2 images/s  ETA 4m48s

    Validation batches get the same lines (without the loss). No line comes within an
    epoch shorter than the interval, and none for its last batch (the epoch's line follows).

    Args:
        keys: Metrics of the epoch's line, when logged.
        stream: Where the lines go (default: standard output).
        every: Seconds (0: only the epoch lines) or ``"N%"`` of an epoch; see
            ``logging.progress_every``.
        clock: Seconds of a monotonic clock (tests give a fake one).
    """

    def __init__(
        self,
        keys: list[str],
        stream: TextIO | None = None,
        *,
        every: float | str = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = keys
        self.stream = stream or sys.stdout
        self.clock = clock
        self.seconds = 0.0 if isinstance(every, str) else float(every)
        self.share = float(every.rstrip("%")) / 100 if isinstance(every, str) else 0.0
        self._start = 0.0
        self._phase = _Phase(clock(), self.share)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self.clock()
        self._phase = _Phase(self._start, self.share)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._phase = _Phase(self.clock(), self.share)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._phase.add_loss(loss)
        self._tick(trainer, "train", batch_idx, trainer.num_training_batches, batch)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking:
            return
        totals = trainer.num_val_batches
        total = totals[dataloader_idx] if dataloader_idx < len(totals) else math.inf
        self._tick(trainer, "validation", batch_idx, total, batch)

    def _tick(
        self, trainer: L.Trainer, phase: str, batch_idx: int, total: float, batch: Any
    ) -> None:
        state = self._phase
        done = batch_idx + 1
        state.images += batch_images(batch)
        if done >= total or not (self.seconds or self.share) or not trainer.is_global_zero:
            return
        now = self.clock()
        due_time = self.seconds > 0 and now - state.last >= self.seconds
        due_share = self.share > 0 and math.isfinite(total) and done >= state.next_share * total
        if not (due_time or due_share):
            return
        state.last = now
        while self.share and state.next_share * total <= done:
            state.next_share += self.share
        line = self._line(trainer, phase, done, total, now - state.start)
        print(line, file=self.stream, flush=True)

    def _line(self, trainer: L.Trainer, phase: str, done: int, total: float, elapsed: float) -> str:
        state = self._phase
        parts = [f"epoch {trainer.current_epoch}/{_last_epoch(trainer)}"]
        if math.isfinite(total):
            parts.append(f"{phase} batch {done}/{int(total)} ({done / total:.0%})")
        else:
            parts.append(f"{phase} batch {done}")
        loss = state.mean_loss()
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if state.images and elapsed > 0:
            parts.append(f"{state.images / elapsed:.1f} images/s")
        if math.isfinite(total) and elapsed > 0:
            parts.append(f"ETA {duration((total - done) * elapsed / done)}")
        return "  ".join(parts)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:  # one line per epoch, not one per process
            return
        metrics = trainer.callback_metrics
        parts = [f"{k} {float(metrics[k]):.4f}" for k in self.keys if k in metrics]
        seconds = self.clock() - self._start
        line = (
            f"epoch {trainer.current_epoch}/{_last_epoch(trainer)}  "
            + "  ".join(parts)
            + f"  ({seconds:.1f}s)"
        )
        print(line, file=self.stream, flush=True)


class _Phase:
    """What :class:`PlainProgress` counts within one training or validation epoch."""

    def __init__(self, start: float, share: float) -> None:
        self.start = start
        self.last = start
        self.next_share = share  # the share of the phase done at which the next line is due
        self.images = 0
        self._loss_sum: torch.Tensor | None = None
        self._losses = 0

    def add_loss(self, loss: torch.Tensor) -> None:
        # Summed on the loss's device: no synchronisation with a GPU at every step.
        value = loss.detach().float().sum()
        self._loss_sum = value if self._loss_sum is None else self._loss_sum + value
        self._losses += 1

    def mean_loss(self) -> float | None:
        if self._loss_sum is None or not self._losses:
            return None
        return float(self._loss_sum) / self._losses


def _last_epoch(trainer: L.Trainer) -> int | str:
    return trainer.max_epochs - 1 if trainer.max_epochs is not None else "?"


def batch_images(batch: Any) -> int:
    """Images in a batch: the first dimension of its images (a tensor, or the first item
    of a tuple or list), or the length of a list of images; 0 when unknown."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 0
    if isinstance(batch, dict):
        batch = next(iter(batch.values()), None)
        return batch_images(batch) if isinstance(batch, torch.Tensor) else 0
    if isinstance(batch, list | tuple) and batch:
        first = batch[0]
        if isinstance(first, torch.Tensor):
            return int(first.shape[0]) if first.ndim else 0
        if isinstance(first, list | tuple):
            return len(first)
    return 0


def duration(seconds: float) -> str:
    """A short duration: ``45s``, ``4m12s``, ``2h05m``.

    Examples:
        >>> duration(44.6), duration(252), duration(7500)
        ('45s', '4m12s', '2h05m')
    """
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def flush_csv_loggers(trainer: L.Trainer) -> None:
    """Writes the rows the CSV loggers hold in memory to their files."""
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            logger.save()


class LastCheckpoint(Checkpoint):
    """``last.ckpt``: the state at the end of the last finished epoch, kept in step with
    ``metrics.csv``.

    The state is saved where Lightning's ModelCheckpoint saves it (at the end of the
    training epoch, after its validation) but into a hidden pending file. It becomes
    ``last.ckpt`` (a rename) only once the epoch's rows are in ``metrics.csv``: at the
    start of the next epoch, at the end of training, or when training stops after the
    epoch is complete. So after a kill at any moment ``last.ckpt`` is the last finished
    epoch and ``metrics.csv`` has every row of it, and ``--resume`` continues exactly as
    if nothing happened (the rows of later epochs are dropped and trained again).
    Interrupted or failed epochs never reach ``last.ckpt``.
    """

    PENDING = ".last.ckpt.pending"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "last.ckpt"
        self.pending = folder / self.PENDING
        self._pending_epoch: int | None = None

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"

    def _stage(self, trainer: L.Trainer) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        trainer.save_checkpoint(self.pending)
        self._pending_epoch = trainer.current_epoch

    def _promote(self, trainer: L.Trainer) -> None:
        if self._pending_epoch is None:
            return
        if trainer.is_global_zero:
            flush_csv_loggers(trainer)
            os.replace(self.pending, self.path)
        self._pending_epoch = None

    def _discard(self, trainer: L.Trainer) -> None:
        if trainer.is_global_zero:
            self.pending.unlink(missing_ok=True)
        self._pending_epoch = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stage(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._promote(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._promote(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # A stop between the epoch's end and the next epoch's start (SIGTERM is acted on
        # there) keeps the finished epoch; a stop within an epoch drops its state.
        done = trainer.fit_loop.epoch_progress.current.completed
        try:
            if self._pending_epoch is not None and done > self._pending_epoch:
                self._promote(trainer)
            else:
                self._discard(trainer)
        except OSError:
            self._discard(trainer)


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint for ``best.ckpt`` that never picks a NaN or infinite
    score (Lightning ranks NaN as the worst score, yet saves it when nothing is saved)."""

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        if current is not None and not bool(torch.isfinite(torch.as_tensor(current)).all()):
            return False
        return super().check_monitor_top_k(trainer, current)

    @property
    def state_key(self) -> str:
        # The plain ModelCheckpoint's key, so runs saved before this class still resume.
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)


class StopOnNonFiniteLoss(L.Callback):
    """Stops training at the first NaN or infinite training loss, before its backward pass.

    The weights are never updated with the bad loss, no checkpoint is written from that
    state, and the error names the epoch, the global step and the batch of the epoch
    (all counted from 0).
    """

    def __init__(self) -> None:
        self._batch = 0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch = batch_idx

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        own = bool(torch.isfinite(loss.detach()).all())
        finite = own
        if trainer.world_size > 1:  # every process stops, or none: DDP steps in lockstep
            finite = not trainer.strategy.reduce_boolean_decision(not own, all=False)
        if finite:
            return
        value = float(loss.detach().float().reshape(-1)[0])
        name = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        if own:
            name = "nan or infinite in another process"
        epoch, step = trainer.current_epoch, trainer.global_step
        error = NonFiniteLossError(
            f"training loss is {name} at epoch {epoch}, step {step} "
            f"(batch {self._batch} of epoch {epoch})"
        )
        error.epoch, error.step, error.batch = epoch, step, self._batch
        raise error


class _ResumingWriter(_ExperimentWriter):
    """Keeps an existing ``metrics.csv`` (rows before ``from_epoch``) and appends to it.

    Every save rewrites the file atomically (it holds a few rows per epoch), so a kill
    never leaves a truncated row or a file cut short while Lightning rewrites its header.
    """

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
        header, rows = _read_rows(path)
        kept = [r for r in rows if (e := _epoch(r)) is not None and e < self.from_epoch]
        write_text_atomic(path, _csv_text(header, kept))
        self.metrics_keys = header

    def save(self) -> None:
        """Writes the rows logged since the last save (the whole file, atomically)."""
        if not self.metrics:
            return
        self._record_new_keys()
        path = Path(self.metrics_file_path)
        _, rows = _read_rows(path) if path.is_file() else ([], [])
        write_text_atomic(path, _csv_text(self.metrics_keys, [*rows, *self.metrics]))
        self.metrics = []


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The header and the complete rows of a CSV file (a row cut short is dropped)."""
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        header = list(reader.fieldnames or [])
        rows = [r for r in reader if None not in r.values() and None not in r]
    return header, rows


def _csv_text(header: list[str], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


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
    @rank_zero_experiment  # other processes of a DDP run write nothing
    def experiment(self) -> Any:
        if self._experiment is None:
            self._experiment = _ResumingWriter(self.log_dir, self._resume_epoch)
        return self._experiment

    def log_hyperparams(self, params: Any = None) -> None:
        """The resolved config.yaml already records every setting."""


def ema_update(average: torch.Tensor, current: torch.Tensor, updates: Any, *, decay: float) -> Any:
    """One step of the exponential moving average of a weight (``trainer.ema``).

    After ``updates`` earlier updates the decay is ``min(decay, (1 + n) / (10 + n))``:
    the average follows the weights closely at first and settles at ``decay``, so that
    a short run is not pulled back towards its initial weights (TensorFlow's
    ``ExponentialMovingAverage`` with ``num_updates``). Integer buffers (BatchNorm's
    batch count) take the current value.

    Example:
        >>> a, b = torch.zeros(1), torch.ones(1)
        >>> float(ema_update(a, b, torch.tensor(0), decay=0.99))  # decay 0.1 at first
        0.9
        >>> round(float(ema_update(a, b, torch.tensor(10_000), decay=0.99)), 4)
        0.01
    """
    if not average.is_floating_point():
        return current
    n = float(updates)
    kept = min(decay, (1.0 + n) / (10.0 + n))
    return average + (1.0 - kept) * (current - average)


class WeightEMA(WeightAveraging):
    """An exponential moving average of the weights and buffers (``trainer.ema``).

    It is updated after every optimizer step (:func:`ema_update`) and it is the model
    that validation sees, that the checkpoints hold as ``state_dict`` (the training
    weights go beside it, for ``--resume``) and that training ends with: the best
    checkpoint is the best average, and test, export and ``mediscope.load`` use it.
    Lightning's :class:`WeightAveraging` does the swapping and the checkpoint keys.
    """

    def __init__(self, decay: float) -> None:
        super().__init__(use_buffers=True, avg_fn=partial(ema_update, decay=decay))
        self.decay = decay
