"""The boundary, object and count metrics in the terminal summary and report.html."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from mediscope.cli.output import metrics_grid
from mediscope.reports.html import _settings, plot_intervals
from mediscope.tasks import TASKS


def _text(metrics: dict[str, float], task: str) -> str:
    console = Console(width=300, record=True)
    console.print(metrics_grid(metrics, TASKS.get(task).summary))
    return console.export_text()


def test_terminal_headlines() -> None:
    segmentation = {
        "dice_mean": 0.8,
        "iou_mean": 0.7,
        "pixel_accuracy": 0.95,
        "hd95_mean": 3.25,
        "ci_low/hd95_mean": 2.5,
        "ci_high/hd95_mean": 4.0,
        "nsd_mean": 0.9,
    }
    text = _text(segmentation, "segmentation")
    assert "hd95_mean 3.2500 [2.500, 4.000]" in text and "nsd_mean 0.9000" in text
    assert "object_f1" not in text  # not reported for this data: not shown as n/a
    text = _text({**segmentation, "object_f1": 0.75}, "segmentation")
    assert "object_f1 0.7500" in text
    detection = {"map": 0.5, "map_50": 0.7, "map_75": 0.4, "mar_100": 0.6, "count_mae": 1.25}
    assert "count_mae 1.2500" in _text(detection, "detection")


def test_distances_and_count_errors_stay_out_of_the_0_to_1_interval_plot(tmp_path: Path) -> None:
    unbounded = {
        "hd95_mean": 12.0,
        "ci_low/hd95_mean": 10.0,
        "ci_high/hd95_mean": 14.0,
        "count_mae": 2.0,
        "ci_low/count_mae": 1.0,
        "ci_high/count_mae": 3.0,
        "object_count_mae/cell": 2.0,
        "ci_low/object_count_mae/cell": 1.0,
        "ci_high/object_count_mae/cell": 3.0,
        "error_missed": 0.2,
        "ci_low/error_missed": 0.1,
        "ci_high/error_missed": 0.3,
    }
    assert plot_intervals(unbounded, "segmentation", tmp_path / "a.png", title="t") is None
    bounded = {**unbounded, "nsd_mean": 0.8, "ci_low/nsd_mean": 0.7, "ci_high/nsd_mean": 0.9}
    assert plot_intervals(bounded, "segmentation", tmp_path / "b.png", title="t") is not None


def test_settings_say_the_units() -> None:
    assert _settings({"nsd_tolerance": 2.0}, ["nsd_tolerance"]) == (
        "nsd_tolerance 2.000 (HD95, ASSD and the NSD tolerance are in pixels)"
    )
    text = _settings(
        {"nsd_tolerance": 1.0, "pixel_spacing_um": 0.25}, ["nsd_tolerance", "pixel_spacing_um"]
    )
    assert text is not None and text.endswith("are in µm)")
    text = _settings({"count_threshold": 0.3}, ["count_threshold"])
    assert text is not None and "counts, errors and galleries use count_threshold" in text
    assert _settings({}, []) is None


def test_leaderboards_rank_distances_and_count_errors_lowest_first() -> None:
    from mediscope.reports.leaderboard import known_metrics, lower_is_better

    for metric in ("hd95_mean", "hd95/cell", "assd_mean", "count_mae", "object_count_mae"):
        assert lower_is_better(metric), metric
    for metric in ("nsd_mean", "nsd/cell", "object_f1", "dice_mean", "map_50"):
        assert not lower_is_better(metric), metric
    assert {"hd95_mean", "nsd/cell", "object_f1"} <= known_metrics("segmentation", ["bg", "cell"])
    assert {"count_mae", "count_mre"} <= known_metrics("detection", ["cell"])


def test_report_keys_of_the_new_metrics_are_checked(tmp_path: Path) -> None:
    import pytest

    from helpers import tiny_segmentation_config
    from mediscope.errors import ConfigError
    from mediscope.tasks.validate import config_from_dict

    raw = tiny_segmentation_config(tmp_path / "data", tmp_path / "runs")
    config = config_from_dict(raw)
    assert (config.report.object_metrics, config.report.pixel_spacing) == ("auto", None)
    assert config.report.surface_tolerance == 2.0
    bad = {"object_metrics": "maybe", "pixel_spacing": -1, "surface_tolerance": 0}
    for key, value in bad.items():
        with pytest.raises(ConfigError, match=f"report.{key}"):
            config_from_dict({**raw, "report": {key: value}})
