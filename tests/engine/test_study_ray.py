"""Studies on a Ray cluster (``compare --backend ray``): a local two-worker cluster on
127.0.0.1 gives the local backend's leaderboard, and a study whose worker is killed
mid-run still finishes, the killed run continuing from its ``last.ckpt``."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

import mediscope
from helpers import tiny_config
from mediscope.study import RayOptions, plan_study, run_study, run_study_on_ray

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

FAST = {"report": {"gradcam": 0, "html": False, "bootstrap": 50}}
GRID = {"model.params.width": ["4", "8"], "optimizer.name": ["AdamW", "SGD"]}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A Ray cluster on this machine (127.0.0.1) with two CPUs: two runs at a time, each
    in its own worker process, which imports this checkout's mediscope."""
    source = str(Path(mediscope.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        logging_level="ERROR",
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    yield
    ray.shutdown()


def write_yaml(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


# The leaderboard's columns that two backends must agree on (not the seconds).
SAME = ["rank", "cell", "model.params.width", "optimizer.name", "f1_macro", "f1_macro_ci_low"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_study_gives_the_local_leaderboard(
    ray_cluster: None, cli, tiny_crops: Path, tmp_path: Path
) -> None:
    import torch

    raw = tiny_config(tiny_crops, tmp_path / "runs", trainer={"max_epochs": 1}, **FAST)
    config = write_yaml(tmp_path / "base.yaml", raw)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a one-CPU Ray task (OMP_NUM_THREADS=1)
    try:
        local = run_study(plan_study(config, grid=GRID, output=tmp_path / "local"))
    finally:
        torch.set_num_threads(threads)
    assert local.ran == 4 and not local.failed

    grid = ["--grid", "model.params.width=4,8", "--grid", "optimizer.name=AdamW,SGD"]
    args = ("compare", config, *grid, "--output", tmp_path / "ray", "--backend", "ray")
    result = cli(*args, "--cpus-per-cell", "1")
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    assert lines[-1] == f"study: {tmp_path / 'ray'}"
    assert "cell 1/4  model.params.width=4 optimizer.name=AdamW  queued on Ray" in lines
    assert sum(" f1_macro " in line and line.endswith(" s)") for line in lines) == 4

    ours = pd.read_csv(tmp_path / "ray" / "leaderboard.csv")
    theirs = pd.read_csv(tmp_path / "local" / "leaderboard.csv")
    pd.testing.assert_frame_equal(ours[SAME], theirs[SAME])
    assert ours["vs_best"].tolist() == pytest.approx(theirs["vs_best"].tolist(), nan_ok=True)
    shared = read_json(tmp_path / "ray" / "splits" / "holdout.json")
    assert shared == read_json(tmp_path / "local" / "splits" / "holdout.json")
    for cell in ours["cell"]:
        split = read_json(tmp_path / "ray" / cell / "split.json")
        assert split["train"] == shared["train"] and split["val"] == shared["val"]
    state = read_json(tmp_path / "ray" / "study.json")
    assert [c["status"] for c in state["cells"]] == ["done"] * 4

    # the same study again: every run finished, nothing is submitted
    again = cli(*args)
    assert again.code == 0, again.err
    assert "queued" not in again.out and again.out.count("finished earlier") == 4


def _kill_when_checkpointed(folder: Path, killed: list[tuple[str, int]], stop: threading.Event):
    """Kills (SIGKILL) the worker process of the first run that holds a ``last.ckpt`` and
    has not finished, found by its Ray task name (its process title)."""
    while not stop.is_set() and not killed:
        for run in sorted(folder.glob("[0-9]*")):
            if not (run / "checkpoints" / "last.ckpt").is_file():
                continue
            if (run / "val_metrics.json").is_file():
                continue
            for proc in psutil.process_iter(["cmdline"]):
                cmdline = " ".join(proc.info["cmdline"] or [])
                if cmdline.startswith(f"ray::mediscope:{run.name}"):
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.append((run.name, proc.pid))
                    return
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_killed_worker_does_not_stop_the_study(
    ray_cluster: None, tiny_crops: Path, tmp_path: Path
) -> None:
    raw = tiny_config(tiny_crops, tmp_path / "runs", trainer={"max_epochs": 4}, **FAST)
    del raw["data"]["test_path"]  # rank on validation: less to evaluate
    config = write_yaml(tmp_path / "base.yaml", raw)
    plan = plan_study(config, grid={"model.params.width": ["4", "8"]})
    killed: list[tuple[str, int]] = []
    stop = threading.Event()
    killer = threading.Thread(
        target=_kill_when_checkpointed, args=(plan.folder, killed, stop), daemon=True
    )
    killer.start()
    try:
        result = run_study_on_ray(plan, RayOptions(cpus_per_cell=1, max_retries=2))
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1, "no run was killed mid-training"
    name, _ = killed[0]
    assert not result.failed and result.ran == 2
    state = read_json(plan.folder / "study.json")
    assert [c["status"] for c in state["cells"]] == ["done", "done"]
    # the killed run continued from its last.ckpt: each epoch once in its metrics
    assert read_json(plan.folder / name / "study_run.json").get("resumed") is True
    rows = pd.read_csv(plan.folder / name / "metrics.csv").dropna(subset=["val/loss"])
    assert rows["epoch"].tolist() == [0, 1, 2, 3]
    board = pd.read_csv(plan.folder / "leaderboard.csv")
    assert sorted(board["cell"]) == ["01-4", "02-8"] and board["status"].eq("done").all()


def test_an_unreachable_address_fails_at_once_in_one_line(tmp_path: Path) -> None:
    from mediscope.errors import ConfigError
    from mediscope.study.cluster import _probe

    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ConfigError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        _probe(f"127.0.0.1:{port}")
    assert time.monotonic() - started < 10
    _probe("auto")  # left to Ray
