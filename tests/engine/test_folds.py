"""k-fold cross-validation: sub-runs, disjoint validation folds, summary with mean ± sd."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from helpers import tiny_config


def test_three_fold_run_writes_summary(cli, write_config, tiny_crops: Path, tmp_path: Path) -> None:
    path = write_config(tiny_config(tiny_crops, tmp_path / "runs", trainer={"max_epochs": 1}))
    result = cli("fit", path, "--folds", "3")
    assert result.code == 0, result.err
    run = Path(result.out.strip().splitlines()[-1].removeprefix("run: "))
    vals = []
    for fold in range(3):
        split = json.loads((run / f"fold-{fold}" / "split.json").read_text())
        vals.append(set(split["val"]))
        assert (run / f"fold-{fold}" / "val_metrics.json").is_file()
    assert not (vals[0] & vals[1]) and not (vals[1] & vals[2]) and not (vals[0] & vals[2])
    assert sum(len(v) for v in vals) == 64  # every sample validated exactly once
    summary = pd.read_csv(run / "cv_summary.csv")
    assert summary["fold"].tolist() == ["0", "1", "2", "mean", "sd"]
    f1 = [
        json.loads((run / f"fold-{i}" / "val_metrics.json").read_text())["f1_macro"]
        for i in range(3)
    ]
    assert summary.loc[3, "f1_macro"] == pytest.approx(sum(f1) / 3)
    md = (run / "cv_summary.md").read_text()
    assert "mean ± sd" in md and "3 folds" in md
    # resuming a finished cross-validation reruns nothing
    stamp = (run / "fold-0" / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    again = cli("fit", path, "--folds", "3", "--resume", "last")
    assert again.code == 0, again.err
    assert (run / "fold-0" / "checkpoints" / "last.ckpt").stat().st_mtime_ns == stamp


def test_folds_argument_errors(cli, write_config, tiny_crops: Path, tmp_path: Path) -> None:
    path = write_config(tiny_config(tiny_crops, tmp_path / "runs"))
    result = cli("fit", path, "--folds", "1")
    assert result.code == 2 and "at least 2 folds" in result.err
    result = cli("fit", path, "--folds", "40")
    assert result.code == 2 and "fewer samples than the 40 folds" in result.err
