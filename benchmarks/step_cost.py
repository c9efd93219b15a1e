"""Images per second of one detection training step: mediscope against a plain loop.

One training step is forward, loss, backward and optimizer step over a batch of 16
synthetic Gram-stained smears of 320 px. The default detector (the model, loss,
optimizer, precision and memory layout of ``configs/demo/gram-stain.yaml``, or of
``--config``) is trained for a few steps

* by ``mediscope.fit`` (Lightning's fit loop with mediscope's task, callbacks and
  loggers), and
* by a plain PyTorch loop over the same dataset, model, loss and optimizer;

torchvision's ``fcos_resnet50_fpn`` and ``retinanet_resnet50_fpn`` (no weights, inputs
kept at 320 px) are stepped in a plain loop over the same batches as reference points.
The measurements are interleaved over ``--rounds`` rounds so that a changing load on
the machine affects every contender alike; the medians are reported. Two clocks are
read on the steady-state steps (after ``--warmup`` untimed steps): ``step`` is the
step alone (from the batch in hand to the optimizer step done: Lightning's
``on_train_batch_start`` to ``on_train_batch_end``), ``window`` also includes loading
the batches. The overhead is mediscope's time over the plain loop's (target <= 1.03).
The load average before and after is recorded. Results:
``benchmarks/results/step_cost.json``.

Usage:
    python benchmarks/step_cost.py [--steps 6] [--warmup 2] [--rounds 3] [--config PATH]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from torch.utils.data import DataLoader

from mediscope.files import write_json_atomic

RESULTS = Path(__file__).parent / "results" / "step_cost.json"
DEMO = Path(__file__).parents[1] / "configs" / "demo" / "gram-stain.yaml"
SIZE = 320
BATCH = 16
TARGET_OVERHEAD = 1.03


class StepTimer(L.Callback):
    """Per-step seconds of the batches ``warmup ..`` of the first epoch, and the window."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.steps: list[float] = []
        self.window_start = self.window_end = 0.0
        self._start = 0.0

    def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
        self._start = time.perf_counter()
        if batch_idx == self.warmup:
            self.window_start = self._start

    def on_train_batch_end(
        self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if batch_idx >= self.warmup:
            self.steps.append(now - self._start)
            self.window_end = now


#: The detection default before ``model.freeze: 4`` and ``model.channels_last`` (the
#: model sections changed), stepped in the plain loop too.
TODAY = {"freeze": "none", "channels_last": False}


def make_config(
    source: Path,
    data: Path,
    runs: Path,
    warmup: int,
    steps: int,
    model: dict[str, Any] | None = None,
) -> Any:
    """The default detector's config over ``data`` at 320 px, batch 16, one short epoch."""
    from mediscope.tasks.validate import config_from_dict

    config = yaml.safe_load(source.read_text())
    config["model"] = {**config["model"], **(model or {})}
    config["data"] = {
        **config["data"],
        "path": str(data),
        "image_size": SIZE,
        "batch_size": BATCH,
        "split": {"method": "holdout", "val_fraction": 0.1},
    }
    config["trainer"] = {
        **config.get("trainer", {}),
        "max_epochs": 1,
        "limit_train_batches": warmup + steps,
        "limit_val_batches": 1,
    }
    config["checkpoint"] = {"every_n_epochs": 0}
    config["logging"] = {"progress": "none"}
    config["run"] = {"name": "step-cost", "dir": str(runs)}
    return config_from_dict(config)


def mediscope_steps(config: Any, warmup: int) -> tuple[list[float], float]:
    from mediscope.api import fit

    timer = StepTimer(warmup)
    fit(config, callbacks=[timer], test=False)
    return timer.steps, timer.window_end - timer.window_start


def plain_loop(config: Any) -> tuple[torch.nn.Module, Any, Any, DataLoader[Any]]:
    """Model, loss, optimizer and loader a user would build by hand from the config."""
    from mediscope.data.datamodule import loader_options
    from mediscope.data.datasets import detection_collate
    from mediscope.losses.detection import DetectionLoss
    from mediscope.models import build_model
    from mediscope.models.freeze import apply_freeze
    from mediscope.tasks import data_module

    torch.manual_seed(config.seed)
    datamodule = data_module(config)
    datamodule.setup("fit")
    assert datamodule.train_dataset is not None
    loader = DataLoader(
        datamodule.train_dataset,
        batch_size=BATCH,
        shuffle=True,
        drop_last=True,
        collate_fn=detection_collate,
        **loader_options(config),
    )
    model = build_model(
        config.model.name,
        task="detection",
        num_classes=len(datamodule.classes),
        pretrained=config.model.pretrained,
        **config.model.params,
    )
    criterion = DetectionLoss(num_classes=len(datamodule.classes), **config.loss.params)
    model.score_mode = criterion.score_mode  # type: ignore[assignment]
    if config.model.freeze not in ("none", 0):
        apply_freeze(model, config.model.freeze)
    if config.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.trainer.compile:
        model.compile()
    optimizer_class = getattr(torch.optim, config.optimizer.name)
    optimizer = optimizer_class(
        model.parameters(),
        lr=config.optimizer.lr,
        weight_decay=config.optimizer.weight_decay,
        **config.optimizer.params,
    )
    return model, criterion, optimizer, loader


def plain_steps(config: Any, warmup: int, steps: int) -> tuple[list[float], float]:
    """The hand-written loop over the same dataset, model, loss and optimizer."""
    model, criterion, optimizer, loader = plain_loop(config)
    bf16 = config.trainer.precision == "bf16-mixed"
    model.train()
    times: list[float] = []
    window_start = window_end = 0.0
    for i, (images, targets) in enumerate(loader):
        if i == warmup:
            window_start = time.perf_counter()
        if config.model.channels_last:  # as mediscope does before its step begins
            images = images.contiguous(memory_format=torch.channels_last)
        start = time.perf_counter()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
        with autocast:
            loss = model.losses(model(images), targets, criterion)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= warmup:
            window_end = time.perf_counter()
            times.append(window_end - start)
        if i == warmup + steps - 1:
            break
    return times, window_end - window_start


def reference_steps(
    name: str, batches: list[tuple[torch.Tensor, list[dict[str, torch.Tensor]]]], warmup: int
) -> list[float]:
    """A torchvision detector (no weights, kept at 320 px) stepped over ``batches``."""
    from torchvision.models import detection

    torch.manual_seed(0)
    builder = getattr(detection, name)
    model = builder(
        weights=None, weights_backbone=None, num_classes=5, min_size=SIZE, max_size=SIZE
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    times = []
    for i, (images, targets) in enumerate(batches):
        start = time.perf_counter()
        # torchvision's label 0 is the background
        tv_targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]
        losses = model(list(images), tv_targets)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()  # type: ignore[union-attr]
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def summary(per_round: list[list[float]]) -> dict[str, Any]:
    """Median step seconds over all timed steps, per-round medians and images/s."""
    flat = [t for steps in per_round for t in steps]
    median = statistics.median(flat)
    return {
        "median_step_seconds": round(median, 4),
        "images_per_second": round(BATCH / median, 2),
        "round_medians": [round(statistics.median(r), 4) for r in per_round],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reference-steps", type=int, default=3)
    parser.add_argument("--no-reference", action="store_true", help="skip torchvision")
    parser.add_argument("--no-today", action="store_true", help="skip the former default")
    parser.add_argument("--config", type=Path, default=DEMO, help="the detector's config")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from mediscope.data.synthetic.gram_stain import generate_gram_stain

    load_before = os.getloadavg()
    ours: list[list[float]] = []
    plain: list[list[float]] = []
    ours_window: list[float] = []
    plain_window: list[float] = []
    refs: dict[str, list[list[float]]] = {}
    today: list[list[float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "smears"
        # enough training images for the steps after a 10 % validation split
        count = int((args.warmup + args.steps + 1) * BATCH / 0.9) + 2
        generate_gram_stain(data, count=count, test_count=0, size=SIZE, seed=0)
        config = make_config(args.config, data, Path(tmp) / "runs", args.warmup, args.steps)
        before = make_config(args.config, data, Path(tmp) / "runs", args.warmup, args.steps, TODAY)
        _, _, _, loader = plain_loop(config)
        reference_batches = list(itertools.islice(loader, args.reference_steps + 1))
        for round_ in range(args.rounds):
            steps, window = mediscope_steps(config, args.warmup)
            ours.append(steps)
            ours_window.append(window / len(steps))
            steps, window = plain_steps(config, args.warmup, args.steps)
            plain.append(steps)
            plain_window.append(window / len(steps))
            line = (
                f"round {round_}: mediscope {statistics.median(ours[-1]):.3f} s/step, "
                f"plain {statistics.median(plain[-1]):.3f} s/step"
            )
            if not args.no_today:
                steps, _ = plain_steps(before, args.warmup, args.steps)
                today.append(steps)
                line += f", plain before freeze/channels-last {statistics.median(steps):.3f}"
            if not args.no_reference:
                for name in ("fcos_resnet50_fpn", "retinanet_resnet50_fpn"):
                    times = reference_steps(name, reference_batches, warmup=1)
                    refs.setdefault(name, []).append(times)
                    line += f", {name} {statistics.median(times):.3f}"
            print(line, f"(load {os.getloadavg()[0]:.2f})", flush=True)
    mediscope = summary(ours)
    loop = summary(plain)
    overhead = mediscope["median_step_seconds"] / loop["median_step_seconds"]
    window = statistics.median(ours_window) / statistics.median(plain_window)
    config_text = yaml.safe_load(args.config.read_text())
    result = {
        "benchmark": "one detection training step (forward, loss, backward, optimizer), "
        f"{SIZE} px, batch {BATCH}: mediscope.fit against a plain PyTorch loop",
        "config": args.config.name if args.config == DEMO else str(args.config),
        "model": config_text["model"],
        "precision": config.trainer.precision,
        "channels_last": config.model.channels_last,
        "compile": config.trainer.compile,
        "image_size": SIZE,
        "batch_size": BATCH,
        "steps_timed_per_round": args.steps,
        "warmup_steps": args.warmup,
        "rounds": args.rounds,
        "mediscope": mediscope,
        "plain": loop,
        "overhead": round(overhead, 4),
        "overhead_with_loading": round(window, 4),
        "target_overhead": TARGET_OVERHEAD,
        "plain_former_default": summary(today) if today else None,
        "former_default_note": f"the same model with model sections {TODAY} (the detection "
        "default before), plain loop",
        "references": {name: summary(times) for name, times in refs.items()},
        "reference_note": "torchvision detectors, weights=None, weights_backbone=None, "
        f"min_size=max_size={SIZE}, AdamW, plain loop, {args.reference_steps} steps per "
        "round after one untimed",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    write_json_atomic(RESULTS, result)
    print(f"overhead {overhead:.3f} (target <= {TARGET_OVERHEAD}); written to {RESULTS}")


if __name__ == "__main__":
    main()
