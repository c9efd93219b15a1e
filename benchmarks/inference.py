"""Inference speed on this CPU: eager PyTorch, TorchScript, ONNX fp32 and ONNX int8.

Models: the three demo models, trained briefly on small generated data from the
packaged configs (``configs/demo/*.yaml``: speed, not accuracy, is measured), and
resnet18 (``timm:resnet18``) and ``efficientnet_lite0`` classifiers at 224 px with
random weights (one training step, so that a run folder with a checkpoint exists).
Each run is exported with :func:`mediscope.export.export_run` (ONNX with and without
a symbolic batch axis, int8 static QDQ, TorchScript) and measured with
:mod:`mediscope.evaluation.speed` in this one process:

* the network call on prepared batches of 1 and 16 validation images, the formats'
  timed calls interleaved over ``--rounds`` rounds after ``--warmup`` untimed calls,
  with torch and onnxruntime both on as many threads as the CPU has cores; then the
  same with one thread for all (no intra-op parallelism: the kernels alone);
* ``Predictor.predict`` end to end at batch 1 (resize, normalise, network,
  post-processing), the same way;
* accuracy per format on the validation split (demo models only).

Last, the demo detector counts a 4,912 x 3,684 synthetic smear in tiles
(``inference.window`` 256 px, overlap 0.2) once per format, each in its own process
(``mediscope.load(...).predict``): seconds, that process's peak resident memory
(``VmHWM``; a child's ``ru_maxrss`` would start from the parent's size at the fork) and
whether the counts agree with eager's. The load average before and after is kept.
Results: ``benchmarks/results/inference.json``.

Neither runtime spins idle threads: mediscope's onnxruntime sessions do not, and
``OMP_WAIT_POLICY`` is ``PASSIVE`` for torch's OpenMP unless set otherwise before the
run. With spinning threads on a machine busier than its cores, eager PyTorch at 2
threads was measured up to 30 times slower than at 1 thread (a spinning thread holds a
core while the one it waits for cannot run), which would credit ONNX with speed-ups
that are only contention.

Usage:
    python benchmarks/inference.py [--repeats 5] [--rounds 3] [--warmup 2] [--epochs 2]
                                   [--dir TMPDIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "inference.json"
SMEAR = (4912, 3684)
FORMATS = ("eager", "torchscript", "onnx", "int8")
BATCHES = (1, 16)
#: Targets at batch 1: images per second over eager's (here: eager's p50 over the format's).
TARGETS = {"onnx": 2.0, "int8": 3.0}
#: Validation images used per model (speed inputs and accuracy).
LIMIT = 48


def peak_rss() -> int:
    """This process's peak resident memory in bytes: ``VmHWM`` of its own memory map.

    ``ru_maxrss`` is not used where ``/proc`` has the figure: after fork and exec it
    keeps the parent's peak, so a child started by a large process reports that.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def smear_child(model: str, image: str, threads: int) -> None:
    """Counts one smear with ``model`` and prints one JSON line (run in a child process)."""
    started = time.perf_counter()
    if not model.endswith(".onnx"):
        import torch

        torch.set_num_threads(threads)
    import mediscope
    from mediscope.runtime.inputs import to_image

    predictor = mediscope.load(model, threads=threads)
    loaded = time.perf_counter()
    picture, _ = to_image(image, channels=predictor.info.channels)
    read = time.perf_counter()
    result = predictor.predict(picture)
    done = time.perf_counter()
    peak = peak_rss()
    print(
        json.dumps(
            {
                "format": predictor.format,
                "load_seconds": loaded - started,
                "read_seconds": read - loaded,
                "predict_seconds": done - read,
                "counts": result.counts(),  # type: ignore[union-attr]
                "boxes": len(result.boxes),  # type: ignore[union-attr]
                "peak_rss_bytes": peak,
                "torch_imported": "torch" in sys.modules,
            }
        )
    )


def write_config(path: Path, text: str, overrides: dict[str, Any]) -> Path:
    """A packaged config's text with ``overrides`` (dotted keys) applied, as YAML."""
    import yaml

    config = yaml.safe_load(text)
    for key, value in overrides.items():
        node = config
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def train_models(root: Path, epochs: int) -> dict[str, dict[str, Any]]:
    """The five runs: name -> run folder and how it was trained."""
    from mediscope.api import fit
    from mediscope.data.synthetic.gram_crops import generate_gram_crops
    from mediscope.data.synthetic.gram_stain import generate_gram_stain
    from mediscope.data.synthetic.lesions import generate_lesions
    from mediscope.demo import (
        DEMO_CONFIG,
        DETECTION_CONFIG,
        SEGMENTATION_CONFIG,
        packaged_config_text,
    )
    from mediscope.tasks.validate import load_config

    crops, lesions, smears = root / "crops", root / "lesions", root / "smears"
    generate_gram_crops(crops, per_class=60, test_per_class=2, size=64, seed=0)
    generate_lesions(lesions, train=48, val=16, test=2, size=96, seed=0)
    generate_gram_stain(
        smears, count=40, test_count=0, size=256, seed=0, large=SMEAR, large_count=1
    )
    common = {"logging.progress": "none", "run.dir": str(root / "runs")}
    short = {**common, "trainer.max_epochs": epochs}
    plans: dict[str, tuple[str, dict[str, Any], str]] = {
        "demo classifier": (
            DEMO_CONFIG,
            {**short, "data.path": str(crops / "train"), "data.test_path": str(crops / "test")},
            f"configs/demo/gram-crops.yaml, {epochs} epochs on 240 generated crops",
        ),
        "demo segmenter": (
            SEGMENTATION_CONFIG,
            {**short, "data.path": str(lesions)},
            f"configs/demo/lesions.yaml, {epochs} epochs on 48 generated images",
        ),
        "demo detector": (
            DETECTION_CONFIG,
            {**short, "data.path": str(smears)},
            f"configs/demo/gram-stain.yaml, {epochs} epochs on 40 generated smears",
        ),
    }
    for name, model in (
        ("resnet18", "timm:resnet18"),
        ("efficientnet_lite0", "efficientnet_lite0"),
    ):
        plans[f"{name} 224 px"] = (
            DEMO_CONFIG,
            {
                **common,
                "data.path": str(crops / "train"),
                "data.test_path": str(crops / "test"),
                "data.image_size": 224,
                "data.batch_size": 16,
                "model": {"name": model, "pretrained": False},
                "trainer.max_epochs": 1,
                "trainer.limit_train_batches": 1,
                "trainer.limit_val_batches": 1,
                "run.name": name.replace("_", "-"),
            },
            f"{model}, random weights (one training step), 224 px",
        )
    runs = {}
    for name, (packaged, overrides, how) in plans.items():
        path = write_config(
            root / f"{name.replace(' ', '-')}.yaml", packaged_config_text(packaged), overrides
        )
        started = time.perf_counter()
        result = fit(load_config(path))
        runs[name] = {
            "run_dir": result.run_dir,
            "training": how,
            "train_seconds": round(time.perf_counter() - started, 1),
        }
        print(f"trained {name} in {runs[name]['train_seconds']} s: {result.run_dir}", flush=True)
    return runs


def count_smear(model: Path, image: Path, threads: int) -> dict[str, Any]:
    """One child process counting the smear with ``model``: its figures and wall time."""
    command = [
        sys.executable, __file__, "--smear-child", str(model), str(image),
        "--threads", str(threads),
    ]  # fmt: skip
    started = time.perf_counter()
    child = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(child.stderr[-2000:])
    figures: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    figures["process_seconds"] = seconds
    return figures


def smear_benchmark(prepared: Any, root: Path, threads: int) -> dict[str, Any]:
    """The demo detector on the large smear, eager vs ONNX (and int8), one process each."""
    from mediscope.runtime.pipeline import tile_windows

    smear = next((root / "smears" / "large" / "images").glob("*.png"))
    settings = prepared.info.inference
    models = {
        "eager": prepared.run,
        "onnx": prepared.files["onnx", False],
        "int8": prepared.files["int8", False],
    }
    found = {}
    for fmt, model in models.items():
        print(f"smear: {fmt}", flush=True)
        found[fmt] = count_smear(model, smear, threads)
    eager = found["eager"]
    for figures in found.values():
        figures["counts_equal_eager"] = figures["counts"] == eager["counts"]
        figures["count_difference"] = {
            c: figures["counts"].get(c, 0) - eager["counts"].get(c, 0)
            for c in sorted(set(figures["counts"]) | set(eager["counts"]))
        }
        figures["peak_rss_gib"] = round(figures["peak_rss_bytes"] / (1 << 30), 3)
        figures["speedup_predict"] = eager["predict_seconds"] / figures["predict_seconds"]
    window = settings.window or prepared.info.image_size
    return {
        "image": f"{SMEAR[0]}x{SMEAR[1]}",
        "window": list(window),
        "overlap": settings.overlap,
        "tiles": len(tile_windows(SMEAR[1], SMEAR[0], window, settings.overlap)),
        "merge": settings.merge,
        "score_threshold": settings.score_threshold,
        "threads": threads,
        "peak_rss": "VmHWM of the child process (mediscope.load, reading the image, predict)",
        "formats": found,
    }


def _speedup(figures: dict[str, Any] | None) -> str:
    return "-" if not figures else f"{figures['speedup']:.2f}"


def summary_rows(models: dict[str, Any]) -> list[str]:
    """A markdown table: p50 latency of the network call per format, and speed-ups
    (eager's p50 over the format's) of the network call and of ``Predictor.predict``."""
    rows = [
        "| model | px | threads | batch | eager ms | ts ms | onnx ms | int8 ms | "
        "onnx/eager | int8/eager | predict onnx/eager | predict int8/eager |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in models.items():
        for threads, formats in ((entry["threads"], entry["formats"]), (1, entry["single_thread"])):
            for batch in map(str, BATCHES):
                net = {f: formats[f]["network"][batch] for f in FORMATS}
                predict = {f: formats[f]["predict"].get(batch) for f in ("onnx", "int8")}
                rows.append(
                    f"| {name} | {entry['image_size'][0]} | {threads} | {batch} | "
                    + " | ".join(f"{net[f]['p50_ms']:.2f}" for f in FORMATS)
                    + f" | {_speedup(net['onnx'])} | {_speedup(net['int8'])} | "
                    f"{_speedup(predict['onnx'])} | {_speedup(predict['int8'])} |"
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--smear-child", nargs=2, metavar=("MODEL", "IMAGE"), default=None)
    args = parser.parse_args()
    # Before torch is imported (its OpenMP runtime reads it once; children inherit it).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.smear_child:
        smear_child(*args.smear_child, threads=args.threads)
        return

    from mediscope.evaluation.speed import (
        BenchmarkSettings,
        describe,
        load_average,
        machine,
        measure_accuracy,
        measure_speed,
        prepare,
    )

    threads = args.threads
    started = time.perf_counter()
    before = load_average()
    timing = {"warmup": args.warmup, "repeats": args.repeats, "rounds": args.rounds}
    models: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mediscope-inference-", dir=args.dir) as tmp:
        root = Path(tmp)
        runs = train_models(root, args.epochs)
        smear: dict[str, Any] = {}
        for name, run in runs.items():
            print(f"== {name}", flush=True)
            load_model = load_average()
            prepared = prepare(
                run["run_dir"], FORMATS, BATCHES, root / "export" / name.replace(" ", "-"),
                limit=LIMIT, log=print,
            )  # fmt: skip
            formats = measure_speed(
                prepared, BATCHES, threads=threads, predict_batches=(1,), log=print, **timing
            )
            single = measure_speed(prepared, BATCHES, threads=1, log=print, **timing)
            if name.startswith("demo"):
                for fmt, measured in measure_accuracy(prepared, threads=threads).items():
                    formats[fmt]["accuracy"] = measured
            head = describe(prepared, BenchmarkSettings(batches=BATCHES, **timing), threads)
            for fmt in FORMATS:
                formats[fmt]["file_bytes"] = prepared.file_bytes(fmt)
            models[name] = {
                "task": head["task"],
                "model": head["model"],
                "model_params": head["model_params"],
                "image_size": head["image_size"],
                "training": run["training"],
                "train_seconds": run["train_seconds"],
                "validation_images": head["validation_images"],
                "threads": threads,
                "formats": formats,
                "single_thread": single,
                "targets_met_batch1": {
                    f"{count}_threads": {
                        fmt: measured[fmt]["network"]["1"]["speedup"] >= target
                        for fmt, target in TARGETS.items()
                    }
                    for count, measured in ((threads, formats), (1, single))
                },
                "notes": prepared.notes,
                "load_average": {"before": load_model, "after": load_average()},
            }
            if name == "demo detector":
                smear = smear_benchmark(prepared, root, threads)
    result = {
        "benchmark": "inference speed per format: eager PyTorch, TorchScript, ONNX fp32, "
        "ONNX int8 (CPU)",
        "settings": {
            **head["settings"],
            "batches": list(BATCHES),
            "predict_batches": [1],
            "validation_images_max": LIMIT,
            "single_thread": "the network call again with 1 thread for torch and onnxruntime",
        },
        "targets_batch1": {f"{fmt}_speedup": value for fmt, value in TARGETS.items()},
        "machine": machine(threads),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average": {"before": before, "after": load_average()},
        "seconds": round(time.perf_counter() - started, 1),
        "models": models,
        "smear": smear,
    }
    result["settings"].pop("formats", None)
    from mediscope.files import write_json_atomic

    write_json_atomic(RESULTS, result)
    print("\n".join(summary_rows(models)))
    if smear:
        for fmt, figures in smear["formats"].items():
            print(
                f"smear {fmt}: predict {figures['predict_seconds']:.1f} s, process "
                f"{figures['process_seconds']:.1f} s, peak {figures['peak_rss_gib']} GiB, "
                f"counts {figures['counts']} (equal to eager: {figures['counts_equal_eager']})"
            )
    print(f"load average before {before}, after {result['load_average']['after']}")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
