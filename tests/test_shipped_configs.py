"""Every shipped config loads and trains one epoch on tiny data of its own format."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from mediscope import api
from mediscope.api import fit
from mediscope.tasks.validate import load_config

CONFIGS = sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml"))


def test_configs_are_shipped_in_the_package() -> None:
    from mediscope.demo import DEMO_CONFIG, packaged_config_text

    assert CONFIGS, "no configs found"
    assert "task: classification" in packaged_config_text(DEMO_CONFIG)


def tiny_csv(crops: Path, dst: Path, classes: list[str]) -> dict[str, str]:
    """S2's layout: train_images/ and train_labels.csv (id,target_feature)."""
    images = dst / "train_images"
    images.mkdir(parents=True)
    rows = ["id,target_feature"]
    sources = sorted((crops / "train").rglob("*.png"))
    for i, source in enumerate(sources[: 12 * len(classes)]):
        shutil.copy(source, images / f"img_{i}.png")
        rows.append(f"img_{i}.png,{i % len(classes)}")
    (dst / "train_labels.csv").write_text("\n".join(rows) + "\n")
    return {"data.path": str(dst / "train_labels.csv"), "data.root": str(images)}


def tiny_npz(dst: Path, classes: list[str]) -> dict[str, str]:
    """S3's layout: train.npz and test_tiny.npz with images / labels."""
    rng = np.random.default_rng(0)
    dst.mkdir(parents=True)
    for name, n in (("train.npz", 10 * len(classes)), ("test_tiny.npz", 2 * len(classes))):
        labels = np.arange(n) % len(classes)
        images = rng.integers(0, 255, size=(n, 28, 28, 3), dtype=np.uint8)
        np.savez(dst / name, images=images, labels=labels)
    return {"data.path": str(dst / "train.npz"), "data.test_path": str(dst / "test_tiny.npz")}


def tiny_multilabel_npz(dst: Path, classes: list[str]) -> dict[str, str]:
    """ChestMNIST's layout: train_/val_/test_images (N, H, W) and (N, L) 0/1 labels."""
    rng = np.random.default_rng(0)
    dst.mkdir(parents=True)
    arrays = {}
    for split, n in (("train", 24), ("val", 12), ("test", 8)):
        arrays[f"{split}_images"] = rng.integers(0, 255, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 2, size=(n, len(classes)), dtype=np.uint8)
        labels[0] = 1  # every label present in each split
        arrays[f"{split}_labels"] = labels
    np.savez(dst / "chest.npz", **arrays)  # type: ignore[arg-type]
    return {"data.path": str(dst / "chest.npz")}


def tiny_masks(dst: Path, raw: dict) -> dict[str, str]:
    """Masks data of the config's own kind: an MMSeg folder, or a manifest CSV."""
    from PIL import Image

    rng = np.random.default_rng(0)
    data = raw["data"]
    n_classes = len(data["classes"])
    suffix = data.get("img_suffix") or ".png"
    manifest = str(data["path"]).endswith(".csv")
    rows = ["image,mask,split"]
    for split, n in (("train", 8), ("val", 4), ("test", 4)):
        for i in range(n):
            image = rng.integers(0, 255, size=(40, 48, 3), dtype=np.uint8)
            mask = np.zeros((40, 48), dtype=np.uint8)
            mask[8:30, 10 + i : 30 + i] = 1 + i % (n_classes - 1)
            if data.get("ignore_index") is not None:
                mask[0, :] = data["ignore_index"]
            folder = "images" if manifest else f"img/{split}"
            labels = "masks" if manifest else f"labels/{split}"
            (dst / folder).mkdir(parents=True, exist_ok=True)
            (dst / labels).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(dst / folder / f"{split}{i}{suffix}")
            Image.fromarray(mask * (255 if manifest else 1)).save(dst / labels / f"{split}{i}.png")
            rows.append(f"{folder}/{split}{i}{suffix},{labels}/{split}{i}.png,{split}")
    if manifest:
        (dst / "manifest.csv").write_text("\n".join(rows) + "\n")
        return {"data.path": str(dst / "manifest.csv")}
    return {"data.path": str(dst)}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_shipped_config_trains_one_epoch(
    path: Path, tiny_crops: Path, tiny_smears: Path, tmp_path: Path
) -> None:
    raw = yaml.safe_load(path.read_text())
    data_format = raw["data"]["format"]
    classes = raw["data"].get("classes") or []
    if data_format == "csv":
        data = tiny_csv(tiny_crops, tmp_path / "data", classes)
    elif data_format == "npz" and raw["task"] == "multilabel":
        data = tiny_multilabel_npz(tmp_path / "data", classes)
    elif data_format == "npz":
        data = tiny_npz(tmp_path / "data", classes)
    elif data_format == "masks":
        data = tiny_masks(tmp_path / "data", raw)
    elif data_format == "yolo":
        data = {"data.path": str(tiny_smears)}
    else:
        data = {"data.path": str(tiny_crops / "train"), "data.test_path": str(tiny_crops / "test")}
    overrides = [f"{k}={v}" for k, v in data.items()] + [
        "trainer.max_epochs=1",
        "data.image_size=32",  # tiny data: the architecture is what is checked here
        "data.batch_size=8",
        "data.num_workers=0",
        "model.pretrained=false",  # no weight download in tests
        "logging.progress=none",
        f"run.dir={tmp_path / 'runs'}",
    ]
    config = load_config(path, overrides)
    result = fit(config)
    assert (result.run_dir / "val_metrics.json").is_file()
    assert result.epochs_run == 1
    if config.task == "segmentation":
        assert result.best_checkpoint is not None
        metrics, _ = api.test(config, result.best_checkpoint)
        assert metrics["n_samples"] == 4
        assert (result.run_dir / "test_per_sample.csv").is_file()
    if config.task == "multilabel":
        assert result.best_checkpoint is not None
        metrics, _ = api.test(config, result.best_checkpoint)
        assert metrics["n_samples"] == 8 and "auroc_macro" in metrics
        assert f"threshold/{config.data.classes[0]}" in metrics
    if config.task == "detection":
        assert result.best_checkpoint is not None
        metrics, _ = api.test(config, result.best_checkpoint)
        assert metrics["n_images"] == 4 and "map_50" in metrics
