"""Learning tests: models really learn the synthetic Gram crops (macro-F1 >= 0.9).

The demo test trains ``simple_cnn``; these train two more models, one of them the
offline-pretrained EfficientNet-Lite0, on the same kind of data, and test on held-out
crops.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mediscope import api
from mediscope.data.synthetic.gram_crops import generate_gram_crops
from mediscope.tasks.validate import config_from_dict


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("learning") / "crops"
    generate_gram_crops(root, per_class=300, test_per_class=100, size=64, seed=7)
    return root


CASES: dict[str, dict[str, Any]] = {
    "unet_classifier": {
        "model": {"name": "unet_classifier", "params": {"width": 16}},
        "optimizer": {"name": "AdamW", "lr": 0.002, "weight_decay": 0.0001},
        "trainer": {"max_epochs": 12},
    },
    "efficientnet_lite0-pretrained": {
        "model": {"name": "efficientnet_lite0", "pretrained": True},
        "optimizer": {"name": "AdamW", "lr": 0.002, "weight_decay": 0.0001},
        "trainer": {"max_epochs": 6},
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_model_learns_gram_crops(case: str, crops: Path, tmp_path: Path) -> None:
    raw = {
        "task": "classification",
        "seed": 0,
        "data": {
            "format": "imagefolder",
            "path": str(crops / "train"),
            "test_path": str(crops / "test"),
            "image_size": 64,
            "batch_size": 32,
        },
        "scheduler": {"name": "CosineAnnealingLR"},
        "augment": {"hflip": 0.5, "vflip": 0.5, "rotate90": 0.5},
        "logging": {"progress": "none"},
        "run": {"name": case, "dir": str(tmp_path)},
        **CASES[case],
    }
    config = config_from_dict(raw)
    result = api.fit(config)
    assert result.best_checkpoint is not None
    metrics, path = api.test(config, result.best_checkpoint)
    assert json.loads(path.read_text())["n_samples"] == 400
    print(  # shown with -s or -rA: the figures quoted in release notes
        f"{case}: val f1_macro {result.val_metrics['f1_macro']:.4f}, "
        f"test f1_macro {metrics['f1_macro']:.4f}, {result.seconds:.0f} s"
    )
    assert metrics["f1_macro"] >= 0.90, (case, metrics["f1_macro"])
    assert result.val_metrics["f1_macro"] >= 0.90, (case, result.val_metrics["f1_macro"])
