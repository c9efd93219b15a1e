"""Stopping a fit: Ctrl-C, SIGTERM and kill -9 on a real `mediscope fit`, and resuming.

Each stop keeps ``last.ckpt`` at the last finished epoch; ``--resume`` trains the
interrupted epoch again and ends with exactly the metrics of a run never stopped
(``trainer.deterministic: true``).
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import yaml

from helpers import tiny_config
from mediscope.api import fit
from mediscope.errors import InterruptedRun, TerminatedRun
from mediscope.tasks.validate import config_from_dict

EPOCHS = 6
SECTIONS: dict[str, Any] = {
    "trainer": {"max_epochs": EPOCHS, "deterministic": True},
    "augment": {"hflip": 0.5, "rotate": 20, "brightness": 0.2},
    "scheduler": {"name": "StepLR", "params": {"step_size": 1, "gamma": 0.7}, "warmup_epochs": 1},
    "model": {"name": "simple_cnn", "params": {"width": 8, "depth": 2, "drop_rate": 0.3}},
}
#: Generous: a loaded CI machine may take many seconds per epoch.
WAIT = 120.0
# One thread per process: the runs compared are computed alike, and they do not fight
# over the cores.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def write_config(data: Path, folder: Path) -> Path:
    raw = tiny_config(data, folder / "runs", **SECTIONS)
    path = folder / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "mediscope.cli.main", *map(str, args)]


def start(args: list[str], folder: Path, name: str) -> subprocess.Popen[str]:
    """Starts a CLI process writing its output to ``folder/name.out`` and ``.err``."""
    return subprocess.Popen(
        args,
        stdout=(folder / f"{name}.out").open("w"),
        stderr=(folder / f"{name}.err").open("w"),
        text=True,
        env=ENV,
        # A shell that starts the tests in the background ignores SIGINT, and children
        # inherit that; a user's terminal does not, so restore the default here.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def finish(proc: subprocess.Popen[str], folder: Path, name: str) -> tuple[int, str, str]:
    try:
        code = proc.wait(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, (folder / f"{name}.out").read_text(), (folder / f"{name}.err").read_text()


def run_dir(folder: Path) -> Path:
    (run,) = (folder / "runs" / "tiny").iterdir()
    return run


def last_epoch(folder: Path) -> int | None:
    found = list((folder / "runs" / "tiny").glob("*/checkpoints/last.ckpt"))
    if not found:
        return None
    return int(torch.load(found[0], map_location="cpu", weights_only=True)["epoch"])


def wait_for_epoch(proc: subprocess.Popen[str], folder: Path, at_least: int) -> int:
    """Polls until ``last.ckpt`` holds epoch ``at_least`` or later; returns its epoch."""
    deadline = time.monotonic() + WAIT
    seen: float | None = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, (
            f"the run ended (code {proc.returncode}) before epoch {at_least}"
        )
        found = list((folder / "runs" / "tiny").glob("*/checkpoints/last.ckpt"))
        if found:
            mtime = found[0].stat().st_mtime
            if mtime != seen:
                seen = mtime
                epoch = last_epoch(folder)
                if epoch is not None and epoch >= at_least:
                    return epoch
        time.sleep(0.02)
    raise AssertionError(f"no last.ckpt of epoch {at_least} within {WAIT:.0f} s")


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def csv_rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def assert_same_run(run: Path, reference: Path) -> None:
    """Identical metrics.csv rows, val_metrics.json and checkpoint files."""
    assert csv_rows(run) == csv_rows(reference)
    val = json.loads((run / "val_metrics.json").read_text())
    assert val == json.loads((reference / "val_metrics.json").read_text())
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == sorted(p.name for p in (reference / "checkpoints").iterdir())
    assert not [p for p in run.rglob(".*") if p.is_file()]  # no temporary file left


@pytest.fixture(scope="module")
def reference(tiny_crops: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The run folder of the same config trained without a stop, by the same CLI."""
    folder = tmp_path_factory.mktemp("reference")
    cfg = write_config(tiny_crops, folder)
    code, _out, err = finish(start(command("fit", cfg), folder, "fit"), folder, "fit")
    assert code == 0, err
    yield run_dir(folder)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_loses_at_most_the_current_epoch(
    tiny_crops: Path, tmp_path: Path, reference: Path
) -> None:
    cfg = write_config(tiny_crops, tmp_path)
    proc = start(command("fit", cfg), tmp_path, "fit")
    done = wait_for_epoch(proc, tmp_path, at_least=1)
    proc.send_signal(signal.SIGKILL)
    assert finish(proc, tmp_path, "fit")[0] == -signal.SIGKILL
    # last.ckpt is a complete checkpoint of a finished epoch: only the epoch in progress
    # is lost
    assert (last_epoch(tmp_path) or 0) >= done
    run = run_dir(tmp_path)

    code, out, err = finish(
        start(command("fit", cfg, "--resume", "last"), tmp_path, "resume"), tmp_path, "resume"
    )
    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"run: {run}"
    assert_same_run(run, reference)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ctrl_c_and_sigterm_stop_cleanly_and_the_run_resumes(
    tiny_crops: Path, tmp_path: Path, reference: Path
) -> None:
    cfg = write_config(tiny_crops, tmp_path)
    proc = start(command("fit", cfg), tmp_path, "fit")
    wait_for_epoch(proc, tmp_path, at_least=1)
    proc.send_signal(signal.SIGINT)
    code, _out, err = finish(proc, tmp_path, "fit")
    assert code == 130, err
    run = run_dir(tmp_path)
    line = one_error_line(err)
    done = last_epoch(tmp_path)
    assert done is not None and done >= 1
    assert line.startswith(f"error: {run}: training stopped by Ctrl-C in epoch {done + 1}; ")
    assert f"checkpoints/last.ckpt holds epoch {done}, the last finished one" in line
    assert line.endswith(f"continue with: mediscope fit {cfg} --resume {run}")

    # continue with the printed command, and stop that run with SIGTERM
    printed = shlex.split(line.split("continue with: ")[1])
    assert printed[:2] == ["mediscope", "fit"]
    proc = start(command(*printed[1:]), tmp_path, "resume")
    wait_for_epoch(proc, tmp_path, at_least=done + 1)
    proc.send_signal(signal.SIGTERM)
    code, _out, err = finish(proc, tmp_path, "resume")
    assert code == 143, err
    line = one_error_line(err)
    done = last_epoch(tmp_path)
    assert done is not None
    assert line.startswith(f"error: {run}: training stopped by SIGTERM in epoch {done + 1}; ")
    assert line.endswith(f"--resume {run}")

    code, out, err = finish(
        start(command("fit", cfg, "--resume", "last"), tmp_path, "last"), tmp_path, "last"
    )
    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"run: {run}"
    assert_same_run(run, reference)


class StopAt(L.Callback):
    """Stops training in ``epoch`` at ``batch`` the way a signal would."""

    def __init__(self, epoch: int, batch: int, how: str) -> None:
        self.epoch, self.batch, self.how = epoch, batch, how

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if (trainer.current_epoch, batch_idx) != (self.epoch, self.batch):
            return
        if self.how == "sigterm":  # Lightning's own handler: stops after this step
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            raise KeyboardInterrupt


@pytest.mark.timeout(300)
def test_an_interrupted_epoch_is_trained_again_on_resume(tiny_crops: Path, tmp_path: Path) -> None:
    sections = {**SECTIONS, "trainer": {"max_epochs": 3, "deterministic": True}}
    full = fit(config_from_dict(tiny_config(tiny_crops, tmp_path / "full", **sections)))
    cfg = config_from_dict(tiny_config(tiny_crops, tmp_path / "parts", **sections))
    with pytest.raises(TerminatedRun) as stopped:
        fit(cfg, callbacks=[StopAt(1, 1, "sigterm")])  # through the Python API
    error = stopped.value
    assert error.exit_code == 143 and error.resumable
    run = error.run_dir
    assert run is not None
    assert "stopped by SIGTERM in epoch 1; checkpoints/last.ckpt holds epoch 0" in str(error)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]

    with pytest.raises(InterruptedRun) as stopped:
        fit(cfg, resume="last", callbacks=[StopAt(2, 0, "ctrl-c")])
    assert type(stopped.value) is InterruptedRun and stopped.value.exit_code == 130
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1

    resumed = fit(cfg, resume="last")
    assert resumed.run_dir == run
    assert csv_rows(run) == csv_rows(full.run_dir)
    assert json.loads((run / "val_metrics.json").read_text()) == json.loads(
        (full.run_dir / "val_metrics.json").read_text()
    )


def test_a_stop_in_the_first_epoch_says_there_is_nothing_to_resume(
    tiny_crops: Path, tmp_path: Path
) -> None:
    cfg = config_from_dict(tiny_config(tiny_crops, tmp_path))
    with pytest.raises(InterruptedRun) as stopped:
        fit(cfg, callbacks=[StopAt(0, 1, "ctrl-c")])
    assert str(stopped.value) == (
        "training stopped by Ctrl-C in epoch 0, before any epoch finished: there is no "
        "checkpoint to resume, and the new run folder was removed; start the run again"
    )
    assert not stopped.value.resumable
    assert list((tmp_path / "tiny").iterdir()) == []


def test_metrics_csv_keeps_whole_rows_of_the_epochs_before_the_resumed_one(
    tmp_path: Path,
) -> None:
    from mediscope.engine.callbacks import RunCSVLogger

    # killed while appending a row (as Lightning's own writer appends): the cut row goes
    (tmp_path / "metrics.csv").write_text("epoch,step,train/loss\n0,3,1.5\n1,7,1.25\n1,7")
    logger = RunCSVLogger(tmp_path, resume_epoch=2)
    logger.log_metrics({"epoch": 2, "train/loss": 1.0, "val/loss": 2.0}, step=11)
    logger.save()
    assert csv_rows(tmp_path) == [
        {"epoch": "0", "step": "3", "train/loss": "1.5", "val/loss": ""},
        {"epoch": "1", "step": "7", "train/loss": "1.25", "val/loss": ""},
        {"epoch": "2", "step": "11", "train/loss": "1.0", "val/loss": "2.0"},
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # written atomically
