"""Memory and speed of reading a large ``.npz`` through the npz format's memory maps.

Writes an uncompressed ``.npz`` of ~14k 224 x 224 x 3 uint8 patches (~2 GB; streamed,
so the writer never holds it), reads it with the ``npz`` format and calls ``read_image``
on every sample once in file order and once in random order. Reports the peak resident
memory (``ru_maxrss`` over the whole process, and the largest ``VmRSS`` sampled every
few milliseconds per phase) and the throughput. For contrast, a child process reads the
same file the naive way (``np.load(path)["train_images"]``) and reports its peak.

The file has just been written, so it sits in the page cache: the throughput is that of
the memory maps and copies, not of the disk. The file is deleted at the end.
Results: ``benchmarks/results/npz_memmap.json``.

Usage:
    python benchmarks/npz_memmap.py [--patches N] [--size S] [--dir TMPDIR] [--no-naive]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from mediscope.data.images import read_image
from mediscope.files import write_json_atomic
from mediscope.registry import FORMATS

RESULTS = Path(__file__).parent / "results" / "npz_memmap.json"
TARGET_PEAK_RSS = 1 << 30
CHUNK = 256  # patches written at a time (~38 MB at 224 px)
CLASSES = 9


def patches(first: int, count: int, size: int) -> np.ndarray:
    """Patches ``first .. first + count - 1``: a gradient shifted by the patch index."""
    y, x = np.mgrid[0:size, 0:size]
    base = (np.stack([y, x, y + x], axis=-1) % 256).astype(np.uint8)
    shift = (np.arange(first, first + count) % 256).astype(np.uint8).reshape(-1, 1, 1, 1)
    return base[None] + shift  # uint8 arithmetic wraps modulo 256, and stays small


def write_npz(path: Path, count: int, size: int) -> None:
    """Writes ``train_images`` / ``train_labels`` as stored zip members, chunk by chunk."""
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
        "fortran_order": False,
        "shape": (count, size, size, 3),
    }
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        with archive.open("train_images.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, header)
            for first in range(0, count, CHUNK):
                f.write(patches(first, min(CHUNK, count - first), size).tobytes())
        labels = np.random.default_rng(0).integers(0, CLASSES, (count, 1), dtype=np.int64)
        with archive.open("train_labels.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, labels)


def status_bytes(field: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``RssFile``, ...) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    return 0


def max_rss_bytes() -> int:
    """``ru_maxrss`` of this process in bytes (kilobytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


@contextmanager
def sampled_peak(interval: float = 0.005) -> Iterator[dict[str, int]]:
    """Samples VmRSS and RssFile in a thread; yields a dict filled with their maxima."""
    peak = {"VmRSS": 0, "RssFile": 0, "RssAnon": 0}
    done = threading.Event()

    def sample() -> None:
        while True:
            for field in peak:
                peak[field] = max(peak[field], status_bytes(field))
            if done.wait(interval):
                return

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()


def read_all(refs: list[str], order: np.ndarray, size: int) -> dict[str, Any]:
    """Reads ``refs`` in ``order``, checking pixels; returns time, rates and peak memory."""
    with sampled_peak() as peak:
        start = time.perf_counter()
        for n, i in enumerate(order):
            image = read_image(refs[i])
            if image[0, 0, 0] != i % 256:
                raise AssertionError(f"patch {i}: wrong pixels")
            if n % 1000 == 0 and not np.array_equal(image, patches(int(i), 1, size)[0]):
                raise AssertionError(f"patch {i}: wrong pixels")
        seconds = time.perf_counter() - start
    megabytes = len(order) * size * size * 3 / 1e6
    return {
        "seconds": round(seconds, 3),
        "images_per_second": round(len(order) / seconds, 1),
        "megabytes_per_second": round(megabytes / seconds, 1),
        "peak_vmrss_bytes": peak["VmRSS"],
        "peak_rss_file_bytes": peak["RssFile"],
        "peak_rss_anon_bytes": peak["RssAnon"],
    }


# VmHWM, not ru_maxrss: a child's ru_maxrss starts from its parent's peak at fork.
NAIVE = """
import sys, numpy as np
with np.load(sys.argv[1]) as f:
    images = f["train_images"]
    total = sum(int(images[i, 0, 0, 0]) for i in range(len(images)))
print(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1])
"""


def naive_peak(path: Path) -> int:
    """Peak RSS (VmHWM) of a child that reads the file with plain ``np.load``."""
    out = subprocess.run(
        [sys.executable, "-c", NAIVE, str(path)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1]) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=14_000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary file goes")
    parser.add_argument("--no-naive", action="store_true", help="skip the np.load contrast")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="npz-memmap-", dir=args.dir) as tmp:
        path = Path(tmp) / "train.npz"
        with sampled_peak() as write_peak:
            start = time.perf_counter()
            write_npz(path, args.patches, args.size)
            write_seconds = time.perf_counter() - start
        start = time.perf_counter()
        samples = FORMATS.get("npz")(path, classes=None, task="classification")
        index_seconds = time.perf_counter() - start
        refs = [s.image for s in samples.samples]
        in_order = read_all(refs, np.arange(len(refs)), args.size)
        shuffled = read_all(refs, np.random.default_rng(0).permutation(len(refs)), args.size)
        naive = None if args.no_naive else naive_peak(path)
        file_size = path.stat().st_size
    peak = max_rss_bytes()
    sampled = max(in_order["peak_vmrss_bytes"], shuffled["peak_vmrss_bytes"])
    result = {
        "benchmark": "read every patch of a large uncompressed .npz via the npz format",
        "patches": args.patches,
        "patch_shape": [args.size, args.size, 3],
        "file_size_bytes": file_size,
        "write_seconds": round(write_seconds, 2),
        "write_peak_vmrss_bytes": write_peak["VmRSS"],
        "index_seconds": round(index_seconds, 3),
        "in_order": in_order,
        "random_order": shuffled,
        "peak_rss_bytes_ru_maxrss": peak,
        "peak_vmrss_bytes_sampled": sampled,
        "naive_np_load_peak_rss_bytes": naive,
        "target_peak_rss_bytes": TARGET_PEAK_RSS,
        "target_met": peak < TARGET_PEAK_RSS and sampled < TARGET_PEAK_RSS,
        "page_cache": "warm: the file was just written",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    write_json_atomic(RESULTS, result)
    mb = 1 << 20
    print(
        f"file {file_size / mb:.0f} MiB; peak RSS {peak / mb:.0f} MiB (ru_maxrss), "
        f"{sampled / mb:.0f} MiB (VmRSS sampled); target < {TARGET_PEAK_RSS / mb:.0f} MiB; "
        f"in order {in_order['images_per_second']:.0f} img/s, "
        f"random {shuffled['images_per_second']:.0f} img/s; written to {RESULTS}"
    )


if __name__ == "__main__":
    main()
