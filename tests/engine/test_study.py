"""Comparative studies: one split for every cell, resumable runs, leaderboard, repeats."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import tiny_config, tiny_segmentation_config
from mediscope.errors import ConfigError, RunDirError
from mediscope.reports.leaderboard import (
    CellRuns,
    RunMetrics,
    build_leaderboard,
    display_table,
    fmt_interval,
    fmt_mean_sd,
    fmt_params,
    markdown,
    write_leaderboard,
)
from mediscope.study import (
    Repeat,
    parse_grid,
    parse_seeds,
    plan_study,
    run_study,
    split_values,
)
from mediscope.study import run as study_run
from mediscope.study.state import initial_state

# Fast evaluations: no Grad-CAM, no HTML report, few bootstrap resamples.
FAST = {"report": {"gradcam": 0, "html": False, "bootstrap": 50}}
GRID = {"model.params.width": ["4", "8"], "optimizer.name": ["AdamW", "SGD"]}


def write_yaml(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def base_config(tiny_crops: Path, tmp_path: Path) -> Path:
    raw = tiny_config(tiny_crops, tmp_path / "runs", trainer={"max_epochs": 1}, **FAST)
    return write_yaml(tmp_path / "base.yaml", raw)


@pytest.fixture
def count_fits(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Counts the study's fit calls (the run folders they train in)."""
    calls: list[Path] = []
    real = study_run.fit

    def counting(config: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("run_dir") or Path(kwargs["resume"]).parent.parent)
        return real(config, **kwargs)

    monkeypatch.setattr(study_run, "fit", counting)
    return calls


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.timeout(300)
def test_grid_runs_every_cell_on_one_split_and_resumes(
    base_config: Path, tmp_path: Path, count_fits: list[Path]
) -> None:
    plan = plan_study(base_config, grid=GRID)
    assert not plan.folder.exists()  # planning writes nothing
    assert plan.folder == tmp_path / "runs" / "tiny-study"
    assert [c.name for c in plan.cells] == ["01-4-AdamW", "02-4-SGD", "03-8-AdamW", "04-8-SGD"]
    events: list[Any] = []
    result = run_study(plan, on_event=events.append)
    folder = result.folder
    assert len(count_fits) == 4 and result.ran == 4 and result.skipped == 0
    assert [e.kind for e in events] == ["start", "done"] * 4

    # identical split for every cell: the one in splits/, copied into each run
    shared = read_json(folder / "splits" / "holdout.json")
    for cell in plan.cells:
        split = read_json(folder / cell.name / "split.json")
        assert split["train"] == shared["train"] and split["val"] == shared["val"]
        config = yaml.safe_load((folder / cell.name / "config.yaml").read_text())
        assert config["seed"] == 3 and config["trainer"]["max_epochs"] == 1
        assert config["model"]["params"]["width"] == int(cell.values["model.params.width"])
        assert config["optimizer"]["name"] == cell.values["optimizer.name"]

    # leaderboard: 4 rows, ranked by the test f1_macro, with its interval
    board = pd.read_csv(folder / "leaderboard.csv")
    assert len(board) == 4
    assert board["rank"].tolist() == [1, 2, 3, 4]
    assert board["f1_macro"].is_monotonic_decreasing
    for _, row in board.iterrows():
        metrics = read_json(folder / row["cell"] / "test_metrics.json")
        assert row["f1_macro"] == pytest.approx(metrics["f1_macro"])
        assert row["f1_macro_ci_low"] == pytest.approx(metrics["ci_low/f1_macro"])
        assert row["params"] > 0 and row["train_seconds"] > 0 and row["best_epoch"] == 0
        assert row["train_cpu_seconds"] > 0  # CPU time beside the wall time
        record = read_json(folder / row["cell"] / "study_run.json")
        assert row["train_cpu_seconds"] == pytest.approx(record["cpu_seconds"])
        assert row["split"] == "test" and row["status"] == "done"
    assert board.loc[board["model.params.width"] == 4, "params"].nunique() == 1
    md = (folder / "leaderboard.md").read_text()
    assert "| rank | model.params.width | optimizer.name | f1_macro | 95 % CI |" in md
    assert md.count("\n| ") == 5  # header and four cells
    assert (folder / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"
    assert len(pd.read_csv(folder / "leaderboard_runs.csv")) == 4
    state = read_json(folder / "study.json")
    assert state["grid"] == GRID and state["split"] == "test" and state["metric"] == "f1_macro"
    assert [c["status"] for c in state["cells"]] == ["done"] * 4

    # the same study again: nothing trains
    count_fits.clear()
    again = run_study(plan_study(base_config, grid=GRID))
    assert count_fits == [] and again.skipped == 4 and again.ran == 0
    assert pd.read_csv(folder / "leaderboard.csv")["f1_macro"].tolist() == pytest.approx(
        board["f1_macro"].tolist()
    )

    # a removed cell trains again; a cell whose test evaluation is missing is only evaluated
    shutil.rmtree(folder / "02-4-SGD")
    (folder / "03-8-AdamW" / "test_metrics.json").unlink()
    before = (folder / "03-8-AdamW" / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    third = run_study(plan_study(base_config, grid=GRID))
    assert count_fits == [folder / "02-4-SGD"]
    assert third.ran == 2 and third.skipped == 2
    assert (folder / "03-8-AdamW" / "test_metrics.json").is_file()
    assert (folder / "03-8-AdamW" / "checkpoints" / "last.ckpt").stat().st_mtime_ns == before
    assert read_json(folder / "02-4-SGD" / "split.json")["train"] == shared["train"]
    assert len(pd.read_csv(folder / "leaderboard.csv")) == 4


@pytest.mark.timeout(300)
def test_interrupted_run_continues_from_last_checkpoint(
    tiny_crops: Path, tmp_path: Path, count_fits: list[Path]
) -> None:
    raw = tiny_config(
        tiny_crops,
        tmp_path / "runs",
        trainer={"max_epochs": 2},
        checkpoint={"every_n_epochs": 1},
        **FAST,
    )
    del raw["data"]["test_path"]  # no test data: the leaderboard ranks on validation
    path = write_yaml(tmp_path / "base.yaml", raw)
    grid = {"model.params.width": ["4"]}
    plan = plan_study(path, grid=grid)
    assert not plan.has_test
    folder = run_study(plan).folder
    run = folder / "01-4"
    assert not (run / "test_metrics.json").exists()
    # make it look stopped after epoch 0: last.ckpt of epoch 0, no metrics file
    shutil.copyfile(run / "checkpoints" / "epoch=000.ckpt", run / "checkpoints" / "last.ckpt")
    (run / "val_metrics.json").unlink()
    count_fits.clear()
    result = run_study(plan_study(path, grid=grid))
    assert count_fits == [run]
    board = pd.read_csv(folder / "leaderboard.csv")
    assert board.loc[0, "split"] == "val"
    assert board.loc[0, "f1_macro"] == pytest.approx(
        read_json(run / "val_metrics.json")["f1_macro"]
    )
    assert "on the val split" in markdown(result.leaderboard)
    record = read_json(run / "study_run.json")
    assert record.get("resumed") is True
    rows = pd.read_csv(run / "metrics.csv").dropna(subset=["val/loss"])
    assert rows["epoch"].tolist() == [0, 1]


def test_bad_grid_writes_nothing(base_config: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        plan_study(base_config, grid={"model.name": ["simple_cnn", "resnet19"]})
    assert str(err.value).startswith("--grid model.name=resnet19: unknown model 'resnet19'")
    assert "did you mean 'resnet18'" in str(err.value)
    with pytest.raises(ConfigError, match=r"^--grid optimizer\.lr=-1: input should be greater"):
        plan_study(base_config, grid={"optimizer.lr": ["0.1", "-1"]})
    with pytest.raises(ConfigError, match=r"^--grid modle\.name=a: modle: unknown key"):
        plan_study(base_config, grid={"modle.name": ["a"]})
    with pytest.raises(
        ConfigError, match=r"--grid model\.params\.depth2=1: .*no keyword 'depth2'.*'depth'"
    ):
        plan_study(base_config, grid={"model.params.depth2": ["1"]})
    with pytest.raises(ConfigError, match=r"^--metric: 'f1_macr' is not a metric"):
        plan_study(base_config, grid=GRID, metric="f1_macr")
    assert not (tmp_path / "runs").exists()


def test_base_model_params_another_model_does_not_take_are_left_out(
    base_config: Path, tmp_path: Path
) -> None:
    from rich.console import Console

    from mediscope.cli.compare import print_event
    from mediscope.study.run import StudyEvent

    # the base's model.params {width: 8, depth: 2} are simple_cnn's
    grid = {"model.name": ["simple_cnn", "vgg19_cnn", "mobilenetv3_small"]}
    plan = plan_study(base_config, grid=grid)
    params = [plan.configs[(c.index, "")].model.params for c in plan.cells]
    assert params == [{"width": 8, "depth": 2}, {"width": 8}, {}]
    assert plan.cells[0].notes == []
    assert plan.cells[1].notes == ["base model.params.depth left out: vgg19_cnn does not take it"]
    assert plan.cells[2].notes == [
        "base model.params.width, model.params.depth left out: mobilenetv3_small does not take them"
    ]
    console = Console(record=True, width=300)
    event = StudyEvent("start", plan.cells[2], 3, Repeat(), 1, 1, plan.metric)
    print_event(console, event)
    line = console.export_text().strip()
    assert line == (
        "cell 3/3  model.name=mobilenetv3_small  training (base model.params.width, "
        "model.params.depth left out: mobilenetv3_small does not take them)"
    )
    # a value the grid itself gives is never left out: the error names it
    with pytest.raises(ConfigError, match=r"^--grid model\.params\.depth=3: .*'depth'"):
        plan_study(
            base_config,
            grid={"model.name": ["vgg19_cnn"], "model.params.depth": ["3"]},
        )
    # without a model in the grid, the base's params are the user's mistake: refused
    with pytest.raises(ConfigError, match="no keyword 'depth'"):
        plan_study(base_config, grid=GRID, overrides=["model.name=vgg19_cnn"])
    assert not (tmp_path / "runs").exists()


def test_another_study_in_the_folder_is_refused(base_config: Path, tmp_path: Path) -> None:
    plan = plan_study(base_config, grid=GRID)
    plan.folder.mkdir(parents=True)
    state = initial_state(plan)
    (plan.folder / "study.json").write_text(json.dumps(state))
    plan_study(base_config, grid=GRID)  # the same study: fine
    with pytest.raises(ConfigError) as err:
        plan_study(base_config, grid={"model.params.width": ["4", "16"]})
    line = str(err.value)
    assert "study.json: the folder holds a different study (grid:" in line
    assert "--output" in line
    with pytest.raises(ConfigError, match=r"trainer\.max_epochs: 1 there, 3 now"):
        plan_study(base_config, grid=GRID, overrides=["trainer.max_epochs=3"])
    (plan.folder / "study.json").unlink()
    (plan.folder / "stray.txt").write_text("x")
    with pytest.raises(RunDirError, match="holds no study.json"):
        plan_study(base_config, grid=GRID)


@pytest.mark.timeout(300)
def test_seed_repeats_give_mean_and_sd(
    base_config: Path, tmp_path: Path, count_fits: list[Path]
) -> None:
    plan = plan_study(base_config, grid={"model.params.width": ["4"]}, seeds=[0, 1])
    assert plan.repeats == [Repeat(seed=0), Repeat(seed=1)]
    result = run_study(plan)
    folder = result.folder
    assert len(count_fits) == 2
    values = [
        read_json(folder / "01-4" / f"seed-{s}" / "test_metrics.json")["f1_macro"] for s in (0, 1)
    ]
    for s in (0, 1):
        assert (
            yaml.safe_load((folder / "01-4" / f"seed-{s}" / "config.yaml").read_text())["seed"] == s
        )
        assert (folder / "splits" / f"seed-{s}.json").is_file()
    board = pd.read_csv(folder / "leaderboard.csv")
    assert board.loc[0, "f1_macro"] == pytest.approx(np.mean(values))
    assert board.loc[0, "f1_macro_sd"] == pytest.approx(np.std(values, ddof=1))
    assert math.isnan(board.loc[0, "f1_macro_ci_low"])  # intervals are per run
    runs = pd.read_csv(folder / "leaderboard_runs.csv")
    assert runs["seed"].tolist() == [0, 1]
    assert runs["f1_macro"].tolist() == pytest.approx(values)
    md = (folder / "leaderboard.md").read_text()
    assert "f1_macro (mean ± sd)" in md
    assert f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}" in md
    assert "over 2 seeds" in md


@pytest.mark.timeout(300)
def test_segmentation_cell(tiny_lesions: Path, tmp_path: Path) -> None:
    raw = tiny_segmentation_config(tiny_lesions, tmp_path / "runs", **FAST)
    path = write_yaml(tmp_path / "seg.yaml", raw)
    plan = plan_study(path, grid={"loss.name": ["DiceLoss"]})
    assert plan.metric == "dice_mean" and plan.has_test  # the layout's test/ folder
    result = run_study(plan)
    board = pd.read_csv(result.folder / "leaderboard.csv")
    metrics = read_json(result.folder / "01-DiceLoss" / "test_metrics.json")
    assert board.loc[0, "loss.name"] == "DiceLoss"
    assert board.loc[0, "dice_mean"] == pytest.approx(metrics["dice_mean"])
    assert board.loc[0, "iou_mean"] == pytest.approx(metrics["iou_mean"])
    assert "pixel_accuracy" in board.columns
    headers, rows = display_table(result.leaderboard)
    assert headers[:4] == ["rank", "loss.name", "dice_mean", "95 % CI"]
    assert rows[0][2] == f"{metrics['dice_mean']:.4f}"


# -- pure functions -----------------------------------------------------------------------


def test_grid_parsing() -> None:
    assert split_values("unet,segnet") == ["unet", "segnet"]
    assert split_values("{alpha: 0.3, beta: 0.7},{alpha: 0.7, beta: 0.3}") == [
        "{alpha: 0.3, beta: 0.7}",
        "{alpha: 0.7, beta: 0.3}",
    ]
    assert split_values("[0.5, 1.0], [0.8, 1.0]") == ["[0.5, 1.0]", "[0.8, 1.0]"]
    assert split_values("'a,b',c") == ["'a,b'", "c"]
    assert parse_grid(["model.name=unet,segnet", "loss.name=DiceLoss"]) == {
        "model.name": ["unet", "segnet"],
        "loss.name": ["DiceLoss"],
    }
    for bad, message in (
        (["model.name"], "is not KEY=V1,V2"),
        (["=a,b"], "is not KEY=V1,V2"),
        (["a=1", "a=2"], "'a' is given twice"),
        (["a=1,,2"], "empty value"),
        (["a=1,1"], "values repeat: 1"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_grid(bad)
    assert parse_seeds("0,1,2") == [0, 1, 2]
    for bad in ("0,x", "1,1", "-1"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


def fake_run(value: float, *, ci: bool = True, seed: int = 0, **more: float) -> RunMetrics:
    metrics = {"f1_macro": value, "accuracy": value + 0.1, **more}
    if ci:
        metrics.update(
            {"ci_low/f1_macro": value - 0.05, "ci_high/f1_macro": value + 0.04, "confidence": 0.9}
        )
    return RunMetrics(
        repeat="",
        seed=seed,
        fold=None,
        metrics=metrics,
        params=1234567,
        seconds=12.34,
        best_epoch=7,
        cpu_seconds=20.56,
    )


def test_leaderboard_intervals_and_order(tmp_path: Path) -> None:
    cells = [
        CellRuns("01-a", {"model.name": "a"}, [fake_run(0.70)]),
        CellRuns("02-b", {"model.name": "b"}, [fake_run(0.80, ci=False)]),
        CellRuns("03-c", {"model.name": "c"}, [], status="failed"),
        CellRuns("04-d", {"model.name": "d"}, [fake_run(0.75)]),
    ]
    board = build_leaderboard(
        cells, grid_keys=["model.name"], metric="f1_macro", task="classification", split="val"
    )
    assert board.table["cell"].tolist() == ["02-b", "04-d", "01-a", "03-c"]
    assert board.table["rank"].tolist() == ["1", "2", "3", ""]
    headers, rows = display_table(board)
    assert headers == [
        "rank",
        "model.name",
        "f1_macro",
        "90 % CI",
        "accuracy",
        "params",
        "train s",
        "CPU s",
        "best epoch",
    ]
    assert rows[0] == ["1", "b", "0.8000", "n/a", "0.9000", "1.23 M", "12.3", "20.6", "7"]
    assert rows[1][3] == "[0.7000, 0.7900]"
    assert rows[3][:3] == ["–", "c", "failed"] and len(rows[3]) == len(headers)
    md = markdown(board)
    assert "CPU s: the CPU seconds training used" in md
    assert "90 % CI: bootstrap interval" in md and "on the val split" in md
    files = write_leaderboard(board, tmp_path)
    assert set(files) == {"csv", "runs", "md", "png"}
    csv = pd.read_csv(files["csv"])
    assert csv.loc[0, "f1_macro"] == 0.8 and math.isnan(csv.loc[0, "f1_macro_ci_low"])
    assert csv.loc[3, "status"] == "failed"


def test_leaderboard_lower_is_better_and_repeats() -> None:
    cells = [
        CellRuns(
            "01-a", {"k": "a"}, [fake_run(0.5, ece=0.2, seed=0), fake_run(0.6, ece=0.1, seed=1)], 2
        ),
        CellRuns("02-b", {"k": "b"}, [fake_run(0.5, ece=0.05, seed=0)], 2, status="running"),
    ]
    board = build_leaderboard(
        cells,
        grid_keys=["k"],
        metric="ece",
        task="classification",
        split="test",
        repeat_kind="2 seeds",
    )
    assert board.table["cell"].tolist() == ["02-b", "01-a"]  # ece: lower is better
    headers, rows = display_table(board)
    assert headers[2] == "ece (mean ± sd)"
    assert rows[0][2] == "0.0500 ± n/a (1 runs)"
    assert rows[1][2] == fmt_mean_sd(0.15, np.std([0.2, 0.1], ddof=1))
    assert board.table.loc[0, "status"] == "incomplete"


def test_formatting() -> None:
    assert fmt_interval(0.1, 0.2) == "[0.1000, 0.2000]"
    assert fmt_interval(None, 0.2) == "n/a" and fmt_interval(math.nan, 0.2) == "n/a"
    assert fmt_mean_sd(0.5, math.nan) == "0.5000 ± n/a"
    assert fmt_params(950) == "950" and fmt_params(31_000) == "31.0 k"
    assert fmt_params(None) == "n/a"


def test_ray_backend_docstring_examples() -> None:
    """The Ray backend's module imports without Ray; its examples run."""
    import doctest

    from mediscope.study import cluster

    result = doctest.testmod(cluster)
    assert result.attempted >= 1 and result.failed == 0
