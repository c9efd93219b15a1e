"""Ctrl-C during fit: a clear message, exit code 130, and a resumable run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from helpers import tiny_config


def test_ctrl_c_stops_cleanly_and_the_run_resumes(tiny_crops: Path, tmp_path: Path) -> None:
    raw = tiny_config(tiny_crops, tmp_path / "runs", trainer={"max_epochs": 5000})
    raw["logging"]["progress"] = "plain"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    exe = str(Path(sys.executable).parent / "mediscope")
    proc = subprocess.Popen(
        [exe, "fit", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell that starts the tests in the background ignores SIGINT, and children
        # inherit that; a user's terminal does not, so restore the default here.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # wait until two epochs are done
        seen.append(line)
        if line.startswith("epoch 1/"):
            break
    proc.send_signal(signal.SIGINT)
    try:
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "training stopped during epoch" in lines[0]
    assert "--resume" in lines[0]
    run = next((tmp_path / "runs" / "tiny").iterdir())
    assert (run / "checkpoints" / "last.ckpt").is_file()
    time.sleep(0.1)
    raw["trainer"]["max_epochs"] = 4
    cfg.write_text(yaml.safe_dump(raw))
    done = subprocess.run(
        [exe, "fit", str(cfg), "--resume", "last"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == f"run: {run}"
