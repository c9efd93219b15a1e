"""The ``npz`` format: image and label arrays in a NumPy ``.npz`` file, read lazily.

Keys, MedMNIST style: ``train_images`` / ``train_labels``, ``val_images`` /
``val_labels``, ``test_images`` / ``test_labels`` (the samples carry that split), or plain
``images`` / ``labels``. Images are ``(N, H, W)`` grayscale or ``(N, H, W, C)``, labels
``(N,)`` or ``(N, 1)`` integers. An optional ``classes`` or ``label_names`` array names
the label indices.

A sample's image is a reference ``/abs/dir/train.npz::train_images::123``, read by
:func:`read_item`. ``np.load(..., mmap_mode="r")`` cannot memory-map an array inside a
zip, so a stored (uncompressed) array is mapped straight from the ``.npz`` at its data
offset, and a compressed one is extracted once into the user cache and mapped from
there. Either way the file never has to fit in memory: each read copies one image out
of the map and hands the pages back to the kernel.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
import shutil
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from mediscope.data.samples import Sample, SampleSet
from mediscope.errors import DataError

SPLITS = ("train", "val", "test")
NAME_KEYS = ("classes", "label_names")
_REFERENCE = re.compile(r"^(?P<file>.+\.npz)::(?P<key>[^:]+)::(?P<index>\d+)$", re.IGNORECASE)
_LOCAL_HEADER = b"PK\x03\x04"
_LOCAL_HEADER_SIZE = 30
_COPY_CHUNK = 16 << 20


def read_npz(
    path: Path,
    *,
    classes: list[str] | None = None,
    task: str,
    root: Path | None = None,
    **options: Any,
) -> SampleSet:
    """Reads an ``.npz`` file of images and labels without loading the images.

    Args:
        path: The ``.npz`` file.
        classes: Class names in index order. By default the file's ``classes`` or
            ``label_names`` array, else the sorted distinct labels as names ("0", "1",
            ...). Integer labels are taken as class names when every label is one of
            ``classes``, else as indices into it.
        task: Must be ``classification``.
        root: Ignored (the images are inside the file).
        **options: Ignored; accepted so that every reader takes the same call.

    Returns:
        The samples, with ``split`` set from the ``train_`` / ``val_`` / ``test_`` keys;
        the root is the file's folder, so sample ids read ``train.npz::train_images::7``.

    Raises:
        DataError: when the file is missing or not an npz, the keys or shapes do not fit,
            or a label is not a known class.
    """
    if task != "classification":
        raise DataError(f"the npz format holds no {task} targets", where="data.format")
    path = Path(os.path.abspath(path))
    if not path.is_file():
        raise DataError("npz file not found", where=path, hint="check data.path")
    keys = _array_keys(path)
    parts = _image_label_keys(path, keys)
    labels = {images: _read_labels(path, images, key) for _, images, key in parts}
    values = np.concatenate(list(labels.values()))
    file_names = _read_class_names(path, keys)
    names, index_of = _resolve_classes(path, values, classes, file_names)
    samples: list[Sample] = []
    for split, images, _ in parts:
        indices = index_of(labels[images])
        samples.extend(
            Sample(image=reference(path, images, i), label=int(c), split=split)
            for i, c in enumerate(indices)
        )
    if not samples:
        raise DataError("the npz file holds no images", where=path)
    return SampleSet(classes=names, samples=samples, root=path.parent)


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
        found = ", ".join(_keys_of(archive)) or "none"
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


def _keys_of(archive: zipfile.ZipFile) -> list[str]:
    return [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]


def _array_keys(path: Path) -> set[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return set(_keys_of(archive))
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(
            f"not an npz file ({exc})", where=path, hint="save the arrays with np.savez"
        ) from None


def _image_label_keys(path: Path, keys: set[str]) -> list[tuple[str | None, str, str]]:
    """``(split, images key, labels key)`` of every image array of the file."""
    prefixes: list[tuple[str | None, str]] = [(s, f"{s}_") for s in SPLITS]
    prefixes.append((None, ""))
    parts = []
    for split, prefix in prefixes:
        images, labels = f"{prefix}images", f"{prefix}labels"
        if images not in keys:
            continue
        if labels not in keys:
            raise DataError(
                f"array '{images}' has no '{labels}'",
                where=path,
                hint=f"arrays: {', '.join(sorted(keys))}",
            )
        parts.append((split, images, labels))
    if not parts:
        raise DataError(
            "no image array",
            where=path,
            hint=f"expected images/labels or train_images/train_labels, val_..., test_...; "
            f"found: {', '.join(sorted(keys)) or 'none'}",
        )
    return parts


def _load(path: Path, key: str) -> np.ndarray:
    """Loads one (small) array fully: labels and class names."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return np.asarray(arrays[key])
    except ValueError as exc:
        raise DataError(
            f"cannot read array '{key}' ({exc})", where=path, hint="save numbers or strings"
        ) from None


def _read_labels(path: Path, images_key: str, labels_key: str) -> np.ndarray:
    """The labels as int64 ``(N,)``, checked against the images' shape."""
    images = member_array(path, images_key)
    ok_shape = images.ndim == 3 or (images.ndim == 4 and images.shape[3] in (1, 3, 4))
    if not ok_shape:
        raise DataError(
            f"'{images_key}' has shape {images.shape}; expected (N, H, W) or (N, H, W, C)",
            where=path,
        )
    labels = _load(path, labels_key)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(
            f"'{labels_key}' has shape {labels.shape}; expected (N,) or (N, 1) class indices",
            where=path,
            hint="multi-label targets are not supported",
        )
    if len(labels) != len(images):
        raise DataError(
            f"'{labels_key}' holds {len(labels)} labels for {len(images)} images",
            where=path,
        )
    return _as_integers(labels, labels_key, path)


def _as_integers(labels: np.ndarray, key: str, path: Path) -> np.ndarray:
    numeric = labels.dtype.kind in "biuf"
    if not numeric or (labels.dtype.kind == "f" and not np.all(np.mod(labels, 1) == 0)):
        raise DataError(f"'{key}' must hold integer class indices", where=path)
    values = labels.astype(np.int64)
    if len(values) and values.min() < 0:
        raise DataError(f"'{key}' holds a negative label ({values.min()})", where=path)
    return values


def _read_class_names(path: Path, keys: set[str]) -> list[str] | None:
    for key in NAME_KEYS:
        if key in keys:
            names = _load(path, key)
            if names.ndim != 1 or names.dtype.kind not in "US":
                raise DataError(f"'{key}' must be a 1-D array of class names", where=path)
            return [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]
    return None


def _resolve_classes(
    path: Path, values: np.ndarray, classes: list[str] | None, file_names: list[str] | None
) -> tuple[list[str], Callable[[np.ndarray], np.ndarray]]:
    """Class names, and a function mapping label values to class indices."""
    present = np.unique(values)
    if classes is None and file_names is None:
        names = [str(v) for v in present]
        return names, lambda v: np.searchsorted(present, v)
    names = list(classes if classes is not None else file_names or [])
    if classes is not None and all(str(v) in names for v in present):
        # Every label is a class name (data.classes inferred from a training file).
        lookup = np.array([names.index(str(v)) for v in present])
        return names, lambda v: lookup[np.searchsorted(present, v)]
    if len(present) and present.max() >= len(names):
        source = "data.classes" if classes is not None else "the file's class names"
        raise DataError(
            f"label {present.max()} is out of range for {len(names)} classes of {source}",
            where=path,
            hint=f"classes: {', '.join(names)}",
        )
    return names, lambda v: v
