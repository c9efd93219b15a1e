"""Training-step overhead of mediscope against a plain PyTorch loop.

The same model (resnet18 at 64 px), data (synthetic Gram crops read from disk through
the same dataset class), batch size and optimizer are trained for N steps by
``mediscope.fit`` and by a hand-written loop, interleaved over several rounds in one
process. The per-step time excludes start-up: the clock starts at the first timed
batch after W warm-up steps. Results: ``benchmarks/results/overhead.json``.

Usage:
    python benchmarks/overhead.py [--steps N] [--warmup W] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from mediscope.api import fit
from mediscope.data.datamodule import MediscopeDataModule
from mediscope.data.synthetic.gram_crops import generate_gram_crops
from mediscope.models import build_model
from mediscope.tasks.validate import config_from_dict

RESULTS = Path(__file__).parent / "results" / "overhead.json"


class StepTimer(L.Callback):
    """Times batches ``warmup .. warmup + steps - 1`` of the first epoch."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.start = self.end = 0.0

    def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx == self.warmup + self.steps - 1:
            self.end = time.perf_counter()


def make_config(data: Path, runs: Path, steps: int, warmup: int, batch: int) -> Any:
    return config_from_dict(
        {
            "task": "classification",
            "seed": 0,
            "data": {
                "format": "imagefolder",
                "path": str(data / "train"),
                "image_size": 64,
                "batch_size": batch,
            },
            "model": {"name": "resnet18"},
            "optimizer": {"name": "AdamW", "lr": 0.001},
            "trainer": {
                "max_epochs": 1,
                "limit_train_batches": warmup + steps,
                "limit_val_batches": 1,
            },
            "checkpoint": {"every_n_epochs": 0},
            "logging": {"progress": "none"},
            "run": {"name": "overhead", "dir": str(runs)},
        }
    )


def mediscope_step(config: Any, warmup: int, steps: int) -> float:
    timer = StepTimer(warmup, steps)
    fit(config, callbacks=[timer])
    if timer.end <= timer.start:
        raise RuntimeError("too few batches for the timed steps")
    return (timer.end - timer.start) / steps


def plain_step(config: Any, warmup: int, steps: int) -> float:
    """The loop a user would write by hand over the same dataset and model."""
    torch.manual_seed(config.seed)
    datamodule = MediscopeDataModule(config)
    datamodule.setup("fit")
    assert datamodule.train_dataset is not None
    loader = DataLoader(
        datamodule.train_dataset,
        batch_size=config.data.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=config.data.num_workers,
    )
    model = build_model("resnet18", task="classification", num_classes=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optimizer.lr)
    criterion = torch.nn.CrossEntropyLoss()
    model.train()
    start = end = 0.0
    for i, (images, labels) in enumerate(loader):
        if i == warmup:
            start = time.perf_counter()
        loss = criterion(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i == warmup + steps - 1:
            end = time.perf_counter()
            break
    if end <= start:
        raise RuntimeError("too few batches for the timed steps")
    return (end - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "crops"
        # enough images for warm-up + timed steps after the 20 % validation split
        per_class = math.ceil((args.warmup + args.steps + 2) * args.batch / 0.8 / 4) + 1
        generate_gram_crops(data, per_class=per_class, test_per_class=1, size=64, seed=0)
        config = make_config(data, Path(tmp) / "runs", args.steps, args.warmup, args.batch)
        ours, plain = [], []
        for round_ in range(args.rounds):
            ours.append(mediscope_step(config, args.warmup, args.steps))
            plain.append(plain_step(config, args.warmup, args.steps))
            ms_ours, ms_plain = ours[-1] * 1000, plain[-1] * 1000
            print(f"round {round_}: mediscope {ms_ours:.1f} ms/step, plain {ms_plain:.1f} ms/step")
    result = {
        "benchmark": "training-step overhead, mediscope.fit vs a plain PyTorch loop",
        "model": "resnet18",
        "image_size": 64,
        "batch_size": args.batch,
        "steps_timed": args.steps,
        "warmup_steps": args.warmup,
        "rounds": args.rounds,
        "mediscope_step_seconds": ours,
        "plain_step_seconds": plain,
        "mediscope_median_step_seconds": statistics.median(ours),
        "plain_median_step_seconds": statistics.median(plain),
        "ratio": statistics.median(ours) / statistics.median(plain),
        "target_ratio": 1.05,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"ratio {result['ratio']:.3f} (target <= 1.05); written to {RESULTS}")


if __name__ == "__main__":
    main()
