"""The command line: help, listing, exit codes and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from helpers import tiny_config


def test_help_texts(cli) -> None:
    result = cli("--help")
    assert result.code == 0
    for verb in ("fit", "validate", "test", "list", "demo", "data"):
        assert verb in result.out
    fit_help = cli("fit", "--help")
    assert fit_help.code == 0
    assert "--set" in fit_help.out and "--resume" in fit_help.out and "--weights" in fit_help.out
    assert cli("data", "synth", "gram-crops", "--help").code == 0
    assert cli("--version").out.startswith("mediscope ")


def test_list_models_and_more(cli) -> None:
    models = cli("list", "models")
    assert models.code == 0
    assert "simple_cnn" in models.out and "efficientnet_b3" in models.out
    assert "timm:<name>" in models.out
    optimizers = cli("list", "optimizers").out
    assert "AdamW" in optimizers and "SGD" in optimizers
    schedulers = cli("list", "schedulers").out
    assert "PolyLR" in schedulers and "ReduceLROnPlateau" in schedulers and "warm-up" in schedulers
    losses = cli("list", "losses").out
    assert "CrossEntropyLoss" in losses and "FocalLoss" in losses
    assert "imagefolder" in cli("list", "formats").out
    bad = cli("list", "modells")
    assert bad.code == 2
    assert bad.err.strip() == (
        "error: cannot list 'modells'; did you mean 'models'? "
        "valid: models, losses, optimizers, schedulers, formats"
    )


def test_config_errors_exit_2_with_one_line(cli, write_config, tmp_path: Path) -> None:
    raw = tiny_config(tmp_path, tmp_path / "runs")
    raw["model"]["name"] = "resnet81"
    result = cli("fit", write_config(raw))
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1
    assert "model.name: unknown model 'resnet81'; did you mean 'resnet18'?" in lines[0]
    assert "valid: " in lines[0] and "simple_cnn" in lines[0] and "vgg19_skip" in lines[0]
    assert "Traceback" not in result.err

    raw = tiny_config(tmp_path, tmp_path / "runs")
    raw["trainer"]["max_epoch"] = 3
    result = cli("fit", write_config(raw))
    assert result.code == 2
    assert "trainer.max_epoch: unknown key; did you mean 'max_epochs'?" in result.err

    raw = tiny_config(tmp_path, tmp_path / "runs")
    raw["data"]["batch_size"] = "big"
    result = cli("fit", write_config(raw))
    assert result.code == 2
    assert (
        "data.batch_size: input should be a valid integer" in result.err and "'big'" in result.err
    )


def test_missing_data_exits_2_and_writes_nothing(cli, write_config, tmp_path: Path) -> None:
    raw = tiny_config(tmp_path / "nowhere", tmp_path / "runs")
    result = cli("fit", write_config(raw))
    assert result.code == 2
    assert result.err.startswith("error: ") and "dataset folder not found" in result.err
    assert "check data.path" in result.err
    assert not (tmp_path / "runs").exists()


def test_debug_shows_the_traceback(cli, write_config, tmp_path: Path) -> None:
    raw = tiny_config(tmp_path / "nowhere", tmp_path / "runs")
    path = write_config(raw)
    assert "Traceback" not in cli("fit", path).err
    debug = cli("--debug", "fit", path)
    assert debug.code == 2 and "Traceback" in debug.err
    assert "Traceback" in cli("fit", path, "--debug").err


def test_set_override_on_the_command_line(cli, write_config, tmp_path: Path) -> None:
    raw = tiny_config(tmp_path, tmp_path / "runs")
    result = cli("fit", write_config(raw), "--set", "optimizer.lr=fast")
    assert result.code == 2
    assert "--set: optimizer.lr" in result.err and "'fast'" in result.err


def test_fit_validate_test_from_the_cli(
    cli, write_config, tiny_crops: Path, tmp_path: Path
) -> None:
    raw = tiny_config(tiny_crops, tmp_path / "runs", trainer={"max_epochs": 1})
    path = write_config(raw)
    result = cli("fit", path, "--set", "logging.progress=plain")
    assert result.code == 0, result.err
    last = result.out.strip().splitlines()[-1]
    assert last.startswith("run: ")
    run = Path(last[len("run: ") :])
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert "epoch 0/0" in result.out  # the plain progress line
    assert "best" in result.out and "f1_macro" in result.out
    ckpt = run / "checkpoints" / "best.ckpt"
    tested = cli("test", path, "--checkpoint", ckpt)
    assert tested.code == 0, tested.err
    assert (run / "test_metrics.json").is_file()
    assert "test, 24 images" in tested.out
    validated = cli("validate", path, "--checkpoint", ckpt)
    assert validated.code == 0, validated.err
    assert "validation" in validated.out
    bad = cli("test", path, "--checkpoint", tmp_path / "missing.ckpt")
    assert bad.code == 2 and "checkpoint not found" in bad.err
    # a fresh run never reuses a folder
    again = cli("fit", path)
    assert again.code == 0
    assert again.out.strip().splitlines()[-1] != last


def test_console_script_entry_point(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "mediscope"
    result = subprocess.run([str(exe), "list", "formats"], capture_output=True, text=True)
    assert result.returncode == 0 and "imagefolder" in result.stdout
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"task": "classification"}))
    result = subprocess.run([str(exe), "fit", str(cfg)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {cfg}: data: required key is missing; add a 'data' section; "
        f"{cfg}: model: required key is missing (add a 'model' section)"
    ]
