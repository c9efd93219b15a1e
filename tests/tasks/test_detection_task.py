"""The detection task end to end: fit, validation loss, test, predict (sliced), counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from helpers import tiny_detection_config
from mediscope import api
from mediscope.errors import ConfigError
from mediscope.tasks import build_task
from mediscope.tasks.validate import load_config


@pytest.fixture(scope="module")
def fitted(tiny_smears: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    runs = tmp_path_factory.mktemp("runs")
    raw = tiny_detection_config(tiny_smears, runs, trainer={"max_epochs": 2})
    path = runs / "config.yaml"
    import yaml

    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    return config, api.fit(config)


def test_fit_logs_validation_loss_and_map(fitted: Any) -> None:
    _, result = fitted
    assert result.epochs_run == 2 and result.best_checkpoint is not None
    log = pd.read_csv(result.run_dir / "metrics.csv")
    for key in ("train/loss", "val/loss", "val/loss_box", "val/map", "val/map_50", "val/map_75"):
        assert log[key].notna().any(), key
    metrics = json.loads((result.run_dir / "val_metrics.json").read_text())
    for key in ("map", "map_50", "map_75", "ap/G-cocci", "recall/G+bacilli", "gt/G-bacilli"):
        assert key in metrics, key
    # counts and overlays use the score threshold with the best F1 on validation
    assert 0.0 <= metrics["f1_at_threshold"] <= 1.0
    assert metrics["count_threshold"] == metrics["score_threshold_f1"]
    split = json.loads((result.run_dir / "split.json").read_text())
    # iterative stratification balances class counts, so sizes are near 12 / 4
    assert len(split["train"]) + len(split["val"]) == 16 and 3 <= len(split["val"]) <= 5
    assert len(split["test"]) == 4
    assert metrics["n_images"] == len(split["val"])
    assert (result.run_dir / "plots" / "val_pr_curves.png").stat().st_size > 0
    report = (result.run_dir / "report.html").read_text()
    assert "AP@.5" in report and "val_best.png" not in report  # inlined, not linked
    assert report.count("data:image/png;base64") >= 4  # curves, intervals, PR, galleries
    for gallery in ("val_best.png", "val_worst.png"):
        assert (result.run_dir / "plots" / gallery).stat().st_size > 0
    for key in ("map", "map_50", "ap50/G-cocci"):
        low, high = metrics[f"ci_low/{key}"], metrics[f"ci_high/{key}"]
        assert low <= metrics[key] <= high, key
    counts = pd.read_csv(result.run_dir / "val_predictions" / "counts.csv")
    assert list(counts.columns) == ["path", "G-cocci", "G+cocci", "G-bacilli", "G+bacilli", "total"]
    # count errors and error kinds at the counting threshold, with intervals
    for key in ("count_mae", "count_mre", "count_mae/G-cocci", "error_background", "error_missed"):
        assert key in metrics and f"ci_low/{key}" in metrics, key
    # the predicted counts of counts.csv against the true objects: the count MAE by hand
    true_total = sum(metrics[f"gt/{c}"] for c in ("G-cocci", "G+cocci", "G-bacilli", "G+bacilli"))
    assert counts["total"].sum() - true_total <= metrics["count_mae"] * len(counts) + 1e-9
    confusion = pd.read_csv(result.run_dir / "val_detection_confusion.csv", index_col=0)
    assert list(confusion.columns)[-1] == "missed" and confusion.index[-1] == "background"
    assert confusion.iloc[:-1].to_numpy().sum() == true_total  # every object once
    assert confusion.iloc[:, :-1].to_numpy().sum() == counts["total"].sum()  # every detection
    for name in ("val_detection_confusion.png", "val_errors.png"):
        assert (result.run_dir / "plots" / name).stat().st_size > 0
    assert "count MAE" in report and "error_background" in report


def test_test_split_is_evaluated(fitted: Any) -> None:
    config, result = fitted
    metrics, path = api.test(config, result.best_checkpoint)
    assert path.name == "test_metrics.json" and metrics["n_images"] == 4
    assert 0.0 <= metrics["map_50"] <= 1.0
    val = json.loads((result.run_dir / "val_metrics.json").read_text())
    assert metrics["count_threshold"] == val["score_threshold_f1"]  # chosen on val, not test
    # all boxes and the ground truth kept for paired comparisons give the same mAP
    from mediscope.evaluation.per_sample import read_samples, samples_file

    samples = read_samples(samples_file(result.run_dir, "test"))
    assert samples is not None and len(samples.ids) == 4
    again = samples.statistic(samples.ids)(np.arange(4))
    assert again["map_50"] == pytest.approx(metrics["map_50"], abs=1e-6)
    assert metrics["bootstrap_unit"] == "image" and metrics["bootstrap_groups"] == 4


def test_predict_slices_a_large_smear(fitted: Any, tiny_smears: Path, tmp_path: Path) -> None:
    from mediscope.inference.predict import predict

    _, result = fitted
    large = sorted((tiny_smears / "large" / "images").glob("*.png"))
    table = predict(
        result.run_dir,
        inputs=large,
        output=tmp_path / "out",
        overrides=["inference.window=128", "inference.score_threshold=0.0", "inference.merge=wbf"],
    )
    assert list(table.columns)[-1] == "total" and len(table) == 1
    boxes = pd.read_csv(tmp_path / "out" / "predictions.csv").dropna(subset=["score"])
    assert len(boxes) > 0
    # boxes come back in the smear's own pixels, beyond the first 128 px tile
    assert boxes["x2"].max() > 300 and boxes["y2"].max() > 200
    assert boxes["x2"].max() <= 600 and boxes["y2"].max() <= 450
    assert (tmp_path / "out" / "predictions.json").is_file()
    assert (tmp_path / "out" / "counts.csv").is_file()
    overlay = Image.open(tmp_path / "out" / "overlays" / f"{large[0].stem}.jpg")
    assert overlay.size[0] == 600 and overlay.size[1] > 450  # a legend band above the smear


def test_sliced_predictor_maps_tiles_back(fitted: Any) -> None:
    """A detector that finds one box per tile: boxes land at each tile's offset."""
    from mediscope.inference.detection import DetectionPredictor
    from mediscope.models.detection.base import Detector

    class OneBox(Detector):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return images

        def detect(self, raw: Any, **settings: Any) -> list[dict[str, torch.Tensor]]:
            box = torch.tensor([[8.0, 8.0, 24.0, 24.0]])  # in the 64 px model input
            return [
                {"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
                for _ in range(raw.shape[0])
            ]

    config, _ = fitted
    settings = {
        "image_size": config.data.image_size,
        "mean": [0.0] * 3,
        "std": [1.0] * 3,
        "window": (128, 128),
        "overlap": 0.0,
    }
    predictor = DetectionPredictor(OneBox(), **settings)
    found = predictor.predict(np.zeros((256, 384, 3), np.uint8))
    assert len(found.boxes) == 6  # 2 x 3 tiles, each box scaled x2 and shifted
    corners = {tuple(b) for b in found.boxes[:, :2].round().astype(int).tolist()}
    assert corners == {(x + 16, y + 16) for y in (0, 128) for x in (0, 128, 256)}
    assert np.allclose(found.boxes[:, 2] - found.boxes[:, 0], 32)
    # the box limit holds per window: 6 tiles keep 6 boxes even with a limit of 1
    limited = DetectionPredictor(OneBox(), **settings, max_detections=1)
    assert len(limited.predict(np.zeros((256, 384, 3), np.uint8)).boxes) == 6


def test_loss_settings_are_checked(tiny_smears: Path, tmp_path: Path, write_config: Any) -> None:
    raw = tiny_detection_config(tiny_smears, tmp_path, loss={"params": {"assigner": "hungarian"}})
    with pytest.raises(ConfigError, match="assigner"):
        api.fit(load_config(write_config(raw)))
    raw = tiny_detection_config(tiny_smears, tmp_path, loss={"name": "DiceLoss"})
    with pytest.raises(ConfigError, match="loss.name"):
        api.fit(load_config(write_config(raw)))
    # a value of the wrong type is a one-line config error, not a traceback
    for params in ({"weights": 2}, {"assigner_params": [1]}):
        raw = tiny_detection_config(tiny_smears, tmp_path, loss={"params": params})
        with pytest.raises(ConfigError, match=r"loss\.params: DetectionLoss: "):
            api.fit(load_config(write_config(raw)))
    assert not list(tmp_path.glob("tiny-det"))  # nothing half-written


def test_class_weights_from_object_counts(
    tiny_smears: Path, tmp_path: Path, write_config: Any
) -> None:
    from mediscope.tasks import data_module

    raw = tiny_detection_config(
        tiny_smears,
        tmp_path,
        loss={"class_weights": "inverse", "params": {"classification": "ce"}},
    )
    config = load_config(write_config(raw))
    datamodule = data_module(config)
    counts = datamodule.train_class_counts()
    assert counts is not None and len(counts) == 4
    boxes = sum(len(s.box_labels) for s in datamodule.train_set.samples)  # type: ignore[union-attr, arg-type]
    assert sum(counts) == boxes
    task = build_task(config, datamodule.classes, class_counts=counts)
    weights = task.criterion.class_weights
    assert weights is not None and float(weights.mean()) == pytest.approx(1.0)
    rarest = int(np.argmin(counts))
    assert int(weights.argmax()) == rarest


def test_predict_command_prints_counts(
    fitted: Any, tiny_smears: Path, cli: Any, tmp_path: Path
) -> None:
    _, result = fitted
    large = tiny_smears / "large" / "images"
    out = cli(
        "predict", result.run_dir, "--input", large, "--output", tmp_path / "out",
        "--set", "inference.window=128", "--set", "inference.score_threshold=0.0",
    )  # fmt: skip
    assert out.code == 0, out.err
    lines = out.out.strip().splitlines()
    assert lines[0].startswith("large_") and "G-cocci" in lines[0]
    assert lines[-2].startswith("1 images, ") and lines[-1].startswith("predictions: ")
    bad = cli("predict", result.run_dir, "--input", large, "--output", tmp_path / "x.csv")
    assert bad.code == 2 and "folder" in bad.err and not (tmp_path / "x.csv").exists()


def test_fit_command_on_detection(
    tiny_smears: Path, cli: Any, tmp_path: Path, write_config: Any
) -> None:
    raw = tiny_detection_config(tiny_smears, tmp_path / "runs")
    out = cli("fit", write_config(raw))
    assert out.code == 0, out.err
    assert "map_50" in out.out and out.out.strip().splitlines()[-1].startswith("run: ")
