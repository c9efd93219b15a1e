"""``mediscope check``: exit codes, check.json, check.html, --write-exclude."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import tiny_config
from mediscope.data.doctor import KINDS, SEVERITIES
from mediscope.tasks import data_module
from mediscope.tasks.validate import config_from_dict

Cli = Callable[..., Any]


@pytest.fixture
def broken_crops(tiny_crops: Path, tmp_path: Path) -> Path:
    """Gram crops with a truncated image, a zero-byte file and a copy in test."""
    root = tmp_path / "crops"
    shutil.copytree(tiny_crops, root)
    cocci = sorted((root / "train" / "G-cocci").iterdir())
    data = cocci[0].read_bytes()
    (root / "train" / "G-cocci" / "cut.png").write_bytes(data[: len(data) // 2])
    (root / "train" / "G+cocci" / "empty.png").write_bytes(b"")
    shutil.copy(cocci[1], root / "test" / "G-cocci" / "copy.png")
    return root


def _json(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "check.json").read_text(encoding="utf-8"))


def test_clean_dataset_exits_0_and_writes_both_files(
    cli: Cli, tiny_smears: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = cli("check", tiny_smears, "--output", out, "--samples", "2")
    assert result.code == 0, result.err
    assert "0 errors, 0 warnings" in result.out
    assert "check.html" in result.out and "check.json" in result.out
    report = _json(out)
    assert report["summary"]["errors"] == 0 and report["summary"]["warnings"] == 0
    assert report["dataset"]["format"] == "yolo" and report["dataset"]["task"] == "detection"
    assert (out / "check.html").is_file()


def test_errors_exit_1_and_the_json_lists_every_finding(
    cli: Cli, broken_crops: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = cli("check", broken_crops, "--output", out)
    assert result.code == 1, result.err
    assert "truncated_image (1)" in result.out and "cut.png" in result.out
    report = _json(out)
    assert report["mediscope_check"] == 1
    assert set(report) == {"mediscope_check", "dataset", "summary", "statistics", "findings"}
    assert report["dataset"]["classes"] == ["G+bacilli", "G+cocci", "G-bacilli", "G-cocci"]
    assert report["dataset"]["splits"] == {"trainval": 66, "test": 25}
    for finding in report["findings"]:
        assert {"kind", "severity", "file", "line", "message"} <= set(finding)
        assert finding["kind"] in KINDS and finding["severity"] in SEVERITIES
    errors = {
        (f["kind"], Path(f["file"]).name) for f in report["findings"] if f["severity"] == "error"
    }
    assert errors == {
        ("truncated_image", "cut.png"),
        ("empty_file", "empty.png"),
        ("exact_duplicate", "copy.png"),
    }
    duplicate = next(f for f in report["findings"] if f["kind"] == "exact_duplicate")
    assert duplicate["split"] == "test" and duplicate["other_split"] == "trainval"
    assert (
        Path(duplicate["other_file"]).name
        == sorted(p.name for p in (broken_crops / "train" / "G-cocci").iterdir())[1]
    )
    assert report["summary"]["errors"] == 3
    assert report["summary"]["kinds"]["exact_duplicate"] == {"error": 1}
    images = report["statistics"]["images"]
    assert images["readable"] == images["count"] - 2
    assert images["modes"] == {"RGB": images["readable"]}
    assert images["width"] == {"min": 32, "median": 32, "mean": 32, "max": 32}


def test_the_html_report_is_self_contained(cli: Cli, broken_crops: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cli("check", broken_crops, "--output", out, "--samples", "3")
    text = (out / "check.html").read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text and "<link" not in text
    sources = re.findall(r'src="([^"]*)"', text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    # the balance plot + 4 classes x 3 gallery images + the duplicate pair; every image is
    # 32 x 32: no size plot (one lone marker), the table says it
    assert len(sources) >= 1 + 4 * 3 + 2
    assert 'alt="image sizes"' not in text
    assert "all 89 readable images are 32x32" in text
    assert "exact_duplicate" in text and "copy.png" in text
    assert "<h2>Gallery: 3 samples per class</h2>" in text
    # across splits the duplicate is leakage
    assert "the same pixels as an image of another split (leakage)" in text


def _picture(text: str, name: str) -> Any:
    """The first picture of ``check.html`` whose alt text ends with ``name``."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    found = re.search(rf'<img src="data:image/png;base64,([^"]+)" alt="[^"]*{name}"', text)
    assert found, name
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(found.group(1)))))


def test_the_html_report_summary_first_dense_images_and_duplicates_within_a_split(
    cli: Cli, tiny_smears: Path, tmp_path: Path
) -> None:
    root = tmp_path / "smears"
    shutil.copytree(tiny_smears, root)
    train, labels = root / "images" / "train", root / "labels" / "train"
    first = sorted(train.iterdir())[0]
    shutil.copy(first, train / "zz_copy.png")  # a duplicate within the training split
    shutil.copy(labels / f"{first.stem}.txt", labels / "zz_copy.txt")
    # a crowded image: 60 boxes on a 6 x 10 grid
    crowd = [
        f"{k % 4} {0.05 + 0.1 * (k % 10):.2f} {0.1 + 0.15 * (k // 10):.2f} 0.06 0.08"
        for k in range(60)
    ]
    (labels / f"{sorted(train.iterdir())[1].stem}.txt").write_text("\n".join(crowd) + "\n")
    out = tmp_path / "out"
    result = cli("check", root, "--output", out, "--samples", "16")
    assert result.code == 0, result.err
    text = (out / "check.html").read_text(encoding="utf-8")
    # the summary of the findings comes first, linked to the full list at the end
    summary, dataset = text.index('<h2 id="summary">'), text.index("<h2>Dataset</h2>")
    assert summary < dataset < text.index("<h2>Images</h2>") < text.index('<h2 id="findings">')
    assert '<a href="#warning-exact_duplicate">exact_duplicate</a>' in text
    assert '<tr id="warning-exact_duplicate">' in text
    # a duplicate within a split is no leakage, and says so
    row = text[summary:dataset].split("exact_duplicate</a>")[1].split("</tr>")[0]
    assert "of the same split" in row and "leakage" not in row
    # the crowded image: boxes only (no name tags) under a band that counts them
    crowded = _picture(text, sorted(train.iterdir())[1].name)
    labelled = [p for p in sorted(labels.iterdir())[2:] if p.read_text().strip()]
    sparse = _picture(text, f"{labelled[0].stem}.png")
    assert crowded.shape[0] > crowded.shape[1] == 256  # the band above the 256 px picture
    assert sparse.shape[:2] == (256, 256)
    band = crowded[: crowded.shape[0] - 256]
    assert (band == 255).all(axis=-1).mean() > 0.5  # white, with the counts written on it


def test_missing_path_and_bad_config_exit_2(
    cli: Cli, tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    result = cli("check", tmp_path / "nothing", "--output", tmp_path / "out")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nothing: not found" in lines[0]
    bad = write_config({"task": "classification", "data": {"path": "x", "nonsense": 1}})
    result = cli("check", bad, "--output", tmp_path / "out")
    assert result.code == 2 and "data.nonsense" in result.err
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("check", empty, "--output", tmp_path / "out")
    assert result.code == 2 and "no dataset format recognised" in result.err


def test_a_data_only_config_with_test_path(
    cli: Cli, tiny_crops: Path, tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    cfg = write_config(
        {
            "task": "classification",
            "data": {
                "format": "imagefolder",
                "path": str(tiny_crops / "train"),
                "test_path": str(tiny_crops / "test"),
            },
        }
    )
    result = cli("check", cfg, "--output", tmp_path / "out", "--no-html")
    assert result.code == 0, result.err
    assert _json(tmp_path / "out")["dataset"]["splits"] == {"trainval": 64, "test": 24}
    assert not (tmp_path / "out" / "check.html").exists()


def test_write_exclude_then_training_data_leaves_the_samples_out(
    cli: Cli, broken_crops: Path, tmp_path: Path
) -> None:
    exclude = tmp_path / "exclude.txt"
    raw = tiny_config(broken_crops, tmp_path / "runs")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(json.dumps(raw), encoding="utf-8")
    result = cli("check", cfg, "--output", tmp_path / "out", "--write-exclude", exclude)
    assert result.code == 1
    assert "3 samples" in result.out
    listed = [line.split("#")[0].strip() for line in exclude.read_text().splitlines()]
    assert sorted(Path(p).name for p in listed if p) == ["copy.png", "cut.png", "empty.png"]
    raw["data"]["exclude"] = str(exclude)
    datamodule = data_module(config_from_dict(raw))
    assert sum(datamodule.split_sizes().values()) == 4 * 16
    assert len(datamodule.test_set()) == 4 * 6
    result = cli("check", cfg, "--output", tmp_path / "out", "--set", f"data.exclude={exclude}")
    assert result.code == 0, result.out
    assert "3 samples left out by data.exclude" in result.out
    result = cli("fit", cfg, "--set", f"data.exclude={exclude}", "--set", "trainer.max_epochs=1")
    assert result.code == 0, result.err


def test_path_options_format_classes_and_set(cli: Cli, tiny_lesions: Path, tmp_path: Path) -> None:
    result = cli(
        "check",
        tiny_lesions,
        "--format",
        "masks",
        "--classes",
        "skin,lesion",
        "--set",
        "data.mask_suffix=.png",
        "--output",
        tmp_path / "out",
        "--samples",
        "1",
    )
    assert result.code == 0, result.err
    report = _json(tmp_path / "out")
    assert report["dataset"]["classes"] == ["skin", "lesion"]
    assert report["statistics"]["classes"]["pixels"]["total"]["lesion"] > 0
    result = cli("check", tiny_lesions, "--format", "yolo", "--output", tmp_path / "o2")
    assert result.code == 2 and "error:" in result.err
    result = cli("check", tiny_lesions, "--format", "maskz", "--output", tmp_path / "o2")
    assert result.code == 2 and "error: --format: unknown data format 'maskz'" in result.err
    assert "did you mean 'masks'" in result.err


def test_a_config_error_names_its_line(
    cli: Cli, tiny_lesions: Path, tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    cfg = write_config(
        "task: segmentation\ndata:\n  format: maskz\n  path: " + str(tiny_lesions) + "\n"
    )
    result = cli("check", cfg, "--output", tmp_path / "out")
    assert result.code == 2
    assert f"error: {cfg}:3: data.format: unknown data format 'maskz'" in result.err


def test_default_output_folder_and_never_inside_the_dataset(
    cli: Cli, tiny_crops: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("check", tiny_crops, "--no-html")
    assert result.code == 0, result.err
    assert (tmp_path / "checks" / "gram-crops" / "check.json").is_file()
    copy = tmp_path / "copy"
    shutil.copytree(tiny_crops, copy)
    monkeypatch.chdir(copy)
    result = cli("check", ".", "--no-html")
    assert result.code == 2 and "inside the dataset" in result.err and "--output" in result.err


def test_help_names_the_options(cli: Cli) -> None:
    result = cli("check", "--help")
    assert result.code == 0
    for option in ("--output", "--format", "--samples", "--write-exclude", "--split", "--set"):
        assert option in result.out
