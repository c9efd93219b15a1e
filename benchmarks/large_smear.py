"""Seconds and peak memory of counting one 4,912 x 3,684 smear with the default detector.

The detector is the detection demo's (EfficientNet-Lite0 RetinaNet, 256 px tiles with
0.2 overlap), trained once by ``benchmarks/counting.py`` and reused from its ``--dir``.
Each configuration runs in a child process (``mediscope.load(...).predict`` on the smear,
read before the clock starts): eager PyTorch and ONNX Runtime (exported with a dynamic
batch axis), at several tile batch sizes, all in one run so that the figures are ratios
measured side by side on a shared machine; the load average is recorded. Peak memory is
the child's ``VmHWM``.
Results: ``benchmarks/results/large_smear.json``.

Usage:
    python benchmarks/large_smear.py [--dir CACHE] [--batches 1 4 8 16] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from mediscope.files import write_json_atomic

sys.path.insert(0, str(Path(__file__).parent))
from counting import trained_run

RESULTS = Path(__file__).parent / "results" / "large_smear.json"
SMEAR = (4912, 3684)
TARGET_SECONDS = 5.0

CHILD = r"""
import json, sys, time
import numpy as np
import mediscope
model, smear, batch, merge = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
predictor = mediscope.load(model, batch_size=batch)
predictor.info.inference.tta = False  # the speed of one view (the demo votes with four)
predictor.info.inference.merge = merge
if sys.argv[5] != "model":
    predictor.info.inference.score_threshold = float(sys.argv[5])
image, _ = predictor.load_image(smear)
predictor.predict(image[:512, :512])  # warm-up: first calls allocate and plan
tic = time.perf_counter()
result = predictor.predict(image)
seconds = time.perf_counter() - tic
status = open("/proc/self/status").read().split("\n")
hwm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "peak_bytes": hwm, "objects": len(result.boxes)}))
"""


def child(model: Path, smear: Path, batch: int, merge: str, threshold: str) -> dict:
    """One configuration's figures, measured in a fresh process."""
    command = [sys.executable, "-c", CHILD, str(model), str(smear), str(batch), merge, threshold]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    figures: dict = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def summarise(rows: dict[str, dict[int, list[dict]]], args: argparse.Namespace, run: Path) -> dict:
    """The JSON of the configurations measured so far."""
    table = {
        name: {
            str(batch): {
                "seconds": round(min(r["seconds"] for r in runs), 2),
                "seconds_all": [round(r["seconds"], 2) for r in runs],
                "peak_gib": round(max(r["peak_bytes"] for r in runs) / (1 << 30), 3),
                "objects": runs[0]["objects"],
                "load_average": runs[0]["load_average"],
            }
            for batch, runs in by_batch.items()
        }
        for name, by_batch in rows.items()
        if by_batch
    }
    first = table[args.formats[0]][str(args.batches[0])]["seconds"]
    return {
        "image": f"{SMEAR[0]}x{SMEAR[1]}",
        "model": f"run {run.parent.name}/{run.name} (the detection demo's config)",
        "merge": args.merge,
        "score_threshold": args.score_threshold,
        "figures": table,
        f"speedup_vs_{args.formats[0]}_batch_{args.batches[0]}": {
            name: {b: round(first / v["seconds"], 2) for b, v in by_batch.items()}
            for name, by_batch in table.items()
        },
        "target_seconds": TARGET_SECONDS,
        "best_seconds": min(v["seconds"] for by in table.values() for v in by.values()),
        "cpu_threads": os.cpu_count(),
        "machine": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path.home() / ".cache" / "mediscope-bench")
    parser.add_argument("--epochs", type=int, default=None, help="the counting run's")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--merge", default="edge")
    parser.add_argument(
        "--run",
        type=Path,
        default=None,
        help="a detection run folder (default: the counting benchmark's demo run)",
    )
    parser.add_argument("--formats", nargs="+", default=["eager", "onnx"])
    parser.add_argument(
        "--score-threshold", default="model", help="a number, or model: the run's own"
    )
    args = parser.parse_args()
    from mediscope.data.synthetic.gram_stain import generate_gram_stain
    from mediscope.export import export_run

    run = args.run or trained_run(args.dir, args.epochs)
    data = args.dir / "large-4912x3684"
    if not (data / "data.yaml").is_file():
        generate_gram_stain(
            data, count=1, test_count=0, size=256, seed=2, large=SMEAR, large_count=1
        )
    smear = next((data / "large" / "images").glob("*.png"))
    onnx = args.dir / "export" / f"{run.name}.onnx"
    if "onnx" in args.formats and not onnx.is_file():
        export_run(run, format="onnx", output=onnx, dynamic_batch=True)
    models = {name: {"eager": run, "onnx": onnx}[name] for name in args.formats}
    rows: dict[str, dict[int, list[dict]]] = {name: {} for name in models}
    summary: dict = {}
    for _ in range(args.repeats):  # interleaved: each repeat sees the same load
        for batch in args.batches:
            for name, model in models.items():
                figures = child(model, smear, batch, args.merge, args.score_threshold)
                figures["load_average"] = os.getloadavg()
                rows[name].setdefault(batch, []).append(figures)
                print(name, batch, figures, flush=True)
                summary = summarise(rows, args, run)
                write_json_atomic(RESULTS, summary)  # figures so far, should a run be cut
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
