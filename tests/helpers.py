"""Helpers shared by tests (importable as ``helpers``)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def tiny_config(data_root: Path, runs: Path, /, **sections: Any) -> dict[str, Any]:
    """A fast classification config over ``data`` (an imagefolder with train/ and test/)."""
    config: dict[str, Any] = {
        "task": "classification",
        "seed": 3,
        "data": {
            "format": "imagefolder",
            "path": str(data_root / "train"),
            "test_path": str(data_root / "test"),
            "image_size": 32,
            "batch_size": 16,
        },
        "model": {"name": "simple_cnn", "params": {"width": 8, "depth": 2}},
        "trainer": {"max_epochs": 2},
        "logging": {"progress": "none"},
        "run": {"name": "tiny", "dir": str(runs)},
    }
    return merge_sections(config, sections)


def tiny_segmentation_config(data_root: Path, runs: Path, /, **sections: Any) -> dict[str, Any]:
    """A fast segmentation config over an MMSeg-layout folder (img/, labels/)."""
    config: dict[str, Any] = {
        "task": "segmentation",
        "seed": 3,
        "data": {
            "format": "masks",
            "path": str(data_root),
            "classes": ["background", "lesion"],
            "image_size": 32,
            "batch_size": 4,
        },
        "model": {"name": "unet", "params": {"width": 4, "depth": 2}},
        "trainer": {"max_epochs": 1},
        "logging": {"progress": "none"},
        "run": {"name": "tiny-seg", "dir": str(runs)},
    }
    return merge_sections(config, sections)


def tiny_detection_config(data_root: Path, runs: Path, /, **sections: Any) -> dict[str, Any]:
    """A fast detection config over a YOLO folder (images/, labels/, data.yaml)."""
    config: dict[str, Any] = {
        "task": "detection",
        "seed": 3,
        "data": {
            "format": "yolo",
            "path": str(data_root),
            "image_size": 64,
            "batch_size": 4,
            "split": {"method": "holdout", "val_fraction": 0.25},
        },
        "model": {
            "name": "retinanet",
            "params": {"backbone": "resnet18", "channels": 16, "head_depth": 1},
        },
        "trainer": {"max_epochs": 1},
        "logging": {"progress": "none"},
        "run": {"name": "tiny-det", "dir": str(runs)},
    }
    return merge_sections(config, sections)


def tiny_multilabel_config(runs: Path, /, **sections: Any) -> dict[str, Any]:
    """A fast multi-label config over random images with three random 0/1 labels each,
    written MedMNIST-style (npz) into ``runs``."""
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 48), ("val", 16)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (n, 3), dtype=np.uint8)
    runs.mkdir(parents=True, exist_ok=True)
    path = runs / "findings.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    config: dict[str, Any] = {
        "task": "multilabel",
        "seed": 1,
        "data": {
            "format": "npz",
            "path": str(path),
            "classes": ["a", "b", "c"],
            "image_size": 32,
            "batch_size": 16,
        },
        "model": {"name": "simple_cnn", "params": {"width": 8, "depth": 2}},
        "trainer": {"max_epochs": 1},
        "logging": {"progress": "none"},
        "run": {"name": "tiny-ml", "dir": str(runs)},
    }
    return merge_sections(config, sections)


def merge_sections(config: dict[str, Any], sections: dict[str, Any]) -> dict[str, Any]:
    """``config`` with each section updated key by key (other values replaced)."""
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def last_row_metrics(run: Path) -> dict[str, float]:
    """The validation metrics metrics.csv holds for the run's last epoch."""
    with (run / "metrics.csv").open() as file:
        rows = [r for r in csv.DictReader(file) if r.get("val/loss")]
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("val/") and v}


def single_process_validation(run: Path, checkpoint: Path) -> dict[str, float]:
    """Lightning's validation of ``checkpoint`` in this process, on one device."""
    import lightning as L

    from mediscope.data.datamodule import SPLIT_FILE
    from mediscope.engine.restore import task_from_checkpoint
    from mediscope.tasks import data_module
    from mediscope.tasks.validate import load_config

    config = load_config(run / "config.yaml", ["trainer.devices=1", "trainer.strategy=auto"])
    task, stats = task_from_checkpoint(config, checkpoint)
    data = data_module(config, split_file=run / SPLIT_FILE, reuse_split=True, stats=stats)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    (metrics,) = trainer.validate(task, datamodule=data, verbose=False)
    return {k: float(v) for k, v in metrics.items()}
