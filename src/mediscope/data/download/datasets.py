"""Fetching a catalog dataset: one file, or archives unpacked into a folder that appears
only once complete; a present, verified dataset is not fetched again."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediscope.data.catalog import DatasetEntry, Resource, get_dataset
from mediscope.data.download.archives import extract
from mediscope.data.download.checksums import has_checksum, verify_present
from mediscope.data.download.http import Log, Timeouts, apply_mirror, download
from mediscope.data.download.kaggle import kaggle_download
from mediscope.data.download.sizes import size_note
from mediscope.errors import DownloadError
from mediscope.files import write_json_atomic

ENV_BASE = "MEDISCOPE_DOWNLOAD_BASE"
MARKER = ".mediscope-fetch.json"


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch` did.

    Attributes:
        name: The dataset name.
        path: The dataset file or folder.
        downloaded: False when it was already present and nothing was fetched.
        verified: True when its checksum (or fetch record) was checked.
    """

    name: str
    path: Path
    downloaded: bool
    verified: bool


def fetch(
    name: str,
    dst: str | Path,
    *,
    mirror: str | None = None,
    force: bool = False,
    timeouts: Timeouts | None = None,
    progress: bool | None = None,
    log: Log | None = None,
) -> FetchResult:
    """Downloads the catalog dataset ``name`` into ``dst`` (see ``mediscope.data.catalog``).

    Args:
        name: A catalog name, e.g. ``"pathmnist_64"`` or ``"nct-crc-he-100k"``.
        dst: The folder to put it in (created if needed).
        mirror: Base URL replacing the scheme and host of the catalog URLs; defaults to
            ``$MEDISCOPE_DOWNLOAD_BASE``.
        force: Download and unpack again even when the dataset is present.
        timeouts: Connect and read timeouts (10 s and 60 s by default).
        progress: Show a progress bar; None shows one when stderr is a terminal.
        log: Called with one-line status messages (silent when None).

    Returns:
        Where the dataset is and whether it was downloaded.

    Raises:
        UnknownNameError: ``name`` is not in the catalog.
        DownloadError: The host cannot be reached, a read timed out, a checksum does not
            match, or an archive is damaged or unsafe.

    Example:
        >>> fetch("pathmnist", "data")  # doctest: +SKIP
        FetchResult(name='pathmnist', path=PosixPath('data/pathmnist.npz'), ...)
    """
    return fetch_entry(
        get_dataset(name),
        dst,
        mirror=mirror,
        force=force,
        timeouts=timeouts,
        progress=progress,
        log=log,
    )


def fetch_entry(
    entry: DatasetEntry,
    dst: str | Path,
    *,
    mirror: str | None = None,
    force: bool = False,
    timeouts: Timeouts | None = None,
    progress: bool | None = None,
    log: Log | None = None,
) -> FetchResult:
    """Like :func:`fetch`, for a :class:`~mediscope.data.catalog.DatasetEntry` object."""
    job = Job(
        dst=Path(dst),
        base=mirror if mirror is not None else os.environ.get(ENV_BASE) or None,
        timeouts=timeouts or Timeouts(),
        progress=sys.stderr.isatty() if progress is None else progress,
        log=log or (lambda _message: None),
    )
    job.dst.mkdir(parents=True, exist_ok=True)
    if entry.kind == "file":
        return _fetch_file(entry, job, force=force)
    return _fetch_folder(entry, job, force=force)


@dataclass(frozen=True)
class Job:
    """Where and how one :func:`fetch_entry` call downloads."""

    dst: Path
    base: str | None
    timeouts: Timeouts
    progress: bool
    log: Log


def _fetch_file(entry: DatasetEntry, job: Job, *, force: bool) -> FetchResult:
    resource = entry.resources[0]
    target = job.dst / entry.target
    if target.exists() and not force:
        verified = verify_present(target, resource)
        job.log(f"{entry.name}: already present{' and verified' if verified else ''}: {target}")
        return FetchResult(entry.name, target, downloaded=False, verified=verified)
    _download_resource(resource, target, job)
    return FetchResult(entry.name, target, downloaded=True, verified=has_checksum(resource))


def _fetch_folder(entry: DatasetEntry, job: Job, *, force: bool) -> FetchResult:
    target = job.dst / entry.target
    if target.exists() and not force:
        state = _folder_state(entry, target)
        if state is not None:
            job.log(f"{entry.name}: already present ({state}): {target}")
            return FetchResult(entry.name, target, False, verified=state == "verified")
        if any(target.iterdir()):
            raise DownloadError(
                f"{target} exists but holds no complete '{entry.name}'",
                hint="remove it, or run again with --force to replace it",
            )
    archives: list[tuple[Resource, Path, bool]] = []
    for resource in entry.resources:
        archive = job.dst / resource.filename
        ours = force or not archive.exists()
        if ours:
            _obtain(entry, resource, archive, job)
        else:
            verify_present(archive, resource)
            job.log(f"{entry.name}: using {archive}")
        archives.append((resource, archive, ours))
    _assemble(entry, archives, target, job)
    for _resource, archive, ours in archives:
        if ours:  # the unpacked folder is what is kept; a file the user put there stays
            archive.unlink(missing_ok=True)
    job.log(f"{entry.name}: unpacked into {target}")
    return FetchResult(entry.name, target, downloaded=True, verified=_all_checksummed(entry))


def _all_checksummed(entry: DatasetEntry) -> bool:
    return all(has_checksum(r) for r in entry.resources)


def _obtain(entry: DatasetEntry, resource: Resource, archive: Path, job: Job) -> None:
    if entry.kaggle:
        kaggle_download(entry, resource, archive, job)
    else:
        _download_resource(resource, archive, job)


def _folder_state(entry: DatasetEntry, target: Path) -> str | None:
    """How complete a present folder is, or None when it is not a copy of ``entry``.

    Our fetch record, written last, proves a complete unpack of these very files; a
    folder unpacked by hand passes on its layout alone.
    """
    marker = target / MARKER
    if marker.is_file():
        try:
            record = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = {}
        if record.get("name") == entry.name and record.get("files") == _record_files(entry):
            return "verified" if _all_checksummed(entry) else "complete"
    if entry.expected and all((target / path).exists() for path in entry.expected):
        return "unverified: unpacked by hand"
    return None


def _record_files(entry: DatasetEntry) -> list[dict[str, Any]]:
    return [{"filename": r.filename, "md5": r.md5, "sha256": r.sha256} for r in entry.resources]


def _assemble(
    entry: DatasetEntry, archives: list[tuple[Resource, Path, bool]], target: Path, job: Job
) -> None:
    """Unpacks into a temporary sibling of ``target`` and renames it into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        for resource, archive, _ours in archives:
            into = tmp / resource.subdir
            into.mkdir(parents=True, exist_ok=True)
            if resource.unpack:
                job.log(f"{entry.name}: unpacking {archive.name}")
                extract(archive, into, kind=resource.unpack, strip_top=resource.strip_top)
            else:
                shutil.copy2(archive, into / resource.filename)
        if entry.prepare:
            _prepare(entry, tmp, job)
        missing = [p for p in entry.expected if not (tmp / p).exists()]
        if missing:
            job.log(f"warning: {entry.name} has no {', '.join(missing)}; layout: {entry.layout}")
        write_json_atomic(tmp / MARKER, {"name": entry.name, "files": _record_files(entry)})
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _prepare(entry: DatasetEntry, folder: Path, job: Job) -> None:
    """Runs the entry's preparation step (``module:function``) on the unpacked folder."""
    module, _, function = (entry.prepare or "").partition(":")
    getattr(importlib.import_module(module), function)(folder, log=job.log)


def _replace_dir(new: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


def _download_resource(resource: Resource, target: Path, job: Job) -> None:
    url = apply_mirror(resource.url, job.base)
    job.log(f"downloading {url}{size_note(resource.size)}")
    download(
        url,
        target,
        md5=resource.md5,
        sha256=resource.sha256,
        size=resource.size,
        timeouts=job.timeouts,
        progress=job.progress,
        log=job.log,
    )
