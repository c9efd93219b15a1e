"""Learning tests: segmenters really learn the synthetic dermoscopy lesions.

``unet`` (a study architecture) and an ``smp:`` model each reach a mean Dice of at least
0.85 (and a lesion Dice of at least 0.85) on held-out images they never saw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mediscope import api
from mediscope.data.synthetic.lesions import generate_lesions
from mediscope.tasks.validate import config_from_dict


@pytest.fixture(scope="module")
def lesions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("learning") / "lesions"
    generate_lesions(root, train=200, val=50, test=50, size=96, seed=11)
    return root


CASES: dict[str, dict[str, Any]] = {
    "unet": {
        "model": {"name": "unet", "params": {"width": 16, "depth": 3}},
        "trainer": {"max_epochs": 6},
    },
    "smp-unet-resnet18": {
        "model": {
            "name": "smp:Unet",
            "encoder": "resnet18",
            "params": {"encoder_depth": 3, "decoder_channels": [64, 32, 16]},
        },
        "trainer": {"max_epochs": 5},
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_segmenter_learns_lesions(case: str, lesions: Path, tmp_path: Path) -> None:
    raw = {
        "task": "segmentation",
        "seed": 0,
        "data": {
            "format": "masks",
            "path": str(lesions),
            "classes": ["background", "lesion"],
            "image_size": 96,
            "batch_size": 8,
        },
        "loss": {"name": "DiceCELoss"},
        "optimizer": {"name": "AdamW", "lr": 0.003},
        "scheduler": {"name": "CosineAnnealingLR"},
        "augment": {"hflip": 0.5, "vflip": 0.5, "rotate90": 0.5},
        "checkpoint": {"every_n_epochs": 0},
        "logging": {"progress": "none"},
        "run": {"name": case, "dir": str(tmp_path)},
        **CASES[case],
    }
    config = config_from_dict(raw)
    result = api.fit(config)
    assert result.best_checkpoint is not None
    metrics, _ = api.test(config, result.best_checkpoint)
    assert metrics["n_samples"] == 50
    print(  # shown with -s or -rA: the figures quoted in release notes
        f"{case}: val dice_mean {result.val_metrics['dice_mean']:.4f}, test dice_mean "
        f"{metrics['dice_mean']:.4f}, lesion Dice {metrics['dice/lesion']:.4f}, "
        f"iou_mean {metrics['iou_mean']:.4f}, {result.seconds:.0f} s"
    )
    assert metrics["dice_mean"] >= 0.85, (case, metrics)
    assert metrics["dice/lesion"] >= 0.85, (case, metrics)
