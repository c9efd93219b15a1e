"""Seconds and peak memory of ``mediscope predict`` on one 4,912 x 3,684 smear.

Makes a synthetic smear of the Clinical Bacteria DataSet's raw size, a detector
checkpoint (the demo's architecture, briefly trained on small synthetic smears so
that it finds boxes), and runs ``mediscope predict`` in a child process with tiles of
``--window`` px (the training scale: tiles are resized to the 320 px input): its
wall time and peak resident memory (``ru_maxrss`` of the child)
are the figures. The target is a peak under 4 GB.
Results: ``benchmarks/results/sliced_inference.json``.

Usage:
    python benchmarks/sliced_inference.py [--window 320] [--merge nms|wbf] [--dir TMPDIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from mediscope.files import write_json_atomic

RESULTS = Path(__file__).parent / "results" / "sliced_inference.json"
SMEAR = (4912, 3684)
TARGET_PEAK_RSS = 4 << 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=320)
    parser.add_argument("--merge", choices=["nms", "wbf"], default="nms")
    parser.add_argument("--train-epochs", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    from mediscope.api import fit
    from mediscope.data.synthetic.gram_stain import generate_gram_stain
    from mediscope.tasks.validate import load_config

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        data = root / "smears"
        generate_gram_stain(
            data, count=48, test_count=0, size=320, seed=0, large=SMEAR, large_count=1
        )
        config = {
            "task": "detection",
            "seed": 0,
            "data": {"format": "yolo", "path": str(data), "image_size": 320, "batch_size": 8},
            "model": {
                "name": "retinanet",
                "params": {"backbone": "resnet18", "channels": 64, "anchor_size": 2.0},
            },
            "trainer": {"max_epochs": args.train_epochs},
            "logging": {"progress": "none"},
            "run": {"name": "bench", "dir": str(root / "runs")},
        }
        path = root / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        result = fit(load_config(path))
        smear = next((data / "large" / "images").glob("*.png"))
        command = [
            sys.executable, "-m", "mediscope.cli.main", "predict", str(result.run_dir),
            "--input", str(smear), "--output", str(root / "out"),
            "--set", f"inference.window={args.window}", "--set", f"inference.merge={args.merge}",
        ]  # fmt: skip
        started = time.perf_counter()
        child = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        if child.returncode != 0:
            raise SystemExit(child.stderr)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        counts = (root / "out" / "counts.csv").read_text().splitlines()
    summary = {
        "image": f"{SMEAR[0]}x{SMEAR[1]}",
        "window": args.window,
        "overlap": 0.25,  # inference.overlap default
        "merge": args.merge,
        "model": "retinanet resnet18, 320 px input",
        "seconds": round(seconds, 2),
        "peak_rss_bytes": peak,
        "peak_rss_gib": round(peak / (1 << 30), 3),
        "target_peak_rss_gib": TARGET_PEAK_RSS / (1 << 30),
        "within_target": peak < TARGET_PEAK_RSS,
        "objects_counted": int(counts[1].split(",")[-1]) if len(counts) > 1 else 0,
        "cpu_threads": os.cpu_count(),
        "machine": platform.platform(),
    }
    write_json_atomic(RESULTS, summary)
    print(summary)


if __name__ == "__main__":
    main()
