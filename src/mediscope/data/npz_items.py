"""Single images out of NumPy ``.npz`` files, read without loading the file.

A sample's image is a reference ``/abs/dir/train.npz::train_images::123``, read by
:func:`read_item`. ``np.load(..., mmap_mode="r")`` cannot memory-map an array inside a
zip, so a stored (uncompressed) array is mapped straight from the ``.npz`` at its data
offset, and a compressed one is extracted once into the user cache and mapped from
there. Either way the file never has to fit in memory: each read copies one image out
of the map and hands the pages back to the kernel. The ``npz`` dataset format is
:mod:`mediscope.data.formats.npz`.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
import shutil
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from mediscope.errors import DataError

_REFERENCE = re.compile(r"^(?P<file>.+\.npz)::(?P<key>[^:]+)::(?P<index>\d+)$", re.IGNORECASE)
_LOCAL_HEADER = b"PK\x03\x04"
_LOCAL_HEADER_SIZE = 30
_COPY_CHUNK = 16 << 20


def reference(path: Path, key: str, index: int) -> str:
    """The image reference ``PATH::KEY::INDEX`` of one image in an npz file."""
    return f"{path}::{key}::{index}"


def is_reference(text: str) -> bool:
    """True when ``text`` is an npz image reference (``FILE.npz::KEY::INDEX``)."""
    return "::" in text and _REFERENCE.match(text) is not None


def parse_reference(text: str) -> tuple[Path, str, int]:
    """Splits ``FILE.npz::KEY::INDEX`` into its parts.

    Raises:
        DataError: when ``text`` is not such a reference.
    """
    match = _REFERENCE.match(text)
    if match is None:
        raise DataError("not an npz image reference (FILE.npz::KEY::INDEX)", where=text)
    return Path(match["file"]), match["key"], int(match["index"])


def read_item(ref: str) -> np.ndarray:
    """Reads the image a reference points at, as a copy of its array (any dtype).

    Raises:
        DataError: when the file, key or index does not exist.
    """
    path, key, index = parse_reference(ref)
    mapped = _HANDLES.get(path, key)
    if not 0 <= index < len(mapped.array):
        raise DataError(
            f"index {index} is out of range: '{key}' holds {len(mapped.array)} images",
            where=path,
        )
    item = np.array(mapped.array[index])
    mapped.release(index)
    return item


def member_array(path: Path, key: str) -> np.ndarray:
    """The whole array ``key`` of an npz file, memory-mapped read-only.

    The map is cached per process and per file version; a forked DataLoader worker maps
    the file anew on first use. Its ``base`` is the :class:`mmap.mmap`.

    Raises:
        DataError: when the file or key is missing or the array cannot be mapped.
    """
    return _HANDLES.get(Path(os.path.abspath(path)), key).array


@dataclass(frozen=True)
class _Layout:
    """Where an array's data lies in a file (``offset`` up to ``end``), and its shape."""

    file: Path
    offset: int
    end: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    fortran: bool

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


@dataclass(frozen=True, eq=False)
class _Mapped:
    """An open map of one array, with the file version it was made from."""

    stamp: tuple[int, int]
    layout: _Layout
    array: np.ndarray
    map: mmap.mmap

    def release(self, index: int) -> None:
        """Hands the pages of item ``index`` back to the kernel.

        Touched pages of a file map count as the process's resident memory until it
        unmaps them; dropping them after each read keeps one pass over a file larger
        than memory at a few megabytes. They stay in the page cache.
        """
        advise = getattr(mmap, "MADV_DONTNEED", None)
        if advise is None or self.layout.fortran or not self.array.size:
            return
        size = self.array[0].nbytes
        start = self.layout.offset + index * size
        aligned = start - start % mmap.PAGESIZE
        self.map.madvise(advise, aligned, min(start + size, len(self.map)) - aligned)


class _Handles:
    """Open maps by (file, key), valid in the process that opened them."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._open: dict[tuple[Path, str], _Mapped] = {}

    def get(self, path: Path, key: str) -> _Mapped:
        if os.getpid() != self._pid:
            # A forked worker: the parent's maps are not ours to advise or reuse.
            self._open = {}
            self._pid = os.getpid()
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise DataError("npz file not found", where=path) from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        mapped = self._open.get((path, key))
        if mapped is None or mapped.stamp != stamp:
            mapped = _map(_locate(path, key), stamp)
            self._open[(path, key)] = mapped
        return mapped


_HANDLES = _Handles()


def _map(layout: _Layout, stamp: tuple[int, int]) -> _Mapped:
    try:
        with open(layout.file, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        array = np.ndarray(
            layout.shape,
            dtype=layout.dtype,
            buffer=mapped,
            offset=layout.offset,
            order="F" if layout.fortran else "C",
        )
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"cannot map the array ({exc})", where=layout.file) from None
    return _Mapped(stamp=stamp, layout=layout, array=array, map=mapped)


def _locate(path: Path, key: str) -> _Layout:
    """Finds array ``key`` of the npz: in the zip when stored, else in an extracted copy."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = _member_info(archive, path, key)
            if info.flag_bits & 0x1:
                raise DataError(f"array '{key}' is encrypted", where=path)
            if info.compress_type == zipfile.ZIP_STORED:
                with open(path, "rb") as f:
                    start = _stored_data_offset(f, info, path)
                    f.seek(start)
                    return _npy_layout(f, path, key, end=start + info.file_size)
            cached = _extract(archive, info, path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"cannot read the npz file ({exc})", where=path) from None
    with open(cached, "rb") as f:
        return _npy_layout(f, cached, key, end=cached.stat().st_size)


def _member_info(archive: zipfile.ZipFile, path: Path, key: str) -> zipfile.ZipInfo:
    try:
        return archive.getinfo(f"{key}.npy")
    except KeyError:
        found = ", ".join(archive_keys(archive)) or "none"
        raise DataError(f"no array '{key}'", where=path, hint=f"arrays: {found}") from None


def _stored_data_offset(f: IO[bytes], info: zipfile.ZipInfo, path: Path) -> int:
    """Offset of a stored member's bytes: its local header is followed by name and extra."""
    f.seek(info.header_offset)
    header = f.read(_LOCAL_HEADER_SIZE)
    if len(header) != _LOCAL_HEADER_SIZE or not header.startswith(_LOCAL_HEADER):
        raise DataError(f"damaged zip entry '{info.filename}'", where=path)
    # The local header's own name and extra lengths, which may differ from the central one.
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    return info.header_offset + _LOCAL_HEADER_SIZE + name_length + extra_length


def _npy_layout(f: IO[bytes], file: Path, key: str, *, end: int) -> _Layout:
    """Reads the ``.npy`` header at the file's position; the data follows it up to ``end``."""
    try:
        version = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(f)
    except ValueError as exc:
        raise DataError(f"array '{key}' is not a valid .npy ({exc})", where=file) from None
    if dtype.hasobject:
        raise DataError(
            f"array '{key}' holds Python objects, which are not read (they would run code)",
            where=file,
            hint="save numbers or strings instead",
        )
    layout = _Layout(file=file, offset=f.tell(), end=end, shape=shape, dtype=dtype, fortran=fortran)
    if layout.offset + layout.nbytes > end:
        # The map would read past the array, into the next member: refuse.
        raise DataError(
            f"array '{key}' of shape {shape} is cut short",
            where=file,
            hint="the file is truncated; write it again",
        )
    return layout


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> Path:
    """Extracts a compressed member once into the cache; later calls reuse the copy."""
    from mediscope.files import atomic_path, cache_dir

    stat = path.stat()
    # One folder per version of the file: a rewritten file gets fresh copies.
    version = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    digest = hashlib.sha256(version.encode()).hexdigest()[:16]
    target = cache_dir() / "npz" / f"{path.stem}-{digest}" / info.filename
    if target.is_file() and target.stat().st_size == info.file_size:
        return target
    try:
        # A temporary name, then a rename: a worker never maps a half-written copy.
        with atomic_path(target) as tmp, archive.open(info) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, _COPY_CHUNK)
    except OSError as exc:
        raise DataError(
            f"cannot extract '{info.filename}' into the cache ({exc})",
            where=target,
            hint="free disk space or set MEDISCOPE_CACHE, or save the file with np.savez",
        ) from None
    return target


def archive_keys(archive: zipfile.ZipFile) -> list[str]:
    """The array names of an open ``.npz`` archive."""
    return [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
