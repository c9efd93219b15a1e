"""Plain progress lines within an epoch, for output to a file or a pipe."""

from __future__ import annotations

import io
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml

from helpers import tiny_config
from mediscope.config.schema import LoggingConfig
from mediscope.engine.callbacks import PlainProgress, batch_images

LINE = re.compile(
    r"^epoch (\d+)/(\d+)  (train|validation) batch (\d+)/(\d+) \((\d+)%\)"
    r"(?:  loss (\d+\.\d{4}))?  (\d+\.\d) images/s  ETA (\S+)$"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fake_trainer(batches: int, val_batches: int = 4) -> Any:
    return SimpleNamespace(
        current_epoch=2,
        max_epochs=5,
        num_training_batches=batches,
        num_val_batches=[val_batches],
        sanity_checking=False,
        is_global_zero=True,
        callback_metrics={"train/loss": torch.tensor(0.5), "val/loss": torch.tensor(0.75)},
    )


def run_epoch(
    progress: PlainProgress, clock: FakeClock, trainer: Any, seconds_per_batch: float
) -> None:
    """One training epoch of batches of 8 images, losses 1, 2, 3, ..., then validation."""
    progress.on_train_epoch_start(trainer, None)  # type: ignore[arg-type]
    for index in range(trainer.num_training_batches):
        clock.now += seconds_per_batch
        batch = (torch.zeros(8, 3, 4, 4), torch.zeros(8))
        loss = {"loss": torch.tensor(float(index + 1))}
        progress.on_train_batch_end(trainer, None, loss, batch, index)  # type: ignore[arg-type]
    progress.on_validation_epoch_start(trainer, None)  # type: ignore[arg-type]
    for index in range(trainer.num_val_batches[0]):
        clock.now += seconds_per_batch
        batch = (torch.zeros(8, 3, 4, 4), [{}] * 8)
        progress.on_validation_batch_end(trainer, None, None, batch, index)  # type: ignore[arg-type]
    progress.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]


def test_a_line_every_30_seconds_within_a_slow_epoch() -> None:
    clock, out = FakeClock(), io.StringIO()
    progress = PlainProgress(["train/loss", "val/loss"], out, every=30, clock=clock)
    run_epoch(progress, clock, fake_trainer(batches=10), seconds_per_batch=12.0)
    lines = out.getvalue().splitlines()
    # 12 s a batch of 8 images: due after batches 3, 6 and 9 (36 s since the last line);
    # the loss is the epoch's mean so far (losses 1, 2, 3, ...)
    assert lines == [
        "epoch 2/4  train batch 3/10 (30%)  loss 2.0000  0.7 images/s  ETA 1m24s",
        "epoch 2/4  train batch 6/10 (60%)  loss 3.5000  0.7 images/s  ETA 48s",
        "epoch 2/4  train batch 9/10 (90%)  loss 5.0000  0.7 images/s  ETA 12s",
        "epoch 2/4  validation batch 3/4 (75%)  0.7 images/s  ETA 12s",
        "epoch 2/4  train/loss 0.5000  val/loss 0.7500  (168.0s)",
    ]
    assert all(LINE.match(line) for line in lines[:-1])


def test_a_line_every_n_percent_and_none_in_a_fast_epoch() -> None:
    clock, out = FakeClock(), io.StringIO()
    progress = PlainProgress(["train/loss"], out, every="25%", clock=clock)
    run_epoch(progress, clock, fake_trainer(batches=8, val_batches=2), seconds_per_batch=0.5)
    train = [line for line in out.getvalue().splitlines() if " train batch " in line]
    assert [LINE.match(line).group(4) for line in train] == ["2", "4", "6"]  # type: ignore[union-attr]
    # the default, 30 s: a fast epoch prints its epoch line only
    out = io.StringIO()
    progress = PlainProgress(["train/loss"], out, every=30.0, clock=clock)
    run_epoch(progress, clock, fake_trainer(batches=50), seconds_per_batch=0.5)
    assert out.getvalue().splitlines() == ["epoch 2/4  train/loss 0.5000  (27.0s)"]
    # 0: never within an epoch
    out = io.StringIO()
    progress = PlainProgress(["train/loss"], out, every=0, clock=clock)
    run_epoch(progress, clock, fake_trainer(batches=5), seconds_per_batch=100.0)
    assert len(out.getvalue().splitlines()) == 1


def test_batch_images_and_the_config_key() -> None:
    images = torch.zeros(6, 3, 8, 8)
    assert batch_images((images, torch.zeros(6))) == 6
    assert batch_images((images, [{}] * 6)) == 6  # detection: targets are a list
    assert batch_images(images) == 6
    assert batch_images(([images[0]] * 3, None)) == 3
    assert batch_images({"image": images}) == 6
    assert batch_images(None) == 0
    assert LoggingConfig().progress_every == 30.0
    assert LoggingConfig(progress_every="10%").progress_every == "10%"
    assert LoggingConfig(progress_every="45s").progress_every == 45.0
    for bad in ("often", -1, "0%", "120%"):
        with pytest.raises(ValueError, match="progress_every"):
            LoggingConfig(progress_every=bad)


@pytest.mark.slow
def test_fit_with_stdout_to_a_pipe_prints_plain_progress(tiny_crops: Path, tmp_path: Path) -> None:
    """The real case: ``mediscope fit`` in a subprocess whose output is a pipe."""
    raw = tiny_config(
        tiny_crops,
        tmp_path / "runs",
        trainer={"max_epochs": 1, "test_after_fit": False},
        data={"batch_size": 4},
        logging={"progress": "auto", "progress_every": "25%", "loggers": ["csv"]},
        report={"html": False, "bootstrap": 0, "gradcam": 0},
    )
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*sys.path])}
    done = subprocess.run(
        [sys.executable, "-m", "mediscope.cli.main", "fit", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    train = [m for m in map(LINE.match, lines) if m and m.group(3) == "train"]
    assert train, done.stdout
    # a line once 25 %, 50 % and 75 % of the epoch's batches are done
    total = int(train[0].group(5))
    assert total >= 8
    assert [int(m.group(4)) for m in train] == [math.ceil(total * k / 4) for k in (1, 2, 3)]
    assert all(m.group(5) == str(total) and m.group(7) for m in train)
    assert any(line.startswith("epoch 0/0  train/loss ") for line in lines)
    assert "\x1b[" not in done.stdout  # no terminal escapes in a log file
