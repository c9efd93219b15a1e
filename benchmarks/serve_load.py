"""Requests per second, latency and peak memory of ``mediscope serve`` under load.

Trains the demo classifier and detector briefly on small synthetic data, exports both
to ONNX, starts ``mediscope serve`` on both in a child process (uvicorn on 127.0.0.1)
and sends ``POST /api/predict`` requests from 1, 4 and 16 concurrent clients (threads
of this process, one HTTP connection each) for a fixed time per level: a 64 px Gram
crop to the classifier, an 800 x 600 smear (cut into the demo's 256 px tiles) to the
detector. The figures per model and level: requests answered, requests per second,
median and 95th-percentile latency of the successful ones, and refusals (429); and the
server's resident memory after loading and at its peak (sampled every 50 ms, and the
kernel's high-water mark ``VmHWM`` where there is one). The server runs with
``--queue 16``, so that 16 clients wait rather than being refused. Clients and server
share this machine's cores. Results: ``benchmarks/results/serve_load.json``.

Usage:
    python benchmarks/serve_load.py [--seconds 8] [--levels 1,4,16] [--dir TMPDIR]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from PIL import Image

from mediscope.files import write_json_atomic

RESULTS = Path(__file__).parent / "results" / "serve_load.json"
QUEUE = 16


def make_models(base: Path) -> dict[str, Path]:
    """The demo classifier and detector, one epoch on small synthetic data, as ONNX."""
    from mediscope.api import fit
    from mediscope.data.synthetic.gram_crops import generate_gram_crops
    from mediscope.data.synthetic.gram_stain import generate_gram_stain
    from mediscope.demo import demo_config, detection_demo_config
    from mediscope.export import export_run

    crops, smears, runs = base / "crops", base / "smears", base / "runs"
    generate_gram_crops(crops, per_class=24, test_per_class=4, size=64, seed=1)
    generate_gram_stain(
        smears, count=24, test_count=4, size=256, seed=2, large=(800, 600), large_count=1
    )
    configs = {
        "classification": demo_config(crops, runs, epochs=1),
        "detection": detection_demo_config(smears, runs, epochs=1),
    }
    models = {}
    for task, config in configs.items():
        run = fit(config).run_dir
        models[task] = export_run(run, format="onnx").model
    return models


def images(base: Path) -> dict[str, tuple[str, bytes, tuple[int, int]]]:
    """The image sent to each model: ``(name, PNG bytes, (width, height))``."""
    crop = sorted((base / "crops" / "test").rglob("*.png"))[0]
    smear = sorted((base / "smears" / "large").rglob("*.png"))[0]
    out = {}
    for task, path in (("classification", crop), ("detection", smear)):
        with Image.open(path) as picture:
            size = picture.size
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
        out[task] = (path.name, buffer.getvalue(), size)
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MemoryWatch(threading.Thread):
    """Samples a process's resident memory every 50 ms; ``peak`` is the largest."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)


def high_water_mark(pid: int) -> int | None:
    """The kernel's peak resident memory of ``pid`` (Linux ``VmHWM``), in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def start_server(models: dict[str, Path], port: int) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-c",
        "import sys; from mediscope.cli.main import main; sys.exit(main())",
        "serve",
        *[str(path) for path in models.values()],
        "--port",
        str(port),
        "--queue",
        str(QUEUE),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server stopped: {process.communicate()[1]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not answer within 120 s")


def load_level(
    base: str, model: str, image: tuple[str, bytes, Any], clients: int, seconds: float
) -> dict[str, Any]:
    """``clients`` threads posting the image for ``seconds``; the level's figures."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client() -> None:
        with httpx.Client(base_url=base, timeout=300) as http:
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                response = http.post(
                    "/api/predict",
                    data={"model": model},
                    files={"image": (image[0], image[1], "image/png")},
                )
                took = time.perf_counter() - start
                with lock:
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    if response.status_code == 200:
                        latencies.append(took)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)

    def percentile(q: float) -> float | None:
        if not ordered:
            return None
        return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000, 1)

    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": sum(statuses.values()),
        "ok": statuses.get(200, 0),
        "refused_429": statuses.get(429, 0),
        "other_status": {str(k): v for k, v in statuses.items() if k not in (200, 429)},
        "requests_per_second": round(len(latencies) / elapsed, 2),
        "latency_ms_p50": percentile(0.5),
        "latency_ms_p95": percentile(0.95),
        "latency_ms_mean": round(statistics.fmean(ordered) * 1000, 1) if ordered else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    levels = [int(v) for v in args.levels.split(",")]
    load_at_start = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        base_dir = Path(tmp)
        print("training and exporting the demo models (one epoch each)", flush=True)
        models = make_models(base_dir)
        sent = images(base_dir)
        port = free_port()
        server = start_server(models, port)
        watch = MemoryWatch(server.pid)
        watch.start()
        base = f"http://127.0.0.1:{port}"
        try:
            listed = httpx.get(f"{base}/api/models").json()["models"]
            ids = {model["task"]: model["id"] for model in listed}
            idle = psutil.Process(server.pid).memory_info().rss
            results = []
            for task in ("classification", "detection"):
                for _ in range(3):  # warm up
                    httpx.post(
                        f"{base}/api/predict",
                        data={"model": ids[task]},
                        files={"image": (sent[task][0], sent[task][1], "image/png")},
                        timeout=300,
                    )
                for clients in levels:
                    level = load_level(base, ids[task], sent[task], clients, args.seconds)
                    level = {"task": task, "model": ids[task], **level}
                    results.append(level)
                    print(json.dumps(level), flush=True)
            peak_kernel = high_water_mark(server.pid)
        finally:
            watch.stop.set()
            server.terminate()
            server.communicate(timeout=30)
    report = {
        "benchmark": "serve_load",
        "what": "POST /api/predict against `mediscope serve` (uvicorn, 127.0.0.1) on the "
        "demo classifier and detector exported to ONNX; clients are threads of the "
        "benchmark process on the same machine",
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(v, 2) for v in load_at_start],
        },
        "server": {
            "queue": QUEUE,
            "format": "onnx",
            "seconds_per_level": args.seconds,
            "detection": "boxes kept down to score 0.01 (the page's slider), as served",
        },
        "images": {
            task: {"name": name, "bytes": len(data), "width": size[0], "height": size[1]}
            for task, (name, data, size) in sent.items()
        },
        "memory_mb": {
            "after_load": round(idle / 2**20, 1),
            "peak_sampled": round(watch.peak / 2**20, 1),
            "peak_vmhwm": round(peak_kernel / 2**20, 1) if peak_kernel else None,
        },
        "results": results,
    }
    write_json_atomic(RESULTS, report)
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
