"""Time to mAP@.5 of 0.5, 0.7 and 0.9 on synthetic 320 px Gram-stained smears, per detector.

Each detector trains on the same synthetic smears (same split, seed, augmentations,
batch size and schedule) on this machine's CPU threads; after every epoch the
validation mAP@.5 and the wall time since the start of training are recorded. A run
stops at mAP@.5 >= 0.9 or after ``--epochs``. Besides the detectors of the study, the
candidates for a lighter default are measured in the same run, one lever each on top
of today's default (``retinanet-atss``): fewer levels and a thinner head
(``light``), a warm-up then cosine schedule at twice the peak learning rate
(``light-warmup``) and bf16 autocast (``light-bf16``). The load average is recorded:
the machine may be shared, so compare figures of one run only. A target not reached is
``null`` with the best value seen. Results: ``benchmarks/results/detection_training.json``.

Usage:
    python benchmarks/detection_training.py [--epochs 20] [--images 200] [--only NAME ...]
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
#: Every detector gets the same backbone with the offline ImageNet weights.
BACKBONE = "efficientnet_lite0"

#: name → (model section, loss section)
DETECTORS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
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
    "light": (
        {
            "name": "retinanet",
            "params": {
                "backbone": BACKBONE,
                "anchor_size": 2.0,
                "channels": 48,
                "head_depth": 1,
                "levels": [2, 3],
            },
        },
        {"params": {"assigner": "atss", "classification": "focal", "box": "giou"}},
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

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = float(trainer.callback_metrics.get("val/map_50", torch.tensor(0.0)))
        self.points.append((trainer.current_epoch, time.perf_counter() - self.start, value))
        if value >= TARGETS[-1]:
            trainer.should_stop = True


#: name → (detector, config sections replaced): training levers over a detector.
LEVERS: dict[str, tuple[str, dict[str, Any]]] = {
    "light-warmup": (
        "light",
        {
            "optimizer": {"name": "AdamW", "lr": 0.002},
            "scheduler": {"name": "CosineAnnealingLR", "warmup_epochs": 1},
        },
    ),
    "light-bf16": ("light", {"trainer": {"precision": "bf16-mixed"}}),
}


def run(name: str, data: Path, runs: Path, epochs: int) -> dict[str, Any]:
    from mediscope.api import fit
    from mediscope.tasks.validate import load_config

    base, changes = LEVERS.get(name, (name, {}))
    model, loss = DETECTORS[base]
    model = {**model, "pretrained": True}
    config = {
        "task": "detection",
        "seed": 0,
        "data": {
            "format": "yolo",
            "path": str(data),
            "image_size": 320,
            "batch_size": 8,
            "split": {"method": "holdout", "val_fraction": 0.2},
        },
        "model": model,
        "loss": loss,
        "optimizer": {"name": "AdamW", "lr": 0.001},
        "scheduler": {"name": "CosineAnnealingLR"},
        "augment": {"hflip": 0.5, "vflip": 0.5, "rotate90": 0.5},
        "trainer": {"max_epochs": epochs},
        "logging": {"progress": "none", "loggers": ["csv"]},
        "run": {"name": name, "dir": str(runs)},
    }
    for section, values in changes.items():
        config[section] = {**config.get(section, {}), **values}
    config["trainer"] = {**config["trainer"], "max_epochs": epochs}
    path = runs / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    clock = Clock()
    fit(load_config(path), callbacks=[clock])
    reached = {}
    for target in TARGETS:
        hit = next((p for p in clock.points if p[2] >= target), None)
        reached[f"seconds_to_map50_{target}"] = round(hit[1], 1) if hit else None
        reached[f"epochs_to_map50_{target}"] = hit[0] + 1 if hit else None
    return {
        **reached,
        "best_map50": round(max((p[2] for p in clock.points), default=0.0), 4),
        "epochs_run": len(clock.points),
        "curve": [
            {"epoch": e, "seconds": round(s, 1), "map_50": round(v, 4)} for e, s, v in clock.points
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--only", nargs="*", default=[*DETECTORS, *LEVERS])
    args = parser.parse_args()
    from mediscope.data.synthetic.gram_stain import generate_gram_stain

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "smears"
        generate_gram_stain(data, count=args.images, test_count=0, size=320, seed=0)
        for name in args.only:
            runs = Path(tmp) / "runs"
            runs.mkdir(exist_ok=True)
            results[name] = run(name, data, runs, args.epochs)
            print(name, {k: v for k, v in results[name].items() if k != "curve"}, flush=True)
    write_json_atomic(
        RESULTS,
        {
            "data": f"{args.images} synthetic smears of 320 px, 80 % train / 20 % val",
            "batch_size": 8,
            "backbone": f"{BACKBONE} (ImageNet weights), FPN 64 channels (retinanet)",
            "max_epochs": args.epochs,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "machine": platform.platform(),
            "load_average": os.getloadavg(),
            "detectors": results,
        },
    )


if __name__ == "__main__":
    main()
