"""Atomic file writes: write to a temporary name beside the target, then rename.

A reader (or a crash) never sees a half-written config, metrics file or checkpoint.
Also the one safe way to read a torch file (``weights_only=True``, a clear error for a
file that carries pickled code), and a text file read whole (regular files only, of a
bounded size: :func:`read_text_file`).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from stat import S_ISDIR, S_ISREG
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mediscope.errors import MediscopeError


def _file_mode() -> int:
    """The mode a plain ``open()`` would give a new file: 0o666 less the umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside ``target``; renames it to ``target`` on success.

    The file gets the usual permissions (``mkstemp`` alone would make it private, so a
    colleague could not read a shared run folder).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, _file_mode())
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(target: str | Path, text: str) -> Path:
    """Writes ``text`` to ``target`` atomically (UTF-8)."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_json_atomic(target: str | Path, data: Any) -> Path:
    """Writes ``data`` as indented JSON to ``target`` atomically; NaN becomes null."""
    return write_text_atomic(target, json.dumps(_finite(data), indent=2) + "\n")


def write_with(target: str | Path, writer: Callable[[Path], Any]) -> Path:
    """Calls ``writer(tmp_path)`` and renames the result to ``target``."""
    with atomic_path(target) as tmp:
        writer(tmp)
    return Path(target)


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def read_torch_file(path: str | Path, *, what: str = "checkpoint") -> Any:
    """Loads a file written by ``torch.save`` without running pickled code.

    ``weights_only=True`` unpickles tensors and plain data only. A file that carries any
    other pickled object (a class, a function such as ``os.system``) is refused with an
    error naming the file and the object, before anything in it runs.

    Args:
        path: The ``.ckpt`` / ``.pt`` / ``.pth`` file.
        what: How the error names the file (``checkpoint``, ``weights file``).

    Raises:
        CheckpointError: when the file is missing, unreadable or carries pickled code.
    """
    import torch

    from mediscope.errors import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found", where=path, hint="check the path")
    unreadable = f"not a {'loadable' if what == 'checkpoint' else 'readable'} {what}"
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": refused anyway
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        if found is None:  # not a torch file, or pickle opcodes the safe reader refuses
            raise CheckpointError(
                f"{unreadable} (not a torch file, or pickled data that is not plain tensors)",
                where=path,
                hint="give a .ckpt written by 'mediscope fit' or a state dict of tensors",
            ) from None
        raise CheckpointError(
            f"the {what} holds pickled Python code ({found.group(1)}), not just weights; "
            "it was refused unread, since loading it could run that code",
            where=path,
            hint="use a checkpoint written by 'mediscope fit', or a state dict of tensors "
            "(.pt, .pth, .safetensors) from a source you trust",
        ) from None
    except Exception as exc:  # a truncated zip, a text file, ...: the file's fault
        raise CheckpointError(
            f"{unreadable} ({type(exc).__name__})",
            where=path,
            hint="give a .ckpt written by 'mediscope fit'; a file cut short by a full disk "
            "or a killed process cannot be read",
        ) from None


def _finite(data: Any) -> Any:
    if isinstance(data, float) and data != data:  # NaN is not valid JSON
        return None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


def replace_dir(new: Path, target: Path) -> None:
    """Moves folder ``new`` to ``target``; an existing ``target`` is swapped out first and
    put back if the move fails, then deleted."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)  # put the previous folder back rather than lose it
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_dir(target: Path, *, overwrite: bool) -> Iterator[Path]:
    """Yields an empty hidden folder beside ``target`` that becomes ``target`` on success.

    A failure (or Ctrl-C) removes the staging folder, so ``target`` is either the old
    content or the complete new one, never half-written.

    Raises:
        DataError: when ``target`` is a file, or a non-empty folder and not ``overwrite``.
    """
    from mediscope.errors import DataError

    if target.exists() and not target.is_dir():
        raise DataError("exists and is not a folder", where=target, hint="choose another path")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise DataError(
            "folder exists and is not empty",
            where=target,
            hint="choose another folder or pass overwrite=True (--overwrite)",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)  # leftover of a crashed run with a reused pid
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def refuse_overlap(
    output: str | Path, inputs: Iterable[str | Path | None], *, option: str = "--output"
) -> None:
    """Refuses an output that is one of ``inputs``, inside one, or a folder above one.

    No command writes into, onto or above its own inputs (``--overwrite`` included): a
    destination above the source would be replaced with the source in it, an output
    named like an input image would overwrite it, and one inside an image folder would
    become part of the data. Paths are compared after resolving symbolic links; a
    ``None`` input is skipped.

    Args:
        output: The file or folder the command is about to write.
        inputs: The files and folders it reads.
        option: How the command line names ``output`` (``--output``, ``DST``).

    Raises:
        ConfigError: naming ``option``, the output and the input it would overwrite.
    """
    from mediscope.errors import ConfigError

    target = Path(os.path.realpath(output))
    for item in inputs:
        if item is None:
            continue
        source = Path(os.path.realpath(item))
        if source == target:
            relation = "is the input"
        elif target.is_relative_to(source):
            relation = "is inside the input"
        elif source.is_relative_to(target):
            relation = "holds the input"
        else:
            continue
        raise ConfigError(
            f"{output} {relation} {item}: writing there would change the input",
            where=option,
            hint="choose an output outside the inputs",
        )


def cache_dir() -> Path:
    """``$MEDISCOPE_CACHE``, else ``$XDG_CACHE_HOME/mediscope``, else ``~/.cache/mediscope``."""
    if os.environ.get("MEDISCOPE_CACHE"):
        return Path(os.environ["MEDISCOPE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mediscope"


#: The most bytes read of a file read whole as a list or table (exclude lists, class
#: names, CSV manifests, label files, split files): far beyond any real one.
LIST_LIMIT = 100_000_000


def _megabytes(size: int) -> str:
    return f"{size / 1e9:g} GB" if size >= 1_000_000_000 else f"{size / 1e6:g} MB"


def read_text_file(
    path: str | Path,
    *,
    limit: int,
    what: str,
    hint: str | None = None,
    encoding: str = "utf-8-sig",
    error: type[MediscopeError] | None = None,
) -> str:
    """Reads a text file that mediscope reads whole (a list, a manifest, a YAML file).

    Only a regular file is read: a device (``/dev/zero`` would be read forever), a FIFO
    (which blocks until someone writes) or a folder is refused before any byte is read,
    and so is a file larger than ``limit`` bytes.

    Args:
        path: The file.
        limit: The most bytes read.
        what: How the error names the file (``exclude file``, ``class names``).
        hint: What to do, for the errors (default: give a regular text file).
        encoding: The text encoding (``utf-8-sig``: a byte-order mark is dropped).
        error: The error class raised (default :class:`~mediscope.errors.DataError`).

    Raises:
        MediscopeError: ``error``, naming the file: not a regular file, or too large.
        FileNotFoundError, OSError, UnicodeDecodeError: as ``Path.read_text`` (the
            caller names them as it always did).
    """
    from mediscope.errors import DataError

    error = error or DataError
    path = Path(path)
    # O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a
    # writer; fstat then says what was opened (no race with a check made before).
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        stat = os.fstat(fd)
        if not S_ISREG(stat.st_mode):
            kind = "a folder" if S_ISDIR(stat.st_mode) else "a device, FIFO or socket"
            raise error(
                f"not a regular file ({kind}), so it cannot be read as the {what}",
                where=path,
                hint=hint or "give a text file",
            )
        if stat.st_size > limit:
            raise error(
                f"the file is larger than {_megabytes(limit)} ({stat.st_size:,} bytes), too "
                f"large for the {what}",
                where=path,
                hint=hint or "is it the right file?",
            )
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while read
        raise error(
            f"the file is larger than {_megabytes(limit)}, too large for the {what}",
            where=path,
            hint=hint or "is it the right file?",
        )
    return data.decode(encoding)
