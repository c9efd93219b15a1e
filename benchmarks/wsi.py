"""Peak memory and speed of predicting a large whole slide, streamed.

Writes a synthetic 40,000 x 40,000 px pyramidal TIFF slide (0.5 µm/px, JPEG tiles) tile
by tile in a child process, so that the writer never holds the slide, then predicts it
with :func:`mediscope.slides.predict.predict_slide`: tissue mask, a grid of 224 px
patches at ``--mpp`` over the tissue, batched, class map, tissue map, CSV, GeoJSON and
areas. The network is a stand-in (mean colour of a patch -> class, in NumPy) unless
``--run`` names a trained model, so that the figure is that of the slide pipeline:
reading, masking, batching and writing.

Reports the peak resident memory of the predicting process (``ru_maxrss``, and the
largest ``VmRSS`` sampled every few milliseconds), the writer's peak, patches per
second, and the planted vs found tissue areas. Results: ``benchmarks/results/wsi.json``.

Usage:
    python benchmarks/wsi.py [--side 40000] [--mpp 0.5] [--run RUN_DIR] [--dir TMPDIR]
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from mediscope.files import write_json_atomic

RESULTS = Path(__file__).parent / "results" / "wsi.json"
TARGET_PEAK_RSS = 1536 << 20  # 1.5 GiB
PATCH = 224


def max_rss_bytes() -> int:
    """``ru_maxrss`` of this process in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def vm_bytes(field: str = "VmRSS") -> int:
    """A ``/proc/self/status`` memory field in bytes (0 where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@contextmanager
def sampled_peak(interval: float = 0.005) -> Iterator[dict[str, int]]:
    """Samples VmRSS in a thread; yields a dict holding its maximum."""
    peak = {"VmRSS": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak["VmRSS"] = max(peak["VmRSS"], vm_bytes())
            time.sleep(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


class MeanColour:
    """A stand-in classifier: the class whose texture colour is nearest to the patch's
    mean colour (``probabilities``: a softmax of minus the distances)."""

    name = "stand-in"

    def __init__(self) -> None:
        from mediscope.slides.synthetic import CLASSES

        self.centres = np.array([c[0] for c in CLASSES.values()], dtype=np.float32) / 255

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        means = batch.mean(axis=(2, 3))  # (N, 3), inputs are pixel / 255
        distance = np.linalg.norm(means[:, None, :] - self.centres[None], axis=2)
        logits = -distance * 20
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return {"probabilities": (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)}


def write_child(path: Path, side: int) -> dict[str, Any]:
    """Writes the slide in a child process; its seconds and peak RSS (VmHWM)."""
    code = (
        "import sys, time, json\n"
        "from pathlib import Path\n"
        "from mediscope.slides.synthetic import write_slide\n"
        "start = time.monotonic()\n"
        f"write_slide(Path({str(path)!r}), {side}, {side}, mpp=0.5)\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(json.dumps({'seconds': time.monotonic() - start,"
        " 'peak': int(hwm.split()[1]) * 1024}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    import json

    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=40_000, help="slide side in pixels")
    parser.add_argument("--mpp", type=float, default=0.5, help="the model's µm/px")
    parser.add_argument("--run", type=Path, default=None, help="a trained classifier")
    parser.add_argument("--batch", type=int, default=32, help="patches per batch")
    parser.add_argument("--dir", type=Path, default=None, help="where the slide is written")
    args = parser.parse_args()

    from mediscope.runtime.info import InferenceSettings, ModelInfo
    from mediscope.runtime.predictor import Predictor
    from mediscope.slides.predict import SlideSettings, predict_slide
    from mediscope.slides.synthetic import CLASSES, DEFAULT_REGIONS

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        slide = Path(tmp) / "slide.tif"
        written = write_child(slide, args.side)
        size = slide.stat().st_size
        if args.run is not None:
            import mediscope

            predictor = mediscope.load(args.run, batch_size=args.batch)
            network = f"{args.run.name} ({predictor.format})"
        else:
            info = ModelInfo(
                task="classification",
                classes=list(CLASSES),
                image_size=(PATCH, PATCH),
                channels=3,
                mean=[0.0] * 3,
                std=[1.0] * 3,
                inference=InferenceSettings(mpp=args.mpp),
            )
            predictor = Predictor(MeanColour(), info, batch_size=args.batch)
            network = "stand-in (mean colour, NumPy)"
        before = max_rss_bytes()
        settings = SlideSettings(mpp=args.mpp, progress=sys.stderr.isatty())
        with sampled_peak() as peak:
            start = time.monotonic()
            done = predict_slide(predictor, slide, Path(tmp) / "out", settings)
            seconds = time.monotonic() - start
        rss = max_rss_bytes()
    planted = {r.label: r.area(args.side, args.side) * (0.5e-3) ** 2 for r in DEFAULT_REGIONS}
    found = {name: value["area_mm2"] for name, value in done.summary["classes"].items()}
    result = {
        "benchmark": "stream a synthetic whole slide: tissue mask, patch grid, maps, tables",
        "slide_pixels": [args.side, args.side],
        "slide_file_bytes": size,
        "write_seconds": round(written["seconds"], 1),
        "write_peak_rss_bytes": written["peak"],
        "network": network,
        "mpp": args.mpp,
        "patch": PATCH,
        "batch": args.batch,
        "patches": done.summary["patches"],
        "grid": done.summary["grid"],
        "predict_seconds": round(seconds, 1),
        "patches_per_second": round(done.summary["patches"] / seconds, 1),
        "tissue_mm2": done.summary["tissue_mm2"],
        "planted_mm2": {k: round(v, 3) for k, v in planted.items()},
        "found_mm2": found,
        "peak_rss_bytes_before_predict": before,
        "peak_rss_bytes_ru_maxrss": rss,
        "peak_vmrss_bytes_sampled": peak["VmRSS"],
        "target_peak_rss_bytes": TARGET_PEAK_RSS,
        "target_met": rss < TARGET_PEAK_RSS and peak["VmRSS"] < TARGET_PEAK_RSS,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    write_json_atomic(RESULTS, result)
    mb = 1 << 20
    print(
        f"{args.side}x{args.side} slide ({size / mb:.0f} MiB, written in "
        f"{written['seconds']:.0f} s, writer peak {written['peak'] / mb:.0f} MiB); "
        f"{done.summary['patches']} patches in {seconds:.0f} s; peak RSS {rss / mb:.0f} MiB "
        f"(ru_maxrss), {peak['VmRSS'] / mb:.0f} MiB (sampled); target < "
        f"{TARGET_PEAK_RSS / mb:.0f} MiB"
    )
    print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()
