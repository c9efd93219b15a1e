"""The MediscopeError hierarchy.

Every error a user can cause (a bad config key, a missing file, a malformed label line)
is a :class:`MediscopeError`. It carries *where* the problem is (file, line, key) and
*what to do*, so that the command line can print it as one line and exit with code 2.
"""

from __future__ import annotations

from pathlib import Path


class MediscopeError(Exception):
    """Base class of every user-facing error.

    Args:
        message: What is wrong, e.g. ``"unknown key 'lr'"``.
        where: Where it is: a file, ``file:line`` or a key path.
        hint: What to do about it, e.g. ``"did you mean 'optimizer.lr'?"``.
    """

    exit_code = 2

    def __init__(self, message: str, *, where: str | Path | None = None, hint: str | None = None):
        if where is None and hint is None:
            message = _unwrapped(type(self), message)
        self.message = message
        self.where = str(where) if where is not None else None
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text = f"{text}; {self.hint}"
        return text


def _unwrapped(kind: type[MediscopeError], message: str) -> str:
    """The original message of an error raised in a DataLoader worker process.

    PyTorch re-raises a worker's exception in the main process as the same type built
    from one text: ``Caught DataError in DataLoader worker process 0.`` and the worker's
    traceback, whose last line is ``mediscope.errors.DataError: <the error's line>``.
    That line is what the user must see, so it is taken back out; other messages are
    returned unchanged.
    """
    if not message.startswith(f"Caught {kind.__name__} in DataLoader worker process"):
        return message
    marker = f"\n{kind.__module__}.{kind.__qualname__}: "
    _, found, original = message.rpartition(marker)
    return original.strip() if found else message


class ConfigError(MediscopeError):
    """The configuration file or an override is invalid."""


class UnknownNameError(ConfigError):
    """A name (model, loss, optimizer, format, ...) is not registered."""


class DataError(MediscopeError):
    """A dataset, image or label file is missing or malformed."""


class CheckpointError(MediscopeError):
    """A checkpoint is missing, unreadable or does not fit the model."""


class RunDirError(MediscopeError):
    """A run directory cannot be created, found or written."""


class DownloadError(MediscopeError):
    """A download failed, timed out or did not match its checksum."""


class InterruptedRun(MediscopeError):
    """A command was stopped by the user (Ctrl-C) or the system (SIGTERM): exit code 130.

    For training, ``run_dir`` is the run folder and ``resumable`` whether it holds a
    ``last.ckpt`` to continue from, so that the command line can print the ``--resume``
    command.
    """

    exit_code = 130
    run_dir: Path | None = None
    resumable: bool = False


class TerminatedRun(InterruptedRun):
    """A command was stopped by SIGTERM (a cluster's scheduler, ``kill``): exit code 143."""

    exit_code = 143


class NonFiniteLossError(MediscopeError):
    """The training loss became NaN or infinite; training stops at that step.

    ``epoch``, ``step`` (the global optimizer step) and ``batch`` (within the epoch) say
    where, all counted from 0.
    """

    epoch: int | None = None
    step: int | None = None
    batch: int | None = None


class Terminated(KeyboardInterrupt):
    """Raised by the command line's SIGTERM handler, so that SIGTERM unwinds like Ctrl-C.

    A ``KeyboardInterrupt`` subclass: every cleanup that runs on Ctrl-C (Lightning's
    graceful shutdown, removing half-written files) runs on SIGTERM too.
    """
