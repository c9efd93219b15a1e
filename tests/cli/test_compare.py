"""``mediscope compare``: progress lines, the leaderboard, exit codes, failures, folds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from helpers import tiny_config
from mediscope.study import run as study_run

FAST = {"report": {"gradcam": 0, "html": False, "bootstrap": 50}}


@pytest.fixture
def config_path(write_config, tiny_crops: Path, tmp_path: Path) -> Path:
    return write_config(tiny_config(tiny_crops, tmp_path / "runs", **FAST))


@pytest.mark.timeout(300)
def test_compare_prints_progress_leaderboard_and_study_line(
    cli, config_path: Path, tmp_path: Path
) -> None:
    args = ("compare", config_path, "--grid", "model.params.width=4,8")
    result = cli(*args, "--set", "trainer.max_epochs=1")
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    folder = tmp_path / "runs" / "tiny-study"
    assert lines[-1] == f"study: {folder}"
    assert lines[0].startswith("study: 2 cells, ranked by f1_macro on the test split")
    assert "cell 1/2  model.params.width=4  training" in lines
    done = [line for line in lines if line.startswith("cell 2/2  model.params.width=8  f1_macro ")]
    assert len(done) == 1 and done[0].endswith(" s)")
    assert f"leaderboard: {folder / 'leaderboard.md'}" in lines
    assert any("95 % CI" in line and "rank" in line for line in lines)
    board = pd.read_csv(folder / "leaderboard.csv")
    assert sorted(board["model.params.width"].tolist()) == [4, 8]
    # the second cell against the best on the same test images: its difference is the
    # difference of the metrics files' values, McNemar beside (four classes: no DeLong)
    assert board["vs_best"].iloc[0] == 0 and bool(board["not_worse"].iloc[0])
    assert board["vs_best"].iloc[1] == pytest.approx(
        board["f1_macro"].iloc[1] - board["f1_macro"].iloc[0], abs=1e-9
    )
    assert board["vs_best_ci_low"].iloc[1] <= board["vs_best"].iloc[1]
    assert board["vs_best_ci_high"].iloc[1] >= board["vs_best"].iloc[1]
    assert 0 < board["vs_best_p_holm"].iloc[1] <= 1 and 0 < board["mcnemar_p"].iloc[1] <= 1
    assert "delong_p" not in board
    assert "≈ best" in result.out and "Holm-corrected for the 1 comparisons" in result.out
    assert "Δ vs best" in (folder / "leaderboard.md").read_text()
    state = json.loads((folder / "study.json").read_text())
    assert state["overrides"] == ["trainer.max_epochs=1"]

    again = cli(*args, "--set", "trainer.max_epochs=1")
    assert again.code == 0, again.err
    assert "cell 1/2  model.params.width=4  finished earlier: f1_macro " in again.out
    assert "training" not in again.out

    # rank the finished study by another metric: nothing trains
    ranked = cli(*args, "--set", "trainer.max_epochs=1", "--metric", "balanced_accuracy")
    assert ranked.code == 0, ranked.err
    assert "ranked by balanced_accuracy" in ranked.out and "training" not in ranked.out
    board = pd.read_csv(folder / "leaderboard.csv")
    assert board["balanced_accuracy"].is_monotonic_decreasing

    # another grid in the same folder
    other = cli("compare", config_path, "--grid", "model.params.width=4,16")
    assert other.code == 2
    assert other.err.startswith(
        f"error: {folder / 'study.json'}: the folder holds a different study"
    )
    assert "--output DIR" in other.err


def test_bad_grid_exits_2_and_writes_nothing(cli, config_path: Path, tmp_path: Path) -> None:
    result = cli("compare", config_path, "--grid", "modle.name=a,b")
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "error: --grid modle.name=a: modle: unknown key; did you mean 'model'? valid: task, "
        "seed, data, model, loss, optimizer, scheduler, augment, trainer, checkpoint, logging, "
        "inference, report, run"
    ]
    result = cli("compare", config_path, "--grid", "loss.name=CrossEntropyLoss,DiceLos")
    assert result.code == 2
    assert result.err.startswith("error: --grid loss.name=DiceLos: unknown loss 'DiceLos'; ")
    result = cli("compare", config_path, "--grid", "model.name=simple_cnn", "--seeds", "0,x")
    assert result.code == 2 and "--seeds" in result.err
    result = cli("compare", config_path)
    assert result.code == 2 and "give --grid KEY=V1,V2" in result.err
    assert result.out == ""
    assert not (tmp_path / "runs").exists()


@pytest.mark.timeout(300)
def test_a_failing_cell_does_not_stop_the_study(
    cli, config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = study_run.fit

    def flaky(config: Any, **kwargs: Any) -> Any:
        if config.model.params["width"] == 8:
            raise RuntimeError("out of memory")
        return real(config, **kwargs)

    monkeypatch.setattr(study_run, "fit", flaky)
    args = (
        "compare",
        config_path,
        "--grid",
        "model.params.width=8,4",
        "--set",
        "trainer.max_epochs=1",
    )
    result = cli(*args)
    folder = tmp_path / "runs" / "tiny-study"
    assert result.code == 1
    assert "cell 1/2  model.params.width=8  failed: RuntimeError: out of memory" in result.out
    assert result.err.strip() == (
        "error: 1 of 2 cells failed (01-8; see error.txt in their folders); rerun the "
        "command to retry them"
    )
    assert result.out.strip().splitlines()[-1] == f"study: {folder}"
    assert "RuntimeError: out of memory" in (folder / "01-8" / "error.txt").read_text()
    state = json.loads((folder / "study.json").read_text())
    assert [(c["status"], c["error"]) for c in state["cells"]] == [
        ("failed", "RuntimeError: out of memory"),
        ("done", None),
    ]
    board = pd.read_csv(folder / "leaderboard.csv")
    assert board["status"].tolist() == ["done", "failed"]

    monkeypatch.setattr(study_run, "fit", real)
    retry = cli(*args)
    assert retry.code == 0, retry.err
    assert not (folder / "01-8" / "error.txt").exists()
    assert pd.read_csv(folder / "leaderboard.csv")["status"].tolist() == ["done", "done"]


@pytest.mark.timeout(300)
def test_folds_repeat_every_cell(cli, config_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "cv-study"
    result = cli(
        "compare",
        config_path,
        "--grid",
        "model.params.width=4",
        "--folds",
        "2",
        "--set",
        "trainer.max_epochs=1",
        "--output",
        out,
    )
    assert result.code == 0, result.err
    assert "cell 1/1  model.params.width=4  fold 1 (2/2)" in result.out
    vals = [
        set(json.loads((out / "01-4" / f"fold-{k}" / "split.json").read_text())["val"])
        for k in (0, 1)
    ]
    assert vals[0] and vals[1] and not vals[0] & vals[1]
    runs = pd.read_csv(out / "leaderboard_runs.csv")
    assert runs["fold"].tolist() == [0, 1]
    board = pd.read_csv(out / "leaderboard.csv")
    assert board.loc[0, "f1_macro"] == pytest.approx(runs["f1_macro"].mean())
    assert "mean ± sd" in (out / "leaderboard.md").read_text()
    assert "over 2 folds" in (out / "leaderboard.md").read_text()


def test_help(cli) -> None:
    result = cli("compare", "--help")
    assert result.code == 0
    for option in ("--grid", "--set", "--seeds", "--folds", "--metric", "--output"):
        assert option in result.out


def test_ray_backend_without_ray_is_one_line(
    cli, config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as when not installed
    args = ("compare", config_path, "--grid", "model.params.width=4,8", "--backend", "ray")
    result = cli(*args)
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "error: --backend ray: the ray backend needs Ray, which is not installed; "
        "pip install 'mediscope[ray]'"
    ]
    assert not (tmp_path / "runs").exists()


def test_ray_options_need_the_ray_backend(cli, config_path: Path, tmp_path: Path) -> None:
    args = ("compare", config_path, "--grid", "model.params.width=4,8")
    result = cli(*args, "--address", "auto")
    assert result.code == 2
    assert result.err.startswith("error: --address: --address needs --backend ray")
    result = cli(*args, "--backend", "dask")
    assert result.code == 2 and "choose local or ray" in result.err
    result = cli(*args, "--backend", "ray", "--cpus-per-cell", "0")
    assert result.code == 2
    assert result.err.startswith("error: --cpus-per-cell: 0: give a positive number of CPUs")
    assert not (tmp_path / "runs").exists()
