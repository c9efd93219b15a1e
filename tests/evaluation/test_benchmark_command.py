"""``mediscope benchmark``: speed and accuracy per format of a run's model."""

from __future__ import annotations

import doctest
import json
import shutil
from pathlib import Path

import pytest

from mediscope.evaluation import speed

pytest.importorskip("onnxruntime")

#: Few timed calls: the test checks what is measured and written, not the figures.
QUICK = ["--repeats", "2", "--rounds", "1", "--warmup", "1"]
METRICS = {"classification": "accuracy", "segmentation": "dice_mean", "detection": "map_50"}


def _tolerance(task: str, n_images: int) -> float:
    """How far the ONNX file's accuracy may be from eager's. Their outputs agree within
    1e-4 (checked at export); a near-tie may still flip one image's class (accuracy
    1 / n) and move a few pixels (Dice) or a low-scoring box (mAP) a little."""
    return {"classification": 1 / n_images, "segmentation": 1e-3, "detection": 0.01}[task]


@pytest.mark.parametrize("task", ["classification", "segmentation", "detection"])
def test_eager_and_onnx_speed_and_accuracy(
    cli, trained_runs: dict[str, Path], tmp_path: Path, task: str
) -> None:
    target = tmp_path / "bench.json"
    args = ["--formats", "eager,onnx", "--batch", "1", "--output", target, *QUICK]
    result = cli("benchmark", trained_runs[task], *args)
    assert result.code == 0, result.err
    data = json.loads(target.read_text())
    assert data["task"] == task and data["settings"]["threads"] >= 1
    assert len(data["load_average"]["before"]) == 3
    formats = data["formats"]
    assert list(formats) == ["eager", "onnx"]
    for entry in formats.values():
        for kind in ("network", "predict"):
            figures = entry[kind]["1"]
            assert figures["calls"] == 2
            assert figures["p95_ms"] >= figures["p50_ms"] > 0
            assert figures["images_per_second"] > 0 and figures["speedup"] > 0
        assert entry["accuracy"]["metric"] == METRICS[task]
        assert entry["accuracy"]["n_images"] == data["validation_images"] > 0
    assert formats["eager"]["network"]["1"]["speedup"] == 1.0
    assert formats["onnx"]["file_bytes"] > 0 and formats["eager"]["file_bytes"] is None
    eager, onnx = formats["eager"]["accuracy"]["value"], formats["onnx"]["accuracy"]["value"]
    if eager is None:  # undefined for both (e.g. no box of any class found)
        assert onnx is None
    else:
        assert abs(onnx - eager) <= _tolerance(task, data["validation_images"])
    assert "eager" in result.out and "onnx" in result.out and str(target) in result.out


def test_other_formats_larger_batches_and_the_default_output(
    cli, trained_runs: dict[str, Path], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_runs["classification"], run)
    args = ["--formats", "torchscript,int8", "--batch", "3", "--no-predict", "--no-accuracy"]
    result = cli("benchmark", run, *args, "--repeats", "1", "--rounds", "1", "--warmup", "0")
    assert result.code == 0, result.err
    data = json.loads((run / "benchmark.json").read_text())
    formats = data["formats"]
    assert list(formats) == ["torchscript", "int8"]
    for entry in formats.values():
        assert entry["network"]["3"]["calls"] == 1
        assert "speedup" not in entry["network"]["3"]  # no eager to compare with
        assert entry["predict"] == {} and "accuracy" not in entry
    assert not list(run.glob("export*"))  # the exports went to a temporary folder


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--formats", "eager,tflite"], "error: --formats: unknown format 'tflite'"),
        (["--formats", ","], "error: --formats: no format given"),
        (["--batch", "1,0"], "error: --batch: batch size '0' is not a whole number from 1"),
        (["--repeats", "0"], "error: --repeats: must be at least 1, got 0"),
        (["--output", "RUN"], "is a folder; --output names the JSON file to write"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    cli, trained_runs: dict[str, Path], args: list[str], message: str
) -> None:
    run = trained_runs["classification"]
    result = cli("benchmark", run, *[str(run) if a == "RUN" else a for a in args])
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (run / "benchmark.json").exists()


def test_not_a_run_folder_exits_2_with_one_line(cli, tmp_path: Path) -> None:
    result = cli("benchmark", tmp_path, "--formats", "eager")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert lines == [
        f"error: {tmp_path}: not a run folder: no config.yaml; give a run folder written by "
        "'mediscope fit' (runs/NAME/TIME)"
    ]


def test_interleaved_rotates_the_order_and_skips_warmup() -> None:
    order: list[str] = []
    calls = {name: (lambda name=name: order.append(name)) for name in "abc"}
    times = speed.interleaved(calls, warmup=1, repeats=2, rounds=3)
    assert order[:3] == ["a", "b", "c"]  # warm-up, untimed
    assert order[3:] == list("aabbcc" + "bbccaa" + "ccaabb")
    assert all(len(v) == 6 for v in times.values())


def test_latency_summary_figures() -> None:
    figures = speed.latency_summary([0.010, 0.020, 0.030, 0.100], batch=4)
    assert figures["calls"] == 4
    assert figures["images_per_second"] == pytest.approx(16 / 0.16)
    assert figures["p50_ms"] == pytest.approx(25.0)
    assert 30.0 < figures["p95_ms"] <= 100.0


def test_docstring_examples_run() -> None:
    outcome = doctest.testmod(speed)
    assert outcome.attempted > 0 and outcome.failed == 0


def test_a_failing_dynamic_int8_export_falls_back_to_one_image_per_call(
    trained_runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mediscope.export import api

    real = api.export_run

    def export_run(run_dir: Path, **options: object) -> api.ExportResult:
        if options.get("dynamic_batch") and options.get("quantize"):
            raise RuntimeError("QLinearMul: cannot broadcast\nsecond line")
        return real(run_dir, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(api, "export_run", export_run)
    settings = speed.BenchmarkSettings(
        formats=["onnx", "int8"], batches=[1, 3], warmup=0, repeats=1, rounds=1, accuracy=False
    )
    result = speed.benchmark_run(trained_runs["classification"], settings, workdir=tmp_path)
    note = result["formats"]["int8"]["note"]
    assert note.startswith("batches above 1 run the batch-1 int8 file once per image")
    assert note.endswith("(RuntimeError: QLinearMul: cannot broadcast)")
    assert "note" not in result["formats"]["onnx"]
    for fmt in ("onnx", "int8"):
        assert result["formats"][fmt]["network"]["3"]["calls"] == 1
        assert result["formats"][fmt]["predict"]["3"]["calls"] == 1
    assert list(tmp_path.iterdir()) == []  # the temporary exports are gone


def test_per_image_backend_concatenates_the_outputs() -> None:
    import numpy as np

    class One:
        name, info = "onnx", None

        def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
            assert len(batch) == 1
            return {"probabilities": batch.reshape(1, -1)[:, :2]}

    batch = np.arange(12, dtype=np.float32).reshape(3, 1, 2, 2)
    out = speed.PerImage(One()).run(batch)["probabilities"]
    assert out.tolist() == [[0, 1], [4, 5], [8, 9]]


def test_torch_threads_do_not_spin_in_the_command(
    trained_runs: dict[str, Path], tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    target = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    args = ["--formats", "eager", "--batch", "1", "--no-predict", "--no-accuracy", "-o", target]
    command = [
        sys.executable,
        "-m",
        "mediscope.cli.main",
        "benchmark",
        trained_runs["classification"],
    ]
    child = subprocess.run(
        [str(a) for a in [*command, *args, "--repeats", "1", "--rounds", "1", "--warmup", "0"]],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert json.loads(target.read_text())["machine"]["omp_wait_policy"] == "PASSIVE"
