"""fit end to end on tiny data: run folder, checkpoints, resume, determinism, weights."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import tiny_config
from mediscope import api
from mediscope.api import fit
from mediscope.errors import CheckpointError, ConfigError
from mediscope.tasks.validate import config_from_dict


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def epoch_rows(run_dir: Path) -> dict[int, dict[str, str]]:
    """Per-epoch values of metrics.csv, merged over the rows Lightning writes per epoch."""
    merged: dict[int, dict[str, str]] = {}
    for row in metrics_rows(run_dir):
        epoch = int(float(row["epoch"]))
        merged.setdefault(epoch, {}).update({k: v for k, v in row.items() if v != ""})
    return merged


def test_run_directory_contents(tiny_crops: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(tiny_config(tiny_crops, tmp_path / "runs"))
    result = fit(cfg)
    run = result.run_dir
    assert run.parent == tmp_path / "runs" / "tiny"
    for name in (
        "config.yaml",
        "environment.json",
        "metrics.csv",
        "split.json",
        "val_metrics.json",
    ):
        assert (run / name).is_file(), name
    # by default only the best and the last epoch are kept (checkpoint.every_n_epochs: 0)
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["best.ckpt", "last.ckpt"]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    env = json.loads((run / "environment.json").read_text())
    assert (
        env["seed"] == 3 and env["packages"]["torch"] == torch.__version__.split("+")[0]
    ) or env["packages"]["torch"]
    assert env["python"] and env["cpu_count"] >= 1
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) + len(split["val"]) == 64
    assert not set(split["train"]) & set(split["val"])
    val = json.loads((run / "val_metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "auroc_macro"):
        assert 0.0 <= val[key] <= 1.0
    assert "f1/G-cocci" in val and "specificity/G+bacilli" in val
    assert val["n_samples"] == len(split["val"])
    rows = epoch_rows(run)
    assert sorted(rows) == [0, 1]
    assert {"train/loss", "val/loss", "val/f1_macro", "val/auroc_macro"} <= set(rows[1])
    # the best checkpoint is the epoch with the best monitored value
    best = max(rows, key=lambda e: float(rows[e]["val/f1_macro"]))
    assert result.best_score == pytest.approx(float(rows[best]["val/f1_macro"]))
    # resolved config: every default written out
    assert "loss:\n  name: CrossEntropyLoss" in (run / "config.yaml").read_text()
    # evaluation outputs of the best checkpoint on the validation split
    for name in ("training_curves.png", "val_confusion_matrix.png", "val_roc.png"):
        assert (run / "plots" / name).read_bytes()[:4] == b"\x89PNG", name
    matrix = (run / "val_confusion_matrix.csv").read_text().splitlines()
    assert matrix[0].split(",")[1:] == ["G+bacilli", "G+cocci", "G-bacilli", "G-cocci"]
    assert sum(int(x) for line in matrix[1:] for x in line.split(",")[1:]) == len(split["val"])
    results = np.load(run / "val_results.npz")
    assert results["probs"].shape == (len(split["val"]), 4)
    assert sorted(results["paths"].tolist()) == sorted(split["val"])
    assert np.array_equal(results["preds"], results["probs"].argmax(axis=1))
    accuracy = float((results["preds"] == results["labels"]).mean())
    assert accuracy == pytest.approx(val["accuracy"])


def test_every_n_epochs_and_no_periodic_checkpoints(tiny_crops: Path, tmp_path: Path) -> None:
    raw = tiny_config(
        tiny_crops, tmp_path, trainer={"max_epochs": 3}, checkpoint={"every_n_epochs": 2}
    )
    run = fit(config_from_dict(raw)).run_dir
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best.ckpt",
        "epoch=001.ckpt",
        "last.ckpt",
    ]
    raw = tiny_config(
        tiny_crops, tmp_path, trainer={"max_epochs": 1}, checkpoint={"every_n_epochs": 0}
    )
    run = fit(config_from_dict(raw)).run_dir
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


SECTIONS = {
    "trainer": {"max_epochs": 4, "deterministic": True},
    "augment": {"hflip": 0.5, "rotate": 20, "brightness": 0.2},
    "scheduler": {"name": "StepLR", "params": {"step_size": 1, "gamma": 0.7}, "warmup_epochs": 1},
    "model": {"name": "simple_cnn", "params": {"width": 8, "depth": 2, "drop_rate": 0.3}},
}
COMPARED = ("train/loss", "train/lr", "val/loss", "val/f1_macro", "val/accuracy", "val/auroc_macro")


def assert_same_epochs(run_a: Path, run_b: Path, epochs: int) -> None:
    rows_a, rows_b = epoch_rows(run_a), epoch_rows(run_b)
    assert sorted(rows_a) == sorted(rows_b) == list(range(epochs))
    for epoch in range(epochs):
        for key in COMPARED:
            assert rows_a[epoch][key] == rows_b[epoch][key], (epoch, key)


def test_deterministic_runs_give_identical_metrics_csv(tiny_crops: Path, tmp_path: Path) -> None:
    full_a = fit(config_from_dict(tiny_config(tiny_crops, tmp_path / "a", **SECTIONS)))
    full_b = fit(config_from_dict(tiny_config(tiny_crops, tmp_path / "b", **SECTIONS)))
    text_a = (full_a.run_dir / "metrics.csv").read_text()
    assert text_a == (full_b.run_dir / "metrics.csv").read_text()
    assert text_a.count("\n") == 1 + 2 * 4  # header + a train and a val row per epoch


def test_resume_last_matches_an_uninterrupted_run(tiny_crops: Path, tmp_path: Path) -> None:
    full = fit(config_from_dict(tiny_config(tiny_crops, tmp_path / "full", **SECTIONS)))
    # The same run stopped after 2 epochs, then continued with --resume last to 4.
    short = tiny_config(tiny_crops, tmp_path / "parts", **SECTIONS)
    short["trainer"] = {**short["trainer"], "max_epochs": 2}
    first = fit(config_from_dict(short))
    resumed = fit(
        config_from_dict(tiny_config(tiny_crops, tmp_path / "parts", **SECTIONS)), resume="last"
    )
    assert resumed.run_dir == first.run_dir
    assert resumed.resumed_from == first.run_dir / "checkpoints" / "last.ckpt"
    assert_same_epochs(resumed.run_dir, full.run_dir, 4)
    assert json.loads((resumed.run_dir / "val_metrics.json").read_text()) == json.loads(
        (full.run_dir / "val_metrics.json").read_text()
    )


def test_resume_from_an_epoch_checkpoint_with_a_cosine_schedule(
    tiny_crops: Path, tmp_path: Path
) -> None:
    sections = {
        **SECTIONS,
        "scheduler": {"name": "CosineAnnealingLR", "warmup_epochs": 1},
        "checkpoint": {"every_n_epochs": 1},
    }
    full = fit(config_from_dict(tiny_config(tiny_crops, tmp_path / "full", **sections)))
    copy = fit(config_from_dict(tiny_config(tiny_crops, tmp_path / "copy", **sections)))
    # continue the copy from its epoch-1 checkpoint: epochs 2 and 3 are trained again
    ckpt = copy.run_dir / "checkpoints" / "epoch=001.ckpt"
    cfg = config_from_dict(tiny_config(tiny_crops, tmp_path / "copy", **sections))
    resumed = fit(cfg, resume=ckpt)
    assert resumed.run_dir == copy.run_dir
    assert_same_epochs(resumed.run_dir, full.run_dir, 4)


def test_resume_last_extends_max_epochs(tiny_crops: Path, tmp_path: Path) -> None:
    raw = tiny_config(
        tiny_crops, tmp_path, trainer={"max_epochs": 2}, checkpoint={"every_n_epochs": 1}
    )
    first = fit(config_from_dict(raw))
    with pytest.raises(ConfigError, match="already finished epoch 1 of max_epochs=2"):
        fit(config_from_dict(raw), resume="last")
    raw["trainer"]["max_epochs"] = 3
    second = fit(config_from_dict(raw), resume="last")
    assert second.run_dir == first.run_dir
    assert sorted(epoch_rows(second.run_dir)) == [0, 1, 2]
    assert second.epochs_run == 3
    last = torch.load(second.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2
    assert (second.run_dir / "checkpoints" / "epoch=002.ckpt").is_file()


def test_resume_errors(tiny_crops: Path, tmp_path: Path) -> None:
    raw = tiny_config(tiny_crops, tmp_path)
    with pytest.raises(CheckpointError, match="no run with a last.ckpt"):
        fit(config_from_dict(raw), resume="last")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        fit(config_from_dict(raw), resume=tmp_path / "missing.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        fit(config_from_dict(raw), resume=junk)
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_weights_initialise_without_optimizer(tiny_crops: Path, tmp_path: Path) -> None:
    raw = tiny_config(tiny_crops, tmp_path / "pre", trainer={"max_epochs": 1})
    pre = fit(config_from_dict(raw))
    best = pre.run_dir / "checkpoints" / "best.ckpt"
    # fine-tune on the same data with fresh optimizer and epoch counter
    raw = tiny_config(tiny_crops, tmp_path / "ft", trainer={"max_epochs": 1})
    tuned = fit(config_from_dict(raw), weights=best)
    assert tuned.run_dir != pre.run_dir
    assert sorted(epoch_rows(tuned.run_dir)) == [0]
    # a model trained from these weights starts where the first one ended: its first
    # epoch's training loss is lower than the first run's
    assert float(epoch_rows(tuned.run_dir)[0]["train/loss"]) < float(
        epoch_rows(pre.run_dir)[0]["train/loss"]
    )


def test_early_stopping_and_freeze(tiny_crops: Path, tmp_path: Path) -> None:
    raw = tiny_config(
        tiny_crops,
        tmp_path,
        trainer={
            "max_epochs": 6,
            "early_stopping": {"monitor": "val/loss", "patience": 1, "min_delta": 10.0},
        },
        model={"name": "simple_cnn", "params": {"width": 8, "depth": 2}, "freeze": "all"},
        checkpoint={"every_n_epochs": 1},
    )
    result = fit(config_from_dict(raw))
    # min_delta 10 makes every epoch "no improvement": stops after patience + 1 epochs
    assert result.epochs_run == 2
    first = torch.load(result.run_dir / "checkpoints" / "epoch=000.ckpt", weights_only=True)
    last = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    for key, value in first["state_dict"].items():
        if key.startswith("model.stages.") and key.endswith("weight"):
            assert torch.equal(value, last["state_dict"][key]), key  # frozen
    assert not torch.equal(
        first["state_dict"]["model.head.weight"], last["state_dict"]["model.head.weight"]
    )


def test_test_command_writes_test_metrics(tiny_crops: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(tiny_config(tiny_crops, tmp_path, trainer={"max_epochs": 1}))
    result = fit(cfg)
    assert result.best_checkpoint is not None
    metrics, path = api.test(cfg, result.best_checkpoint)
    assert path == result.run_dir / "test_metrics.json"
    saved = json.loads(path.read_text())
    assert saved["n_samples"] == 24
    assert saved["accuracy"] == pytest.approx(metrics["accuracy"])


def test_unknown_monitor_is_a_config_error(tiny_crops: Path, tmp_path: Path) -> None:
    raw = tiny_config(tiny_crops, tmp_path, checkpoint={"monitor": "val/f1"})
    with pytest.raises(ConfigError, match="'val/f1' is not a metric.*did you mean 'val/f1_macro'"):
        fit(config_from_dict(raw))
    assert not (tmp_path / "runs").exists()


def test_unfreeze_epoch_releases_the_backbone(tiny_crops: Path, tmp_path: Path) -> None:
    raw = tiny_config(
        tiny_crops,
        tmp_path,
        trainer={"max_epochs": 3},
        model={
            "name": "simple_cnn",
            "params": {"width": 8, "depth": 2},
            "freeze": 1,
            "unfreeze_epoch": 2,
        },
        checkpoint={"every_n_epochs": 1},
    )
    run = fit(config_from_dict(raw)).run_dir
    states = [
        torch.load(run / "checkpoints" / f"epoch={e:03d}.ckpt", weights_only=True)["state_dict"]
        for e in range(3)
    ]
    first_stage = "model.stages.0.0.weight"
    second_stage = "model.stages.1.0.weight"
    assert torch.equal(states[0][first_stage], states[1][first_stage])  # frozen in epoch 1
    assert not torch.equal(states[0][second_stage], states[1][second_stage])  # stage 2 trains
    assert not torch.equal(states[1][first_stage], states[2][first_stage])  # released at 2
