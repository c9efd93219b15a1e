"""The embedded demo end to end; it is also the classification learning test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_learns_gram_crops(cli, tmp_path: Path) -> None:
    result = cli("demo", "--cache", tmp_path / "cache", "--runs", tmp_path / "runs")
    assert result.code == 0, result.err
    run = Path(result.out.strip().splitlines()[-1].removeprefix("run: "))
    assert run.parent.parent == tmp_path / "runs"
    test = json.loads((run / "test_metrics.json").read_text())
    val = json.loads((run / "val_metrics.json").read_text())
    assert test["n_samples"] == 400
    assert test["f1_macro"] >= 0.90, test
    assert val["f1_macro"] >= 0.90, val
    # the data is generated once and reused
    cached = tmp_path / "cache" / "gram-crops-v1"
    stamp = (cached / "classes.txt").stat().st_mtime_ns
    again = cli("demo", "--cache", tmp_path / "cache", "--runs", tmp_path / "runs", "--epochs", "1")
    assert again.code == 0, again.err
    assert (cached / "classes.txt").stat().st_mtime_ns == stamp
