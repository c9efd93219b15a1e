"""Dataset downloads: streamed, resumable, checksummed, and unpacked atomically.

``fetch("pathmnist", "data")`` downloads ``data/pathmnist.npz``; ``fetch("crc-val-he-7k",
"data")`` unpacks its archive into ``data/crc-val-he-7k/<CLASS>/``. The rules:

- Never hang: a connect timeout (10 s) and a read timeout (60 s) on every socket; a host
  that cannot be reached fails at once with what to do on an offline machine.
- Resume: bytes arrive in ``<file>.part``; a later run asks for the rest with an HTTP
  ``Range`` request, and starts from scratch when the server ignores it or the joined
  file fails its checksum.
- Verify: a checksum mismatch deletes the file and names both sums.
- Unpack into a temporary sibling folder, then rename it into place: a crash or a bad
  archive never leaves a half-extracted dataset, and members that would land outside
  the folder (``../``, absolute paths, links) are refused. An entry's ``prepare`` step
  (e.g. trimaps to masks) runs in that temporary folder too.
- Idempotent: a present, verified dataset is not downloaded again.
- ``MEDISCOPE_DOWNLOAD_BASE`` (or ``mirror=``) replaces the scheme and host of every URL,
  for a lab mirror, and for tests against a local server.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib
import importlib.util
import json
import os
import re
import shutil
import socket
import stat
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from mediscope import __version__
from mediscope.data.catalog import DatasetEntry, Resource, get_dataset
from mediscope.errors import DownloadError
from mediscope.files import write_json_atomic

ENV_BASE = "MEDISCOPE_DOWNLOAD_BASE"
MARKER = ".mediscope-fetch.json"
_CHUNK = 1 << 20
_MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)

Log = Callable[[str], None]


@dataclass(frozen=True)
class Timeouts:
    """Socket timeouts in seconds: to connect, and for each read once connected."""

    connect: float = 10.0
    read: float = 60.0


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
    job = _Job(
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
class _Job:
    dst: Path
    base: str | None
    timeouts: Timeouts
    progress: bool
    log: Log


# --- the two kinds of dataset ------------------------------------------------------------


def _fetch_file(entry: DatasetEntry, job: _Job, *, force: bool) -> FetchResult:
    resource = entry.resources[0]
    target = job.dst / entry.target
    if target.exists() and not force:
        verified = _verify_present(target, resource)
        job.log(f"{entry.name}: already present{' and verified' if verified else ''}: {target}")
        return FetchResult(entry.name, target, downloaded=False, verified=verified)
    _download_resource(resource, target, job)
    return FetchResult(entry.name, target, downloaded=True, verified=_has_checksum(resource))


def _fetch_folder(entry: DatasetEntry, job: _Job, *, force: bool) -> FetchResult:
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
            _verify_present(archive, resource)
            job.log(f"{entry.name}: using {archive}")
        archives.append((resource, archive, ours))
    _assemble(entry, archives, target, job)
    for _resource, archive, ours in archives:
        if ours:  # the unpacked folder is what is kept; a file the user put there stays
            archive.unlink(missing_ok=True)
    job.log(f"{entry.name}: unpacked into {target}")
    return FetchResult(entry.name, target, downloaded=True, verified=_all_checksummed(entry))


def _all_checksummed(entry: DatasetEntry) -> bool:
    return all(_has_checksum(r) for r in entry.resources)


def _obtain(entry: DatasetEntry, resource: Resource, archive: Path, job: _Job) -> None:
    if entry.kaggle:
        _kaggle_download(entry, resource, archive, job)
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
    entry: DatasetEntry, archives: list[tuple[Resource, Path, bool]], target: Path, job: _Job
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


def _prepare(entry: DatasetEntry, folder: Path, job: _Job) -> None:
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


# --- checksums ---------------------------------------------------------------------------


def _checksum(resource: Resource) -> tuple[str, str] | None:
    if resource.sha256:
        return "sha256", resource.sha256.lower()
    if resource.md5:
        return "md5", resource.md5.lower()
    return None


def _has_checksum(resource: Resource) -> bool:
    return _checksum(resource) is not None


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Returns the hex digest of the file at ``path`` (``"md5"``, ``"sha256"``, ...)."""
    digest = hashlib.new(algorithm)
    _feed(digest, Path(path))
    return digest.hexdigest()


def _feed(digest: Any, path: Path) -> None:
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)


def _verify_present(path: Path, resource: Resource) -> bool:
    """Checks a file that is already there; a mismatch is left in place for the user."""
    expected = _checksum(resource)
    if expected is None:
        return False
    algorithm, want = expected
    got = file_digest(path, algorithm)
    if got != want:
        raise DownloadError(
            f"{path.name} is present but its {algorithm} is {got}, expected {want}",
            where=path,
            hint="delete it, or run again with --force to download it again",
        )
    return True


# --- download ----------------------------------------------------------------------------


def apply_mirror(url: str, base: str | None) -> str:
    """Replaces the scheme and host of ``url`` by ``base`` (its path is put in front).

    Example:
        >>> apply_mirror("https://zenodo.org/records/1/files/a.zip?download=1", "http://m/x")
        'http://m/x/records/1/files/a.zip?download=1'
    """
    if not base:
        return url
    mirror = urlsplit(base)
    if mirror.scheme not in ("http", "https") or not mirror.netloc:
        raise DownloadError(
            f"mirror '{base}' is not an http(s) URL", hint="e.g. --mirror http://mirror.lab:8000"
        )
    parts = urlsplit(url)
    return urlunsplit(
        (mirror.scheme, mirror.netloc, mirror.path.rstrip("/") + parts.path, parts.query, "")
    )


def _download_resource(resource: Resource, target: Path, job: _Job) -> None:
    url = apply_mirror(resource.url, job.base)
    job.log(f"downloading {url}{_size_note(resource.size)}")
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


def download(
    url: str,
    target: str | Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    timeouts: Timeouts | None = None,
    progress: bool = False,
    log: Log | None = None,
) -> Path:
    """Downloads ``url`` to ``target`` through ``<target>.part``, resuming and verifying.

    Args:
        url: An http(s) URL; redirects are followed.
        target: The file to write; it appears only once complete and verified.
        md5: Expected MD5 hex digest, if known.
        sha256: Expected SHA-256 hex digest, if known (preferred over ``md5``).
        size: Expected size in bytes, if known.
        timeouts: Connect and read timeouts.
        progress: Show a rich progress bar.
        log: Called with one-line status messages.

    Returns:
        ``target``.

    Raises:
        DownloadError: Unreachable host, HTTP error, read timeout, early end of the
            transfer (the ``.part`` file is kept for a resume) or checksum mismatch (the
            file is deleted).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    checksum = _checksum(Resource(url, target.name, md5=md5, sha256=sha256))
    say = log or (lambda _message: None)
    try:
        for attempt in range(2):
            resumed, got = _transfer(
                url, part, size, checksum, timeouts or Timeouts(), progress, say
            )
            if checksum is None or got == checksum[1]:
                os.replace(part, target)
                return target
            part.unlink(missing_ok=True)
            if resumed and attempt == 0:  # the kept bytes were wrong, not the server's
                say(f"{target.name}: the resumed file did not verify; downloading it again")
                continue
            raise DownloadError(
                f"checksum mismatch for {target.name}: expected {checksum[0]} {checksum[1]}, "
                f"got {got}",
                where=url,
                hint="the file was deleted; run again, or check the mirror",
            )
    except _Unreachable as exc:
        raise DownloadError(
            f"cannot reach {exc.host} ({exc.reason})",
            hint=f"on an offline machine download {url} by hand and put it in {target}, "
            "then run the command again",
        ) from None
    raise AssertionError("unreachable")  # pragma: no cover


class _Unreachable(Exception):
    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host}: {reason}")
        self.host = host
        self.reason = reason


def _transfer(
    url: str,
    part: Path,
    size: int | None,
    checksum: tuple[str, str] | None,
    timeouts: Timeouts,
    progress: bool,
    log: Log,
) -> tuple[bool, str | None]:
    """One request: resumes ``part`` if the server allows it; returns (resumed, digest)."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:  # longer than the file can be: not ours to keep
        offset = 0
    response, conn = _request(url, timeouts, offset)
    with _closing(conn):
        if response.status == 416:  # nothing left to send from that offset: start over
            part.unlink(missing_ok=True)
            return _transfer(url, part, size, checksum, timeouts, progress, log)
        start = _range_start(response) if response.status == 206 else 0
        if offset and start != offset:
            log(f"{part.name}: the server cannot resume; starting again")
            offset = 0
        total = _total_size(response, offset)
        _check_space(part.parent, (total or size or 0) - offset)
        digest = hashlib.new(checksum[0]) if checksum else None
        if digest is not None and offset:
            _feed(digest, part)
        label = urlsplit(url).path.rsplit("/", 1)[-1] or part.name
        written = _copy(response, part, offset, total, digest, timeouts, progress, label, url)
    if total is not None and written < total:
        raise DownloadError(
            f"the download of {part.name} stopped at {written:,} of {total:,} bytes",
            hint="run the command again to resume it",
        )
    return offset > 0, digest.hexdigest() if digest is not None else None


@contextmanager
def _closing(conn: http.client.HTTPConnection) -> Iterator[None]:
    try:
        yield
    finally:
        conn.close()


def _copy(
    response: http.client.HTTPResponse,
    part: Path,
    offset: int,
    total: int | None,
    digest: Any,
    timeouts: Timeouts,
    progress: bool,
    label: str,
    url: str,
) -> int:
    """Streams the body into ``part`` (appending after ``offset``); returns its new size."""
    written = offset
    host = urlsplit(url).netloc
    with part.open("ab" if offset else "wb") as out, _bar(label, total, offset, progress) as bar:
        while True:
            try:
                block = response.read1(_CHUNK)  # what has arrived: kept if the next read stalls
            except TimeoutError:
                raise DownloadError(
                    f"{host} sent nothing for {timeouts.read:g} s",
                    hint=f"{written:,} bytes are kept in {part}; run the command again to resume",
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadError(
                    f"the connection to {host} broke: {exc}",
                    hint=f"{written:,} bytes are kept in {part}; run the command again to resume",
                ) from None
            if not block:
                return written
            out.write(block)
            if digest is not None:
                digest.update(block)
            written += len(block)
            bar(len(block))


@contextmanager
def _bar(
    label: str, total: int | None, done: int, enabled: bool
) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda _n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total, completed=done)
        yield lambda n: bar.advance(task, n)


# --- HTTP --------------------------------------------------------------------------------


def _request(
    url: str, timeouts: Timeouts, offset: int
) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
    """GET ``url`` following redirects; returns a 200, 206 or 416 response and its connection."""
    headers = {"User-Agent": f"mediscope/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    for _ in range(_MAX_REDIRECTS + 1):
        conn, path = _connect(url, timeouts)
        host = urlsplit(url).netloc
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
        except TimeoutError:
            conn.close()
            raise DownloadError(f"{host} did not answer within {timeouts.read:g} s") from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise DownloadError(f"the connection to {host} broke: {exc}") from None
        location = response.getheader("Location")
        if response.status in _REDIRECTS and location:
            conn.close()
            url = urljoin(url, location)
            continue
        if response.status in (200, 206) or (response.status == 416 and offset):
            return response, conn
        conn.close()
        raise DownloadError(
            f"{url} answered HTTP {response.status} {response.reason}",
            hint="the file may have moved; check the URL, the mirror or MEDISCOPE_DOWNLOAD_BASE",
        )
    raise DownloadError(f"more than {_MAX_REDIRECTS} redirects from {url}")


def _connect(url: str, timeouts: Timeouts) -> tuple[http.client.HTTPConnection, str]:
    """An open connection to the host of ``url`` (or its proxy) and the request path."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DownloadError(f"cannot download '{url}': not an http(s) URL")
    https = parts.scheme == "https"
    cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
    path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    proxy = _proxy_for(parts.scheme, parts.hostname)
    if proxy is None:
        conn = cls(parts.hostname, parts.port, timeout=timeouts.connect)
    else:
        conn = cls(proxy.hostname or "", proxy.port, timeout=timeouts.connect)
        if https:
            conn.set_tunnel(parts.hostname, parts.port)
        else:
            path = url  # a plain-HTTP proxy takes the whole URL
    try:
        conn.connect()
    except TimeoutError:
        conn.close()
        raise _Unreachable(parts.netloc, f"no answer within {timeouts.connect:g} s") from None
    except OSError as exc:
        conn.close()
        raise _Unreachable(parts.netloc, _reason(exc)) from None
    assert conn.sock is not None
    conn.sock.settimeout(timeouts.read)  # from here on, each read may wait this long
    return conn, path


def _proxy_for(scheme: str, host: str) -> Any:
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return urlsplit(proxy if "://" in proxy else f"http://{proxy}")


def _reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "host name not found; is this machine offline?"
    return exc.strerror or str(exc) or type(exc).__name__


def _range_start(response: http.client.HTTPResponse) -> int:
    match = re.match(r"bytes\s+(\d+)-", response.getheader("Content-Range") or "")
    return int(match.group(1)) if match else -1


def _total_size(response: http.client.HTTPResponse, offset: int) -> int | None:
    if response.status == 206:
        match = re.search(r"/(\d+)\s*$", response.getheader("Content-Range") or "")
        if match:
            return int(match.group(1))
    length = response.getheader("Content-Length")
    if length is None or not length.isdigit():
        return None
    return int(length) + (offset if response.status == 206 else 0)


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DownloadError(
            f"not enough disk space in {folder}: {_human(needed)} needed, {_human(free)} free",
            hint="free some space or choose another DST",
        )


def _size_note(size: int | None) -> str:
    return f" ({_human(size)})" if size else ""


def _human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def human_size(size: int | None) -> str:
    """Formats a byte count as ``"11.7 GB"``; None gives ``"?"``."""
    return "?" if size is None else _human(size)


# --- unpacking ---------------------------------------------------------------------------


def extract(archive: str | Path, dest: str | Path, *, kind: str, strip_top: bool = True) -> None:
    """Unpacks a zip or tar archive into the folder ``dest``.

    Every member is checked before anything is written: absolute paths, ``..`` and
    links are refused. ``__MACOSX`` folders are skipped. Unpack into a temporary folder
    and rename it, as :func:`fetch` does, to never leave a half-extracted dataset.

    Args:
        archive: The .zip, .tar, .tar.gz, .tgz, .tar.bz2 or .tar.xz file.
        dest: The folder to unpack into (created if needed).
        kind: ``"zip"`` or ``"tar"``.
        strip_top: Drop a single top-level folder that holds everything.

    Raises:
        DownloadError: An unsafe member, or a damaged archive.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                _extract_members(archive, dest, _zip_members(archive, zf), strip_top)
        elif kind == "tar":
            with tarfile.open(archive, "r:*") as tf:
                _extract_members(archive, dest, _tar_members(archive, tf), strip_top)
        else:
            raise DownloadError(f"cannot unpack {archive.name}: unknown archive kind '{kind}'")
    except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, OSError) as exc:
        raise DownloadError(
            f"cannot unpack {archive.name}: {exc}",
            where=archive,
            hint="the archive is damaged or the disk is full; delete it and fetch again",
        ) from None


# A member: its safe relative path, whether it is a folder, and how to open its bytes.
_Member = tuple[PurePosixPath, bool, Callable[[], IO[bytes]], int]


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[_Member]:
    members: list[_Member] = []
    for info in zf.infolist():
        path = _safe_path(archive, info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise _unsafe(archive, info.filename, "a symbolic link")
        if path is not None:
            opener = _zip_opener(zf, info)
            members.append((path, info.is_dir(), opener, info.file_size))
    return members


def _zip_opener(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], IO[bytes]]:
    return lambda: zf.open(info)


def _tar_members(archive: Path, tf: tarfile.TarFile) -> list[_Member]:
    members: list[_Member] = []
    for info in tf.getmembers():
        path = _safe_path(archive, info.name)
        if not (info.isfile() or info.isdir()):
            raise _unsafe(archive, info.name, "a link or device")
        if path is not None:
            members.append((path, info.isdir(), _tar_opener(tf, info), info.size))
    return members


def _tar_opener(tf: tarfile.TarFile, info: tarfile.TarInfo) -> Callable[[], IO[bytes]]:
    def opener() -> IO[bytes]:
        handle = tf.extractfile(info)
        if handle is None:  # pragma: no cover - regular files always have data
            raise tarfile.ReadError(f"no data for {info.name}")
        return handle

    return opener


def _safe_path(archive: Path, name: str) -> PurePosixPath | None:
    """The member's path relative to the destination; None for entries to skip."""
    clean = name.replace("\\", "/")
    path = PurePosixPath(clean)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", clean) or ".." in path.parts:
        raise _unsafe(archive, name, "a path outside the destination")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or parts[0] == "__MACOSX":  # macOS resource forks, not data
        return None
    return PurePosixPath(*parts)


def _unsafe(archive: Path, name: str, what: str) -> DownloadError:
    return DownloadError(
        f"refusing to unpack {archive.name}: member '{name}' is {what}",
        where=archive,
        hint="the archive is not the published one; delete it and fetch again",
    )


def _extract_members(archive: Path, dest: Path, members: list[_Member], strip_top: bool) -> None:
    prefix = _common_top(members) if strip_top else 0
    _check_space(dest, sum(size for *_rest, size in members))
    for path, is_dir, opener, _size in members:
        if len(path.parts) <= prefix:
            continue
        out = dest.joinpath(*path.parts[prefix:])
        if is_dir:
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        with opener() as src, out.open("wb") as sink:
            shutil.copyfileobj(src, sink, _CHUNK)


def _common_top(members: list[_Member]) -> int:
    """1 when every member sits in one top-level folder (which is then dropped), else 0."""
    tops = {path.parts[0] for path, *_rest in members}
    if len(tops) != 1:
        return 0
    only_folder = all(len(path.parts) > 1 or is_dir for path, is_dir, *_rest in members)
    return 1 if only_folder else 0


# --- Kaggle ------------------------------------------------------------------------------


def _kaggle_download(entry: DatasetEntry, resource: Resource, archive: Path, job: _Job) -> None:
    """Downloads a Kaggle dataset's zip with the user's own credentials."""
    assert entry.kaggle is not None
    _kaggle_ready(entry, job.dst / entry.target)
    job.log(f"downloading {entry.kaggle} from Kaggle with your credentials")
    tmp = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".kaggle", dir=archive.parent))
    try:
        api = _kaggle_api()
        api.dataset_download_files(entry.kaggle, path=str(tmp), unzip=False, quiet=not job.progress)
        zips = sorted(tmp.glob("*.zip"))
        if not zips:
            raise DownloadError(f"Kaggle returned no archive for {entry.kaggle}")
        os.replace(zips[0], archive)
    except DownloadError:
        raise
    except (Exception, SystemExit) as exc:  # kaggle exits the process on a failed sign-in
        raise DownloadError(
            f"the Kaggle download of {entry.kaggle} failed: {exc or type(exc).__name__}",
            hint=_manual_hint(entry, job.dst / entry.target),
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _kaggle_ready(entry: DatasetEntry, target: Path) -> None:
    if not _kaggle_installed():
        problem = "the 'kaggle' package is not installed"
    elif not _kaggle_credentials():
        problem = "no Kaggle credentials were found"
    else:
        return
    raise DownloadError(
        f"'{entry.name}' comes from Kaggle and {problem}",
        hint="pip install kaggle and put your API token in ~/.kaggle/kaggle.json (or set "
        f"KAGGLE_USERNAME and KAGGLE_KEY); or {_manual_hint(entry, target)}",
    )


def _manual_hint(entry: DatasetEntry, target: Path) -> str:
    return f"download it by hand from {entry.homepage} and unpack it to {target}"


def _kaggle_installed() -> bool:
    return importlib.util.find_spec("kaggle") is not None


def _kaggle_credentials() -> bool:
    """Whether the places the kaggle client reads hold a token (without importing it)."""
    env = os.environ
    if env.get("KAGGLE_API_TOKEN") or (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY")):
        return True
    home = Path.home()
    xdg = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    folders = [Path(env["KAGGLE_CONFIG_DIR"])] if env.get("KAGGLE_CONFIG_DIR") else []
    folders += [home / ".kaggle", xdg / "kaggle"]
    return any((f / name).is_file() for f in folders for name in ("kaggle.json", "access_token"))


def _kaggle_api() -> Any:
    """A signed-in ``KaggleApi``; imported here so that mediscope never needs kaggle."""
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    api.authenticate()
    return api
