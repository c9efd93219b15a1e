"""The segmentation task end to end: every study architecture with every study loss,
class weights from pixel frequencies, exclusion lists, evaluation outputs, prediction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from helpers import tiny_segmentation_config
from mediscope import api
from mediscope.errors import ConfigError, DataError
from mediscope.tasks import SegmentationTask, data_module
from mediscope.tasks.validate import config_from_dict

ARCHITECTURES = ("segnet", "unet", "unet2", "dilated_unet")
LOSSES = {
    "BCEWithLogitsLoss": {},
    "FocalLoss": {"gamma": 2.0},
    "DiceLoss": {},
    "TverskyLoss": {"alpha": 0.3, "beta": 0.7},
    "ComboLoss": {"focal": 1.0, "dice": 1.0},
}


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_study_architecture_and_loss_train_one_epoch(
    arch: str, loss: str, tiny_lesions: Path, tmp_path: Path
) -> None:
    raw = tiny_segmentation_config(
        tiny_lesions,
        tmp_path,
        model={"name": arch, "params": {"width": 4, "depth": 2}},
        loss={"name": loss, "params": LOSSES[loss]},
        checkpoint={"every_n_epochs": 0},
    )
    result = api.fit(config_from_dict(raw))
    assert result.epochs_run == 1
    history = pd.read_csv(result.run_dir / "metrics.csv")
    assert np.isfinite(history["train/loss"].dropna()).all()
    val = json.loads((result.run_dir / "val_metrics.json").read_text())
    assert 0.0 <= val["dice_mean"] <= 1.0 and val["n_samples"] == 4
    assert {"dice/lesion", "iou/background", "pixel_accuracy"} <= set(val)
    # the headline is the lesion's (the foreground's) Dice; the background is kept apart
    assert val["dice_mean"] == pytest.approx(val["dice/lesion"])
    both = (val["dice/background"] + val["dice/lesion"]) / 2
    assert val["dice_mean_with_background"] == pytest.approx(both)
    for key in ("dice_mean", "iou_mean", "dice/lesion"):  # bootstrap intervals over images
        assert val[f"ci_low/{key}"] <= val[key] <= val[f"ci_high/{key}"], key


def test_evaluation_writes_per_sample_scores_and_galleries(
    tiny_lesions: Path, tmp_path: Path
) -> None:
    config = config_from_dict(tiny_segmentation_config(tiny_lesions, tmp_path))
    result = api.fit(config)
    assert result.best_checkpoint is not None
    metrics, path = api.test(config, result.best_checkpoint)
    assert path == result.run_dir / "test_metrics.json"
    table = pd.read_csv(result.run_dir / "test_per_sample.csv")
    assert len(table) == 4 and {"id", "dice", "iou"} <= set(table.columns)
    assert table["id"].str.startswith("img/test/").all()
    # the split's Dice is over all pixels, the per-sample ones average images: both in [0, 1]
    assert table["dice"].between(0, 1).all()
    assert 0 <= metrics["dice_mean"] <= 1
    for name in ("test_best.png", "test_worst.png", "val_best.png", "val_worst.png"):
        with Image.open(result.run_dir / "plots" / name) as image:
            assert image.size[0] > 200 and image.size[1] > 100
    assert (result.run_dir / "plots" / "training_curves.png").is_file()
    report = (result.run_dir / "report.html").read_text()
    assert "<h2>Test</h2>" in report and "<th>Dice</th>" in report and "<th>IoU</th>" in report
    assert "best Dice" in report and "worst Dice" in report
    # the per-image confusion matrices kept for paired comparisons give the same Dice
    from mediscope.evaluation.per_sample import read_samples, samples_file

    samples = read_samples(samples_file(result.run_dir, "test"))
    assert samples is not None and samples.ids == table["id"].tolist()
    again = samples.statistic(samples.ids)(np.arange(4))["dice_mean"]
    assert again == pytest.approx(metrics["dice_mean"])
    assert metrics["bootstrap_unit"] == "image" and metrics["bootstrap_groups"] == 4
    # boundary metrics, per image and over the split with their intervals
    assert {"hd95", "assd", "nsd", "hd95/lesion", "objects_true"} <= set(table.columns)
    for key in ("hd95_mean", "assd_mean", "nsd_mean", "hd95/lesion", "nsd/lesion"):
        assert metrics[f"ci_low/{key}"] <= metrics[key] <= metrics[f"ci_high/{key}"], key
    assert 0 <= metrics["nsd_mean"] <= 1 and metrics["hd95_mean"] >= 0
    assert metrics["nsd_tolerance"] == 2.0 and "pixel_spacing_um" not in metrics
    # one lesion per image: not instance-like, so no object metrics under "auto"
    assert "object_f1" not in metrics
    assert "<th>HD95</th>" in report and "<th>NSD</th>" in report
    assert "HD95, ASSD and the NSD tolerance are in pixels" in report


def test_object_metrics_when_asked_and_distances_in_um(tiny_lesions: Path, tmp_path: Path) -> None:
    raw = tiny_segmentation_config(tiny_lesions, tmp_path)
    raw["report"] = {"object_metrics": True, "pixel_spacing": 0.5, "surface_tolerance": 1.0}
    config = config_from_dict(raw)
    result = api.fit(config)
    metrics = json.loads((result.run_dir / "val_metrics.json").read_text())
    for key in ("object_precision", "object_recall", "object_f1", "object_count_mae"):
        assert key in metrics and f"ci_low/{key}" in metrics, key
    assert "object_f1/lesion" in metrics and metrics["pixel_spacing_um"] == 0.5
    table = pd.read_csv(result.run_dir / "val_per_sample.csv")
    assert (table["objects_true"] >= 1).all()
    report = (result.run_dir / "report.html").read_text()
    assert "object F1" in report and "are in µm" in report


def test_sliding_window_and_flip_inference_evaluate_too(tiny_lesions: Path, tmp_path: Path) -> None:
    config = config_from_dict(tiny_segmentation_config(tiny_lesions, tmp_path))
    result = api.fit(config)
    assert result.best_checkpoint is not None
    whole, _ = api.test(config, result.best_checkpoint)
    windowed = config_from_dict(
        tiny_segmentation_config(
            tiny_lesions, tmp_path, inference={"window": 16, "overlap": 0.5, "tta": True}
        )
    )
    tiled, _ = api.test(windowed, result.best_checkpoint)
    assert tiled["n_samples"] == whole["n_samples"] == 4
    assert 0 <= tiled["dice_mean"] <= 1


def test_inverse_pixel_frequency_weights(tiny_lesions: Path, tmp_path: Path) -> None:
    raw = tiny_segmentation_config(
        tiny_lesions, tmp_path, loss={"name": "CrossEntropyLoss", "class_weights": "inverse"}
    )
    config = config_from_dict(raw)
    datamodule = data_module(config)
    counts = datamodule.train_class_counts()
    assert counts is not None and len(counts) == 2
    total = 0
    for sample in datamodule.train_set.samples:  # type: ignore[union-attr]
        total += np.asarray(Image.open(sample.mask)).size
    assert sum(counts) == total
    task = SegmentationTask(config=config, classes=datamodule.classes, class_counts=counts)
    weights = task.weights()
    assert weights is not None
    inverse = 1 / (np.array(counts) / total)
    assert weights.tolist() == pytest.approx((inverse / inverse.mean()).tolist(), rel=1e-5)
    assert weights[1] > weights[0]  # the lesion is the rarer class


def test_exclude_list_drops_samples(tiny_lesions: Path, tmp_path: Path) -> None:
    exclude = tmp_path / "exclude.txt"
    names = sorted(p.stem for p in (tiny_lesions / "img" / "train").iterdir())[:3]
    exclude.write_text("# bad masks\n" + "\n".join(names) + "\n")
    raw = tiny_segmentation_config(tiny_lesions, tmp_path, data={"exclude": str(exclude)})
    datamodule = data_module(config_from_dict(raw))
    assert datamodule.split_sizes() == {"train": 12 - 3, "val": 4}


def test_format_of_another_task_is_refused(tiny_lesions: Path, tmp_path: Path) -> None:
    raw = tiny_segmentation_config(tiny_lesions, tmp_path, data={"format": "imagefolder"})
    with pytest.raises(ConfigError, match="does not hold segmentation data.*formats: masks"):
        data_module(config_from_dict(raw)).prepare_samples()


def test_weighted_sampler_is_refused(tiny_lesions: Path, tmp_path: Path) -> None:
    raw = tiny_segmentation_config(tiny_lesions, tmp_path, data={"sampler": "weighted"})
    with pytest.raises(ConfigError, match="data.sampler: weighted draws classes"):
        config_from_dict(raw)


def test_mask_of_another_size_names_the_file(tiny_lesions: Path, tmp_path: Path) -> None:
    raw = tiny_segmentation_config(tiny_lesions, tmp_path)
    datamodule = data_module(config_from_dict(raw))
    datamodule.setup()
    dataset = datamodule.train_dataset
    assert dataset is not None
    sample = dataset.samples[0]
    broken = tmp_path / "broken.png"
    Image.fromarray(np.zeros((5, 7), dtype=np.uint8)).save(broken)
    dataset.samples[0] = type(sample)(image=sample.image, mask=str(broken))
    with pytest.raises(DataError, match=r"broken.png: mask size 7x5 differs"):
        dataset[0]


def test_augmentation_moves_mask_with_image(tiny_lesions: Path, tmp_path: Path) -> None:
    raw = tiny_segmentation_config(
        tiny_lesions,
        tmp_path,
        augment={"hflip": 1.0, "crop_scale": [0.6, 1.0], "brightness": 0.3, "hue": 0.05},
        data={"normalize": "none"},
    )
    datamodule = data_module(config_from_dict(raw))
    datamodule.setup()
    dataset = datamodule.train_dataset
    assert dataset is not None
    image, mask = dataset[(0, 0)]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32) and mask.dtype == torch.long
    assert set(mask.unique().tolist()) <= {0, 1}
    # the lesion is darker than the skin in the augmented image too: they moved together
    gray = image.mean(dim=0)
    if 0 < mask.sum() < mask.numel():
        assert gray[mask == 1].mean() < gray[mask == 0].mean()


def test_predict_writes_masks_overlays_and_probabilities(
    tiny_lesions: Path, tmp_path: Path, cli
) -> None:
    config = config_from_dict(tiny_segmentation_config(tiny_lesions, tmp_path))
    result = api.fit(config)
    out = tmp_path / "pred"
    images = tiny_lesions / "img" / "test"
    done = cli("predict", result.run_dir, "--input", images, "--output", out, "--probabilities")
    assert done.code == 0, done.err
    assert done.out.strip().splitlines()[-1] == f"predictions: {out / 'predictions.csv'}"
    names = sorted(p.stem for p in images.iterdir())
    assert sorted(p.stem for p in (out / "masks").iterdir()) == names
    assert sorted(p.stem for p in (out / "overlays").iterdir()) == names
    mask = np.asarray(Image.open(out / "masks" / f"{names[0]}.png"))
    with Image.open(images.iterdir().__next__()) as source:
        assert mask.shape == (source.height, source.width)
    assert set(np.unique(mask)) <= {0, 1}
    table = pd.read_csv(out / "predictions.csv")
    fractions = ["area_fraction/background", "area_fraction/lesion"]
    assert list(table.columns) == ["path", "mask", *fractions]
    assert table[fractions].sum(axis=1).round(4).eq(1).all()
    assert len(list((out / "probabilities").iterdir())) == len(names)
    bad = cli("predict", result.run_dir, "--input", images, "--output", tmp_path / "x.csv")
    assert bad.code == 2 and bad.err.startswith("error:") and "folder" in bad.err


@pytest.mark.parametrize(
    ("monitor", "mode"), [("val/dice_mean", "max"), ("val/loss", "min"), (None, "min")]
)
def test_plateau_schedule_follows_the_monitored_metric(
    monitor: str | None, mode: str, tiny_lesions: Path, tmp_path: Path
) -> None:
    raw = tiny_segmentation_config(
        tiny_lesions,
        tmp_path,
        scheduler={"name": "ReduceLROnPlateau", "monitor": monitor, "params": {"factor": 0.5}},
    )
    task = SegmentationTask(config=config_from_dict(raw), classes=["background", "lesion"])
    configured = task.configure_optimizers()
    scheduler = configured["lr_scheduler"]
    assert scheduler["monitor"] == (monitor or "val/loss")
    assert scheduler["scheduler"].mode == mode and scheduler["scheduler"].factor == 0.5


@pytest.mark.parametrize("name", ["PolyLR", "CosineAnnealingLR"])
def test_decaying_schedules_run(name: str, tiny_lesions: Path, tmp_path: Path) -> None:
    raw = tiny_segmentation_config(
        tiny_lesions, tmp_path, scheduler={"name": name}, trainer={"max_epochs": 2}
    )
    result = api.fit(config_from_dict(raw))
    history = pd.read_csv(result.run_dir / "metrics.csv")
    rates = history["train/lr"].dropna().tolist()
    assert len(rates) == 2 and rates[1] < rates[0]
