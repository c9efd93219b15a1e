"""Safe archive extraction: zip and tar members are checked before anything is written."""

from __future__ import annotations

import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO

from mediscope.data.download.sizes import CHUNK, check_space
from mediscope.errors import DownloadError


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
    check_space(dest, sum(size for *_rest, size in members))
    for path, is_dir, opener, _size in members:
        if len(path.parts) <= prefix:
            continue
        out = dest.joinpath(*path.parts[prefix:])
        if is_dir:
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        with opener() as src, out.open("wb") as sink:
            shutil.copyfileobj(src, sink, CHUNK)


def _common_top(members: list[_Member]) -> int:
    """1 when every member sits in one top-level folder (which is then dropped), else 0."""
    tops = {path.parts[0] for path, *_rest in members}
    if len(tops) != 1:
        return 0
    only_folder = all(len(path.parts) > 1 or is_dir for path, is_dir, *_rest in members)
    return 1 if only_folder else 0
