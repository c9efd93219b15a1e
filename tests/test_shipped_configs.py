"""Every shipped config loads and trains one epoch on tiny data of its own format."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from mediscope.config import load_config
from mediscope.engine.api import fit

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


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_shipped_config_trains_one_epoch(path: Path, tiny_crops: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    data_format = raw["data"]["format"]
    classes = raw["data"].get("classes") or []
    if data_format == "csv":
        data = tiny_csv(tiny_crops, tmp_path / "data", classes)
    elif data_format == "npz":
        data = tiny_npz(tmp_path / "data", classes)
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
    result = fit(load_config(path, overrides))
    assert (result.run_dir / "val_metrics.json").is_file()
    assert result.epochs_run == 1
