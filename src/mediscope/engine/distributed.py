"""Several processes, one run: which process writes, and what they agree on.

Under DDP (Lightning's ``ddp`` strategy, ``torchrun`` or ``srun``) every process runs
the same command. Process 0 creates and writes the run folder; the others read the data
and train their share but write nothing, and learn the run folder from process 0 once
the process group exists (:class:`DistributedRun`).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

#: Environment variables that give a process's global rank before Lightning starts.
_RANK_VARIABLES = ("RANK", "SLURM_PROCID")


def launch_rank() -> int:
    """This process's global rank as its launcher's environment says, before Lightning
    sets up the process group: ``RANK`` (torchrun), ``SLURM_PROCID`` (srun with several
    tasks), ``NODE_RANK`` and ``LOCAL_RANK`` (the processes Lightning's ``ddp`` strategy
    starts); 0 for a single process.

    Examples:
        >>> import os
        >>> os.environ.get("RANK") is None and launch_rank() == 0
        True
    """
    if "RANK" in os.environ:
        return _int(os.environ["RANK"])
    if "SLURM_PROCID" in os.environ and _int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return _int(os.environ["SLURM_PROCID"])
    local = _int(os.environ.get("LOCAL_RANK", "0"))
    node = _int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0")))
    return local + node  # 0 exactly when both are 0: all that matters here


def is_launch_zero() -> bool:
    """Whether this process is the one that writes the run folder (rank 0)."""
    return launch_rank() == 0


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def spans_processes(trainer: L.Trainer) -> bool:
    """Whether ``trainer`` trains with more than one process."""
    return int(trainer.num_devices) * int(trainer.num_nodes) > 1


class DistributedRun(L.Callback):
    """What the processes of a DDP run share.

    * ``run_dir``: process 0's run folder, sent to every process at setup;
    * the model's buffers (BatchNorm statistics, which each process updates with its own
      batches) are process 0's before every validation, so that every process validates
      the model that process 0 saves in the checkpoints.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._sigterm = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning's own SIGTERM handler runs a collective inside the signal handler and
        # lets each process stop on its own in validation, which can leave the others
        # waiting. Instead: note the signal, and agree after every training step
        # (on_train_batch_end) whether any process got one; then all stop there.
        self._sigterm = False
        if trainer.world_size > 1:
            with suppress(ValueError):  # not the main thread: leave Lightning's
                signal.signal(signal.SIGTERM, self._note_sigterm)

    def _note_sigterm(self, signum: int, frame: object) -> None:
        self._sigterm = True

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.world_size > 1 and trainer.strategy.reduce_boolean_decision(
            self._sigterm, all=False
        ):
            trainer._signal_connector.received_sigterm = True
            raise SIGTERMException()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.world_size > 1:
            self.run_dir = Path(trainer.strategy.broadcast(str(self.run_dir), src=0))

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1 and torch.distributed.is_initialized():
            for buffer in pl_module.buffers():
                torch.distributed.broadcast(buffer, src=0)


@contextmanager
def lightning_sigterm(active: bool) -> Iterator[None]:
    """While inside (when ``active``), SIGTERM does not raise at once.

    The processes of a DDP run agree on a SIGTERM after a training step and all stop
    there (:class:`DistributedRun`); a handler raising in one process at an arbitrary
    point (what a single process does) would leave the others waiting in a collective.
    """
    if not active or not hasattr(signal, "SIGTERM"):
        yield
        return
    try:
        previous = signal.signal(signal.SIGTERM, _leave_to_lightning)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _leave_to_lightning(signum: int, frame: object) -> None:
    """A SIGTERM handler that does nothing: Lightning's own, composed with it, acts."""
