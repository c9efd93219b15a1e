"""HTTP downloads: streamed through a ``.part`` file, resumed with ``Range`` requests,
verified against a checksum, with connect and read timeouts and proxy support."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from mediscope import __version__
from mediscope.data.catalog import Resource
from mediscope.data.download.checksums import checksum_of, feed
from mediscope.data.download.sizes import CHUNK, check_space
from mediscope.errors import DownloadError

_MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)

Log = Callable[[str], None]


@dataclass(frozen=True)
class Timeouts:
    """Socket timeouts in seconds: to connect, and for each read once connected."""

    connect: float = 10.0
    read: float = 60.0


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
    checksum = checksum_of(Resource(url, target.name, md5=md5, sha256=sha256))
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
        check_space(part.parent, (total or size or 0) - offset)
        digest = hashlib.new(checksum[0]) if checksum else None
        if digest is not None and offset:
            feed(digest, part)
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
                block = response.read1(CHUNK)  # what has arrived: kept if the next read stalls
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
