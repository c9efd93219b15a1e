"""report.html: written by fit and test, by `mediscope report`, and for k-fold runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from helpers import tiny_config
from mediscope import api
from mediscope.api.folds import fit_folds
from mediscope.errors import DataError
from mediscope.reports.html import build_report, overall_keys, per_class_table, write_report
from mediscope.tasks.validate import config_from_dict


def assert_self_contained(text: str) -> None:
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    images = re.findall(r'<img src="([^"]{0,30})', text)
    assert images and all(src.startswith("data:image/") for src in images)


@pytest.fixture(scope="module")
def fitted(tiny_crops: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    runs = tmp_path_factory.mktemp("report-runs")
    config = config_from_dict(
        tiny_config(
            tiny_crops,
            runs,
            # the test split is added by test_test_adds_its_section
            trainer={"max_epochs": 1, "test_after_fit": False},
            report={"bootstrap": 200},
        )
    )
    result = api.fit(config)
    return config, result


def test_fit_writes_the_report(fitted: Any) -> None:
    _, result = fitted
    assert result.report == result.run_dir / "report.html"
    text = result.report.read_text()
    assert_self_contained(text)
    assert "<h2>Validation</h2>" in text and "<h2>Training</h2>" in text
    assert "95% bootstrap confidence interval (200 resamples" in text
    for name in ("G-cocci", "G+cocci", "G-bacilli", "G+bacilli"):
        assert f"<td>{name}</td>" in text  # per-class table
    assert "Grad-CAM" in text and "Reliability diagram" in text
    assert "Environment" in text and "torch" in text and "config.yaml" in text
    assert (result.run_dir / "plots" / "val_intervals.png").is_file()


def test_test_adds_its_section(fitted: Any) -> None:
    config, result = fitted
    api.test(config, result.best_checkpoint)
    text = (result.run_dir / "report.html").read_text()
    assert text.index("<h2>Test</h2>") < text.index("<summary>Validation")
    assert "test: metrics" not in text  # titles live in the PNGs, not the page
    assert (result.run_dir / "plots" / "test_gradcam.png").is_file()


def test_report_command(fitted: Any, cli: Any, tmp_path: Path) -> None:
    _, result = fitted
    out = tmp_path / "elsewhere.html"
    run = cli("report", str(result.run_dir), "--output", str(out))
    assert run.code == 0 and run.out.strip().endswith(f"report: {out}")
    assert_self_contained(out.read_text())


def test_report_of_a_folder_that_is_no_run(cli: Any, tmp_path: Path) -> None:
    run = cli("report", str(tmp_path))
    assert run.code == 2 and "no config.yaml" in run.err and len(run.err.strip().splitlines()) == 1
    run = cli("report", str(tmp_path / "missing"))
    assert run.code == 2 and "no such run folder" in run.err
    assert not list(tmp_path.iterdir())
    with pytest.raises(DataError):
        build_report(tmp_path)


def test_report_without_evaluation_says_so(fitted: Any, tmp_path: Path) -> None:
    _, result = fitted
    run = tmp_path / "bare"
    run.mkdir()
    (run / "config.yaml").write_text((result.run_dir / "config.yaml").read_text())
    text = write_report(run).read_text()
    assert "No evaluation yet" in text


def test_metric_tables() -> None:
    metrics = {
        "map": 0.5,
        "map_50": 0.7,
        "map_75": 0.4,
        "mar_100": 0.6,
        "n_images": 10.0,
        "score_threshold_f1": 0.3,
        "ap/a": 0.2,
        "gt/a": 4.0,
        "ap/b": 0.3,
        "ci_low/map": 0.4,
        "ci_high/map": 0.6,
        "bootstrap_resamples": 100.0,
        "confidence": 0.95,
    }
    assert overall_keys(metrics, "detection") == ["map", "map_50", "map_75", "mar_100"]
    assert per_class_table(metrics) == (["ap", "gt"], ["a", "b"])


def test_cross_validation_report(tiny_crops: Path, tmp_path: Path) -> None:
    config = config_from_dict(
        tiny_config(
            tiny_crops,
            tmp_path / "runs",
            data={"test_path": None},
            trainer={"max_epochs": 1},
            report={"bootstrap": 50, "gradcam": 2},
        )
    )
    result = fit_folds(config, 2)
    text = (result.run_dir / "report.html").read_text()
    assert "Cross-validation: 2 folds" in text and "mean ± sd" in text
    assert 'href="fold-0/report.html"' in text and 'href="fold-1/report.html"' in text
    assert (result.run_dir / "fold-1" / "report.html").is_file()


def test_terminal_metrics_show_the_intervals() -> None:
    from rich.console import Console

    from mediscope.cli.output import metrics_grid

    console = Console(width=200, record=True)
    metrics = {
        "accuracy": 0.9,
        "ci_low/accuracy": 0.85,
        "ci_high/accuracy": 0.94,
        "f1_macro": 0.8,
        "confidence": 0.95,
        "bootstrap_resamples": 1000.0,
    }
    console.print(metrics_grid(metrics))
    text = console.export_text()
    assert "accuracy 0.9000 [0.850, 0.940]" in text and "f1_macro 0.8000  " in text
    assert "in brackets: 95% bootstrap interval, 1000 resamples of the images" in text
