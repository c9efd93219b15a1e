"""Class and file names are shown as written in report.html and check.html, never as markup.

Every page of every task is fed class names and file names holding markup, quotes and
ampersands; the markup must come out escaped, never raw.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from mediscope.data.doctor import check_dataset
from mediscope.reports.check_html import render_check_html
from mediscope.reports.html import build_report
from mediscope.tasks.validate import config_from_dict

SCRIPT = "<script>alert(1)</script>"
#: A class name: class lists (CSV labels, data.classes, YOLO names) may hold '/'.
CLASS = f"{SCRIPT} \"quotes\" 'single' &"
#: A file or folder name: anything but '/'.
FILE = "<img src=x onerror=alert(1)> \"quotes\" 'single' &"
MODELS = {"classification": "simple_cnn", "segmentation": "unet", "detection": "retinanet"}
#: Per task: the overall metrics, the per-class metrics and the count column.
METRICS = {
    "classification": (("accuracy", "f1_macro"), ("f1", "recall"), "support"),
    "segmentation": (("dice_mean", "iou_mean"), ("dice", "iou"), None),
    "detection": (("map", "map_50"), ("ap50", "ap"), "gt"),
}


def assert_escaped(text: str) -> None:
    assert SCRIPT not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert '"quotes"' not in text and "'single'" not in text
    assert "&#34;quotes&#34;" in text and "&#39;single&#39;" in text
    assert " &amp;" in text


# -- check.html ----------------------------------------------------------------------------


def _check(task: str, fmt: str, path: Path, **data: Any) -> str:
    config = config_from_dict(
        {
            "task": task,
            "data": {"format": fmt, "path": str(path), **data},
            "model": {"name": MODELS[task]},
        }
    )
    return render_check_html(check_dataset(config), samples=2)


def test_check_page_of_a_classification_manifest(tiny_crops: Path, tmp_path: Path) -> None:
    images = sorted((tiny_crops / "train" / "G-cocci").iterdir())[:4]
    copy = tmp_path / f"{FILE}.png"  # an exact duplicate: a finding and a pair shown
    shutil.copy(images[0], copy)
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["path", "label"])
        for n, image in enumerate(images):
            writer.writerow([image, CLASS if n % 2 else "plain"])
        writer.writerow([copy, CLASS])
    assert_escaped(_check("classification", "csv", manifest))


def test_check_page_of_segmentation_masks(tiny_lesions: Path, tmp_path: Path) -> None:
    root = tmp_path / "lesions"
    shutil.copytree(tiny_lesions, root)
    image = sorted((root / "img" / "train").iterdir())[0]
    shutil.copy(image, image.with_name(f"{FILE}{image.suffix}"))
    mask = root / "labels" / "train" / f"{image.stem}.png"
    shutil.copy(mask, mask.with_name(f"{FILE}.png"))
    assert_escaped(_check("segmentation", "masks", root, classes=["background", CLASS]))


def test_check_page_of_yolo_boxes(tiny_smears: Path, tmp_path: Path) -> None:
    root = tmp_path / "smears"
    shutil.copytree(tiny_smears, root, ignore=shutil.ignore_patterns("large"))
    spec = yaml.safe_load((root / "data.yaml").read_text())
    spec["names"] = [CLASS, *spec["names"][1:]]
    (root / "data.yaml").write_text(yaml.safe_dump(spec))
    image = sorted((root / "images" / "train").iterdir())[0]
    shutil.copy(image, image.with_name(f"{FILE}.png"))
    label = root / "labels" / "train" / f"{image.stem}.txt"
    shutil.copy(label, label.with_name(f"{FILE}.txt"))
    assert_escaped(_check("detection", "yolo", root))


# -- report.html ---------------------------------------------------------------------------


def _metrics(task: str) -> dict[str, float]:
    overall, per_class, count = METRICS[task]
    metrics: dict[str, float] = {"n_images": 8.0, "bootstrap_resamples": 20.0, "confidence": 0.95}
    keys = list(overall) + [f"{p}/{c}" for p in per_class for c in (CLASS, "plain")]
    for n, key in enumerate(keys):
        metrics[key] = 0.5 + 0.01 * n
        metrics[f"ci_low/{key}"], metrics[f"ci_high/{key}"] = 0.4, 0.6 + 0.01 * n
    if count is not None:
        metrics |= {f"{count}/{CLASS}": 3.0, f"{count}/plain": 5.0}
    return metrics


@pytest.mark.parametrize("task", list(MODELS))
def test_report_page(task: str, tmp_path: Path) -> None:
    run = tmp_path / f"runs {FILE}" / f"run {FILE}"
    run.mkdir(parents=True)
    config = {
        "task": task,
        "data": {"format": "csv", "path": str(tmp_path / FILE), "classes": [CLASS, "plain"]},
        "model": {"name": MODELS[task]},
        "trainer": {"max_epochs": 1},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "split.json").write_text(json.dumps({"train": [f"{FILE}.png"], "val": ["a.png"]}))
    environment = {"mediscope": "0.1", "python": "3", "packages": {CLASS: "1"}, "gpus": []}
    (run / "environment.json").write_text(json.dumps(environment))
    for split in ("val", "test"):
        (run / f"{split}_metrics.json").write_text(json.dumps(_metrics(task)))
    text = build_report(run)
    assert_escaped(text)
    assert "<h2>Test</h2>" in text and "<summary>Validation" in text
