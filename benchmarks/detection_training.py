"""Time to mAP@.5 of 0.5, 0.7 and 0.9 on synthetic 320 px Gram-stained smears, per detector.

Each detector trains on the same synthetic smears (300 train / 80 validation tiles of
320 px from ``mediscope data synth gram-stain --whole-images``, seed 0, or with
``--fields`` its default tiles, whose crowding varies more; same split, augmentations,
batch size and schedule length) on this machine's CPU; after every epoch the
validation mAP@.5 and the wall time since the start of training are recorded. A run
stops at mAP@.5 >= 0.9 or after ``--epochs``.

``today`` is the detection default before the lighter one (``retinanet`` with
EfficientNet-Lite0, FPN of 64 channels over strides 8, 16 and 32, two-convolution
head towers, nothing frozen); ``default`` is what ``configs/demo/gram-stain.yaml``
ships now. The levers between them are measured one at a time on top of ``today``
(``today-light``: two levels, 48 channels, one-convolution towers; ``today-freeze4``:
the stem and the first two blocks of the backbone frozen; ``today-channels-last``)
and over ``default`` (``default-warmup``: twice the peak learning rate after a
one-epoch warm-up; ``default-bf16``: bf16 autocast; ``default-light``: the lighter
head and levels too; ``default-ema``: validation on a moving average of the weights,
``trainer.ema: 0.99``; ``default-light-ema``: both; ``default-freeze5``: one more
backbone stage frozen; ``default-c48``: 48 channels in the FPN and heads), besides the
study's detectors (``retinanet-atss``, ``retinanet-tal``, ``retinanet-s1``, ``fcos``,
``faster_rcnn``). The load average is recorded: the machine may be shared, so compare
figures of one run only. A target not reached is ``null`` with the best value seen. The
file is rewritten after every detector. Results:
``benchmarks/results/detection_training.json`` (or ``--output``).

Usage:
    python benchmarks/detection_training.py [--epochs 12] [--threads N] [--only NAME ...]
        [--output FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from mediscope.files import write_json_atomic

RESULTS = Path(__file__).parent / "results" / "detection_training.json"
TARGETS = (0.5, 0.7, 0.9)
DEMO = Path(__file__).parents[1] / "configs" / "demo" / "gram-stain.yaml"
SIZE, TRAIN, VAL, BATCH = 320, 300, 80, 8
#: Every detector gets the same backbone with the offline ImageNet weights.
BACKBONE = "efficientnet_lite0"

#: name → (model section, loss section)
DETECTORS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "today": (
        {"name": "retinanet", "params": {"backbone": BACKBONE, "anchor_size": 2.0, "channels": 64}},
        {
            "params": {
                "assigner": "atss",
                "classification": "focal",
                "objectness": "focal",
                "box": "giou",
            }
        },
    ),
    "retinanet-atss": (
        {"name": "retinanet", "params": {"backbone": BACKBONE, "anchor_size": 2.0, "channels": 64}},
        {"params": {"assigner": "atss", "classification": "focal", "box": "giou"}},
    ),
    "retinanet-tal": (
        {"name": "retinanet", "params": {"backbone": BACKBONE, "anchor_size": 2.0, "channels": 64}},
        {"params": {"assigner": "tal", "classification": "focal", "box": "giou"}},
    ),
    "retinanet-s1": (
        {"name": "retinanet", "params": {"backbone": BACKBONE, "anchor_size": 2.0, "channels": 64}},
        {
            "class_weights": "inverse_sqrt",
            "params": {
                "assigner": "maxiou",
                "classification": "ce",
                "objectness": "focal",
                "box": "smooth_l1",
            },
        },
    ),
    "fcos": ({"name": "fcos", "params": {"backbone": BACKBONE}}, {}),
    "faster_rcnn": ({"name": "faster_rcnn", "params": {"backbone": BACKBONE}}, {}),
}


class Clock(L.Callback):
    """Validation mAP@.5 against wall time; stops at the last target."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.points: list[tuple[int, float, float]] = []

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # After the module's on_validation_epoch_end has logged this epoch's mAP (a
        # callback's on_validation_epoch_end runs first and would read the last epoch's).
        if trainer.sanity_checking:
            return
        value = float(trainer.callback_metrics.get("val/map_50", torch.tensor(0.0)))
        self.points.append((trainer.current_epoch, time.perf_counter() - self.start, value))
        if value >= TARGETS[-1]:
            trainer.should_stop = True


#: name → (detector or ``default``, config sections changed; model.params merged).
LEVERS: dict[str, tuple[str, dict[str, Any]]] = {
    "today-light": (
        "today",
        {"model": {"params": {"channels": 48, "head_depth": 1, "levels": [2, 3]}}},
    ),
    "today-freeze4": ("today", {"model": {"freeze": 4}}),
    "today-channels-last": ("today", {"model": {"channels_last": True}}),
    "default-warmup": (
        "default",
        {
            "optimizer": {"lr": 0.002},
            "scheduler": {"name": "CosineAnnealingLR", "warmup_epochs": 1},
        },
    ),
    "default-bf16": ("default", {"trainer": {"precision": "bf16-mixed"}}),
    "default-ema": ("default", {"trainer": {"ema": 0.99}}),
    "default-freeze5": ("default", {"model": {"freeze": 5}}),
    "default-c48": ("default", {"model": {"params": {"channels": 48}}}),
    "default-light-ema": (
        "default",
        {
            "model": {"params": {"channels": 48, "head_depth": 1, "levels": [2, 3]}},
            "trainer": {"ema": 0.99},
        },
    ),
    "default-light": (
        "default",
        {"model": {"params": {"channels": 48, "head_depth": 1, "levels": [2, 3]}}},
    ),
}


def shipped_default() -> dict[str, Any]:
    """The training sections of ``configs/demo/gram-stain.yaml``."""
    shipped = yaml.safe_load(DEMO.read_text())
    keep = ("model", "loss", "optimizer", "scheduler", "augment", "trainer")
    sections = {k: shipped[k] for k in keep if k in shipped}
    sections["trainer"] = {
        k: v for k, v in sections.get("trainer", {}).items() if k != "max_epochs"
    }
    return sections


def sections_of(name: str) -> dict[str, Any]:
    """The config sections that make detector ``name``."""
    base, changes = LEVERS.get(name, (name, {}))
    if base == "default":
        sections = shipped_default()
    else:
        model, loss = DETECTORS[base]
        sections = {
            "model": {**model, "pretrained": True},
            "loss": loss,
            "optimizer": {"name": "AdamW", "lr": 0.001},
            "scheduler": {"name": "CosineAnnealingLR"},
            "augment": {"hflip": 0.5, "vflip": 0.5, "rotate90": 0.5},
            "trainer": {},
        }
    for section, values in changes.items():
        merged = {**sections.get(section, {}), **values}
        if section == "model" and "params" in values:
            merged["params"] = {**sections["model"].get("params", {}), **values["params"]}
        sections[section] = merged
    return sections


def run(name: str, data: Path, runs: Path, epochs: int) -> dict[str, Any]:
    from mediscope.api import fit
    from mediscope.tasks.validate import load_config

    sections = sections_of(name)
    config = {
        "task": "detection",
        "seed": 0,
        "data": {
            "format": "yolo",
            "path": str(data),
            "image_size": SIZE,
            "batch_size": BATCH,
            "split": {"method": "holdout", "val_fraction": VAL / (TRAIN + VAL)},
        },
        **sections,
        "checkpoint": {"every_n_epochs": 0},
        "logging": {"progress": "none", "loggers": ["csv"]},
        "run": {"name": name, "dir": str(runs)},
    }
    config["trainer"] = {**config["trainer"], "max_epochs": epochs}
    path = runs / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    clock = Clock()
    fit(load_config(path), callbacks=[clock], test=False)
    reached = {}
    for target in TARGETS:
        hit = next((p for p in clock.points if p[2] >= target), None)
        reached[f"seconds_to_map50_{target}"] = round(hit[1], 1) if hit else None
        reached[f"epochs_to_map50_{target}"] = hit[0] + 1 if hit else None
    return {
        "config": {k: sections[k] for k in ("model", "loss", "optimizer", "scheduler", "trainer")},
        **reached,
        "best_map50": round(max((p[2] for p in clock.points), default=0.0), 4),
        "epochs_run": len(clock.points),
        "seconds_per_epoch": round(clock.points[-1][1] / len(clock.points), 1)
        if clock.points
        else None,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "curve": [
            {"epoch": e, "seconds": round(s, 1), "map_50": round(v, 4)} for e, s, v in clock.points
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's")
    parser.add_argument("--only", nargs="*", default=["today", "default", *LEVERS])
    parser.add_argument("--output", type=Path, default=RESULTS, help="the JSON written")
    parser.add_argument(
        "--fields",
        action="store_true",
        help="tiles as crowded as fields of a large smear; default: whole small smears, "
        "the data the recorded figures were measured on",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from mediscope.data.synthetic.gram_stain import generate_gram_stain

    results: dict[str, Any] = {}
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "smears"
        generate_gram_stain(
            data, count=TRAIN + VAL, test_count=0, size=SIZE, seed=0, fields=args.fields
        )
        for name in args.only:
            runs = Path(tmp) / "runs"
            runs.mkdir(exist_ok=True)
            results[name] = run(name, data, runs, args.epochs)
            print(
                name,
                {k: v for k, v in results[name].items() if k not in ("curve", "config")},
                flush=True,
            )
            summary = {}
            if "today" in results and "default" in results:
                a, b = results["today"], results["default"]
                for target in TARGETS:
                    key = f"seconds_to_map50_{target}"
                    if a[key] and b[key]:
                        summary[f"time_ratio_to_{target}"] = round(b[key] / a[key], 3)
            write_json_atomic(
                args.output,
                {
                    "data": f"{TRAIN} train / {VAL} val synthetic smears of {SIZE} px "
                    "(mediscope data synth gram-stain "
                    f"{'--fields' if args.fields else '--whole-images'}, seed 0)",
                    "batch_size": BATCH,
                    "max_epochs": args.epochs,
                    "default_vs_today": summary,
                    "torch_threads": torch.get_num_threads(),
                    "cpu_count": os.cpu_count(),
                    "machine": platform.platform(),
                    "load_average_before": load_before,
                    "load_average_after": [round(x, 2) for x in os.getloadavg()],
                    "detectors": results,
                },
            )


if __name__ == "__main__":
    main()
