"""Calibration, Grad-CAM and the classification evaluation's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import tiny_config
from mediscope.api import fit
from mediscope.metrics.calibration import expected_calibration_error, reliability
from mediscope.models import build_model
from mediscope.models.cam import grad_cam, target_layer
from mediscope.reports.gradcam import choose_images
from mediscope.tasks.validate import config_from_dict


def test_ece_of_known_cases() -> None:
    labels = np.zeros(10, dtype=int)
    sure_and_right = np.tile([1.0, 0.0], (10, 1))
    assert expected_calibration_error(labels, sure_and_right) == 0.0
    # confidence 0.8 and 8 of 10 right: calibrated
    probs = np.tile([0.8, 0.2], (10, 1))
    probs[8:] = [0.2, 0.8]
    assert expected_calibration_error(labels, probs) == pytest.approx(0.0, abs=1e-12)
    # confidence 0.9 and half right: ECE 0.4
    half = np.tile([0.9, 0.1], (10, 1))
    half[5:] = [0.1, 0.9]
    assert expected_calibration_error(labels, half) == pytest.approx(0.4)
    # two bins: weights by share of images
    mixed = np.concatenate([np.tile([1.0, 0.0], (5, 1)), np.tile([0.1, 0.9], (5, 1))])
    bins = reliability(labels, mixed)
    assert bins.counts.sum() == 10 and (bins.counts > 0).sum() == 2
    assert bins.ece == pytest.approx(0.5 * 0.0 + 0.5 * 0.9)


def test_choose_images_takes_classes_in_turn_mistakes_first() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    preds = np.array([0, 1, 0, 1, 1, 2])
    chosen = choose_images(labels, preds, 4)
    assert chosen == [1, 3, 5, 0]  # class 0's mistake first, then one per class
    assert choose_images(labels, preds, 0) == []
    assert sorted(choose_images(labels, preds, 100)) == list(range(6))


@pytest.mark.parametrize(
    "name,params",
    [
        ("simple_cnn", {"width": 8, "depth": 2}),
        ("resnet18", {}),
        ("unet_classifier", {}),
        ("vgg19_cnn", {}),
        ("efficientnet_lite0", {}),
    ],
)
def test_grad_cam_finds_a_spatial_layer_in_every_classifier(name: str, params: dict) -> None:
    torch.manual_seed(0)
    model = build_model(name, task="classification", num_classes=3, **params).eval()
    inputs = torch.randn(2, 3, 64, 64)
    layer = target_layer(model, inputs[:1])
    assert isinstance(layer, torch.nn.Module)
    maps = grad_cam(model, inputs, [0, 2])
    assert maps.shape == (2, 64, 64)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert not model.training


def test_grad_cam_points_at_the_evidence() -> None:
    # two feature channels (red, green); the class-1 logit is the mean red response. The
    # image is red top-left and green bottom-right: Grad-CAM for class 1 must be hot on
    # the red quadrant only, as green carries no gradient
    class RedDetector(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 2, 1, bias=False)
            with torch.no_grad():
                self.conv.weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = torch.relu(self.conv(x))  # 2 x 16 x 16
            red = features[:, 0].mean(dim=(1, 2))
            return torch.stack([features[:, 1].mean(dim=(1, 2)), red], dim=1)

    image = torch.zeros(1, 2, 16, 16)
    image[:, 0, :8, :8] = 1.0
    image[:, 1, 8:, 8:] = 1.0
    heat = grad_cam(RedDetector(), image, [1])[0]
    assert heat[:8, :8].mean() > 0.9
    assert heat[8:, 8:].mean() < 0.1


def test_classification_evaluation_writes_intervals_and_plots(
    tiny_crops: Path, tmp_path: Path
) -> None:
    cfg = config_from_dict(
        tiny_config(
            tiny_crops, tmp_path / "runs", trainer={"max_epochs": 1}, report={"bootstrap": 200}
        )
    )
    run = fit(cfg).run_dir
    metrics = json.loads((run / "val_metrics.json").read_text())
    assert metrics["bootstrap_resamples"] == 200 and metrics["confidence"] == 0.95
    for key in ("accuracy", "balanced_accuracy", "auroc_macro", "ece"):
        assert metrics[f"ci_low/{key}"] <= metrics[key] <= metrics[f"ci_high/{key}"], key
    assert "ci_low/support/G-cocci" not in metrics  # counts get no interval
    assert 0 <= metrics["ece"] <= 1
    for name in ("val_pr.png", "val_reliability.png", "val_gradcam.png"):
        with Image.open(run / "plots" / name) as image:
            assert image.size[0] > 300, name


def test_bootstrap_off(tiny_crops: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(
        tiny_config(
            tiny_crops,
            tmp_path / "runs",
            trainer={"max_epochs": 1},
            report={"bootstrap": 0, "gradcam": 0},
        )
    )
    run = fit(cfg).run_dir
    metrics = json.loads((run / "val_metrics.json").read_text())
    assert not any(k.startswith("ci_") for k in metrics)
    assert not (run / "plots" / "val_gradcam.png").exists()
