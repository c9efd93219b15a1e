"""A dataset with patients: the metrics file, report and terminal say the bootstrap
resampled patients, and how many."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import tiny_config
from mediscope import api
from mediscope.tasks.validate import config_from_dict


@pytest.mark.slow
def test_fit_on_a_manifest_with_groups_resamples_patients(tiny_crops: Path, tmp_path: Path) -> None:
    images = sorted((tiny_crops / "train").rglob("*.png"))
    rows = ["path,label,group"]
    for i, image in enumerate(images):
        rows.append(f"{image.relative_to(tiny_crops / 'train')},{image.parent.name},p{i // 4}")
    manifest = tiny_crops.parent / "with-groups.csv"
    manifest.write_text("\n".join(rows) + "\n")
    config = config_from_dict(
        tiny_config(
            tiny_crops,
            tmp_path,
            data={"format": "csv", "path": str(manifest), "root": str(tiny_crops / "train")},
            trainer={"max_epochs": 1},
            report={"bootstrap": 50},
        )
    )
    config.data.test_path = None
    result = api.fit(config)
    metrics = json.loads((result.run_dir / "val_metrics.json").read_text())
    n_val = int(metrics["n_samples"])
    assert metrics["bootstrap_unit"] == "patient"
    # patients of 4 images never straddle splits: fewer patients than images in val
    assert 0 < metrics["bootstrap_groups"] < n_val
    groups = int(metrics["bootstrap_groups"])
    text = (result.run_dir / "report.html").read_text()
    assert f"50 resamples of the {groups} patients (cluster bootstrap)" in text

    from rich.console import Console

    from mediscope.cli.output import metrics_grid

    console = Console(width=200, record=True)
    console.print(metrics_grid(metrics))
    assert f"50 resamples of the {groups} patients" in console.export_text()
