"""DDP on CPU with the gloo backend: shares of the data, one writer, metrics on every sample.

The multi-process tests run ``mediscope fit`` as a command with ``trainer.strategy: ddp``:
Lightning's ``ddp`` strategy starts the other processes by running the same command line
again, which must be mediscope's (under pytest it would be pytest's); ``ddp_spawn``
would instead pickle the task and data into fresh interpreters, a path no user of the
command takes. Each sampler logs the indices it yields (``MEDISCOPE_SAMPLER_LOG``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from helpers import (
    last_row_metrics,
    single_process_validation,
    tiny_config,
    tiny_detection_config,
    tiny_multilabel_config,
    tiny_segmentation_config,
)
from mediscope.data.samplers import LOG_ENV, EpochSampler
from mediscope.engine.distributed import launch_rank

SRC = str(Path(__file__).resolve().parents[2] / "src")
DDP = {"accelerator": "cpu", "devices": 2, "strategy": "ddp"}


# -- the sampler --------------------------------------------------------------------------


def shares(length: int, world: int, **kwargs: Any) -> list[list[int]]:
    return [
        [i for _, i in EpochSampler(length, seed=5, rank=r, world=world, **kwargs)]
        for r in range(world)
    ]


def test_training_shares_are_disjoint_equal_and_change_every_epoch() -> None:
    by_epoch = []
    for epoch in range(3):
        a, b, c = shares(31, 3, drop_uneven=True, epoch=epoch)
        assert len(a) == len(b) == len(c) == 10
        assert len(set(a) | set(b) | set(c)) == 30  # disjoint; one sample left out
        by_epoch.append(a)
    assert by_epoch[0] != by_epoch[1] != by_epoch[2]
    # the same (seed, epoch) gives the same share: a resumed run draws what it drew
    assert shares(31, 3, drop_uneven=True, epoch=1)[0] == by_epoch[1]


def test_shares_together_are_the_single_process_order() -> None:
    alone = EpochSampler(20, seed=5, epoch=4).epoch_order()
    a, b = shares(20, 2, drop_uneven=True, epoch=4)
    interleaved = np.empty(20, int)
    interleaved[0::2], interleaved[1::2] = a, b
    assert list(interleaved) == list(alone)


def test_evaluation_shares_hold_every_sample_once() -> None:
    a, b = shares(9, 2, shuffle=False)
    assert sorted(a + b) == list(range(9)) and len(a) == 5 and len(b) == 4


def test_weighted_sampling_per_rank_draws_by_weight() -> None:
    weights = np.array([1.0] * 90 + [9.0] * 10)  # the last 10 hold half the weight
    a, b = shares(100, 2, weights=weights, drop_uneven=True)
    assert len(a) == len(b) == 50
    for share in (a, b):
        rare = sum(i >= 90 for i in share) / len(share)
        assert 0.3 < rare < 0.7
    assert a != b


def test_sampler_epoch_follows_set_epoch_and_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOG_ENV, str(tmp_path / "log"))
    sampler = EpochSampler(6, seed=0, rank=1, world=2, drop_uneven=True)
    sampler.set_epoch(2)
    pairs = list(sampler)
    assert {e for e, _ in pairs} == {2}
    line = json.loads((tmp_path / "log.rank1.jsonl").read_text())
    assert line["epoch"] == 2 and line["indices"] == [i for _, i in pairs]


def test_launch_rank_reads_each_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    assert launch_rank() == 0
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert launch_rank() == 0  # one task: srun is not launching a DDP run
    monkeypatch.setenv("SLURM_NTASKS", "8")
    assert launch_rank() == 3
    monkeypatch.setenv("RANK", "5")  # torchrun's variable wins
    assert launch_rank() == 5
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("SLURM_PROCID")
    monkeypatch.setenv("LOCAL_RANK", "1")  # a process Lightning's ddp strategy started
    assert launch_rank() == 1


# -- whole runs with two processes ----------------------------------------------------------


def run_fit(
    config: Path, log: Path, *extra: str, command: list[str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    """``mediscope fit CONFIG`` (or ``command``) in a fresh process, samplers logging."""
    env = {**os.environ, LOG_ENV: str(log), "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    base = command or [sys.executable, "-m", "mediscope"]
    return subprocess.run(
        [*base, "fit", str(config), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def read_log(log: Path, rank: int) -> list[dict[str, Any]]:
    path = Path(f"{log}.rank{rank}.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_disjoint_shares(log: Path, epochs: int) -> None:
    """Both processes drew a training share every epoch, disjoint, different per epoch;
    validation shares split the validation set."""
    rows = [r for rank in (0, 1) for r in read_log(log, rank) if r["world"] == 2]
    for epoch in range(epochs):
        train = [r["indices"] for r in rows if r["shuffle"] and r["epoch"] == epoch]
        assert len(train) == 2, f"epoch {epoch}: {len(train)} training shares"
        assert len(train[0]) == len(train[1]) and not set(train[0]) & set(train[1])
        val = [r for r in rows if not r["shuffle"] and r["epoch"] == 0]
        assert sorted(val[0]["indices"] + val[1]["indices"]) == list(range(val[0]["length"]))
    firsts = [r["indices"] for r in rows if r["shuffle"] and r["rank"] == 0]
    assert len({tuple(f) for f in firsts}) == len(firsts)


def ddp_config(write_config: Callable[..., Path], raw: dict[str, Any], **trainer: Any) -> Path:
    raw["trainer"] = {**raw["trainer"], **DDP, **trainer}
    return write_config(raw)


def check_ddp_run(
    tmp_path: Path, config: Path, runs: Path, epochs: int, *, per_sample_loss: bool = True
) -> Path:
    log = tmp_path / "samples"
    done = run_fit(config, log)
    assert done.returncode == 0, done.stderr[-3000:]
    folders = [p for p in runs.rglob("config.yaml")]
    assert len(folders) == 1, folders  # one run folder, written by process 0
    run = folders[0].parent
    assert done.stdout.count("run: ") == 1  # one summary
    assert_disjoint_shares(log, epochs)
    assert not Path(f"{log}.rank1.jsonl").read_text().count('"world": 1')  # 0 evaluates
    logged = last_row_metrics(run)
    alone = single_process_validation(run, run / "checkpoints" / "last.ckpt")
    assert len(logged) >= 4
    for key, value in logged.items():
        if "loss" not in key:
            assert alone[key] == value, key  # the metrics: exactly
        elif per_sample_loss:
            # a mean of per-sample losses, added up in another order
            assert alone[key] == pytest.approx(value, rel=1e-5), key
        # else: a Dice loss (segmentation) or a loss normalised by the batch's objects
        # (detection) depends on which samples share a batch, which DDP changes
    return run


@pytest.mark.slow
def test_ddp_classification_shares_writes_once_and_resumes(
    tiny_crops: Path, tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    runs = tmp_path / "runs"
    raw = tiny_config(tiny_crops, runs, data={"batch_size": 8})
    config = ddp_config(write_config, raw, max_epochs=2)
    run = check_ddp_run(tmp_path, config, runs, epochs=2)
    assert json.loads((run / "val_metrics.json").read_text())  # evaluated by process 0

    # resume for a third epoch: it continues the same folder with the third epoch's shares
    longer = ddp_config(write_config, raw, max_epochs=3)
    log = tmp_path / "resumed"
    done = run_fit(longer, log, "--resume", str(run))
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list(runs.rglob("config.yaml"))) == 1
    epochs = {r["epoch"] for r in read_log(log, 1) if r["shuffle"]}
    assert epochs == {2}
    with (run / "metrics.csv").open() as file:
        assert {int(r["epoch"]) for r in csv.DictReader(file)} == {0, 1, 2}


@pytest.mark.slow
def test_ddp_segmentation(
    tiny_lesions: Path, tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    runs = tmp_path / "runs"
    raw = tiny_segmentation_config(tiny_lesions, runs, trainer={"test_after_fit": False})
    config = ddp_config(write_config, raw, max_epochs=1)
    check_ddp_run(tmp_path, config, runs, epochs=1, per_sample_loss=False)


@pytest.mark.slow
def test_ddp_detection(
    tiny_smears: Path, tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    runs = tmp_path / "runs"
    raw = tiny_detection_config(tiny_smears, runs, trainer={"test_after_fit": False})
    config = ddp_config(write_config, raw, max_epochs=1)
    check_ddp_run(tmp_path, config, runs, epochs=1, per_sample_loss=False)


@pytest.mark.slow
def test_torchrun_two_processes(
    tiny_crops: Path, tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    runs = tmp_path / "runs"
    raw = tiny_config(tiny_crops, runs, data={"batch_size": 8})
    # under torchrun the processes exist already; devices says how many there are
    config = ddp_config(write_config, raw, max_epochs=1)
    log = tmp_path / "samples"
    command = [torchrun, "--nproc-per-node", "2", "--master-port", "29533", "-m", "mediscope"]
    done = run_fit(config, log, command=command)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list(runs.rglob("config.yaml"))) == 1
    assert done.stdout.count("run: ") == 1
    assert_disjoint_shares(log, epochs=1)


@pytest.mark.slow
def test_sigterm_stops_every_process_and_leaves_a_resumable_run(
    tiny_crops: Path, tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    """SIGTERM to every process (what SLURM sends at the time limit): they stop at the
    same step, process 0 says so once (exit 143), and the run resumes from last.ckpt."""
    import signal
    import time

    runs = tmp_path / "runs"
    raw = tiny_config(tiny_crops, runs, data={"batch_size": 4})
    config = ddp_config(write_config, raw, max_epochs=200)
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mediscope", "fit", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: the two processes, as on a node
    )
    try:
        deadline = time.monotonic() + 400
        while not list(runs.rglob("last.ckpt")) and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1][-3000:]
            time.sleep(0.5)
        assert list(runs.rglob("last.ckpt")), "no epoch finished in time"
        os.killpg(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 143, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "stopped by SIGTERM" in lines[0], err[-3000:]
    assert "--resume" in lines[0]
    (run,) = [p.parent for p in runs.rglob("config.yaml")]
    from mediscope.engine.checkpoints import checkpoint_epoch

    done = checkpoint_epoch(run / "checkpoints" / "last.ckpt")
    assert done is not None
    # continue it to the end of the next epoch
    shorter = ddp_config(write_config, raw, max_epochs=done + 2)
    resumed = run_fit(shorter, tmp_path / "resumed", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert checkpoint_epoch(run / "checkpoints" / "last.ckpt") == done + 1


def test_a_nan_loss_in_another_process_stops_this_one_too() -> None:
    """Every process stops at the step where any of them has a NaN loss (else the others
    would wait for it in the gradients' all-reduce)."""
    from types import SimpleNamespace

    from mediscope.engine.callbacks import StopOnNonFiniteLoss
    from mediscope.errors import NonFiniteLossError

    decisions: list[tuple[bool, bool]] = []

    def reduce_boolean_decision(decision: bool, all: bool = True) -> bool:
        decisions.append((decision, all))
        return True  # another process saw a NaN

    strategy = SimpleNamespace(reduce_boolean_decision=reduce_boolean_decision)
    trainer: Any = SimpleNamespace(world_size=2, strategy=strategy, current_epoch=1, global_step=7)
    callback = StopOnNonFiniteLoss()
    with pytest.raises(NonFiniteLossError, match="in another process") as info:
        callback.on_before_backward(trainer, None, torch.tensor(0.5))  # type: ignore[arg-type]
    assert decisions == [(False, False)]  # this one's loss was finite; any-reduction
    assert (info.value.epoch, info.value.step) == (1, 7)
    # alone, a finite loss goes on without asking anyone
    trainer.world_size = 1
    callback.on_before_backward(trainer, None, torch.tensor(0.5))  # type: ignore[arg-type]
    assert len(decisions) == 1


@pytest.mark.slow
def test_ddp_weights_and_early_stopping(
    tiny_crops: Path,
    tmp_path: Path,
    write_config: Callable[..., Path],
    trained_runs: dict[str, Path],
) -> None:
    """--weights starts every process from the file; early stopping stops them all
    after the same epoch (a val/loss that must rise by 10 to count never improves)."""
    runs = tmp_path / "runs"
    run = trained_runs["classification"]  # the same tiny model, trained in one process
    stop = {"monitor": "val/loss", "mode": "max", "min_delta": 10.0, "patience": 1}
    raw = tiny_config(tiny_crops, runs, run={"name": "tuned", "dir": str(runs)})
    config = ddp_config(write_config, raw, max_epochs=6, early_stopping=stop)
    log = tmp_path / "tuned"
    done = run_fit(config, log, "--weights", str(run / "checkpoints" / "best.ckpt"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list(runs.rglob("config.yaml"))) == 1
    for rank in (0, 1):
        epochs = {r["epoch"] for r in read_log(log, rank) if r["shuffle"]}
        assert epochs == {0, 1}, (rank, epochs)  # stopped after epoch 1, both of them


@pytest.mark.slow
def test_ddp_multilabel(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    runs = tmp_path / "runs"
    raw = tiny_multilabel_config(runs, trainer={"max_epochs": 1, "test_after_fit": False})
    raw["data"]["batch_size"] = 8
    check_ddp_run(tmp_path, ddp_config(write_config, raw, max_epochs=1), runs, epochs=1)
