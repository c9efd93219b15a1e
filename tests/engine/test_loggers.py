"""Experiment trackers: W&B offline, MLflow local store, ClearML offline; no server reached."""

from __future__ import annotations

import csv
import json
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import tiny_config
from mediscope.api import fit
from mediscope.engine import loggers as loggers_module
from mediscope.engine.loggers import (
    check_loggers,
    clearml_offline,
    config_params,
    mlflow_uri,
    scalar_title,
    tracker_run_name,
    wandb_offline,
)
from mediscope.errors import ConfigError
from mediscope.tasks.validate import config_from_dict, config_from_text

SERVER_VARIABLES = (
    "WANDB_API_KEY",
    "WANDB_MODE",
    "WANDB_BASE_URL",
    "MLFLOW_TRACKING_URI",
    "CLEARML_API_HOST",
    "CLEARML_API_ACCESS_KEY",
    "CLEARML_CONFIG_FILE",
    "CLEARML_CACHE_DIR",
)


@pytest.fixture
def no_servers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No tracker server configured; the home folder (W&B, ClearML settings) is temporary."""
    for name in SERVER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    return home


def wandb_records(path: Path) -> list[Any]:
    """The records of a W&B ``.wandb`` file (a LevelDB-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, chunks, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            break
        chunks += data[pos : pos + length]
        pos += length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


def wandb_history(run_dir: Path) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """History rows and config of the one offline W&B run of ``run_dir``."""
    folders = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(folders) == 1, folders
    files = list(folders[0].glob("run-*.wandb"))
    assert len(files) == 1
    rows, config = [], {}
    for record in wandb_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            rows.append({_key(item): json.loads(item.value_json) for item in record.history.item})
        elif kind in ("run", "config"):
            updates = record.run.config.update if kind == "run" else record.config.update
            config.update({_key(item): json.loads(item.value_json) for item in updates})
    return rows, config


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)  # W&B stores keys with "/" nested


def val_value(run_dir: Path, key: str) -> float:
    with (run_dir / "metrics.csv").open(newline="") as file:
        values = [row[key] for row in csv.DictReader(file) if row.get(key)]
    assert len(values) == 1
    return float(values[0])


@pytest.mark.timeout(240)
def test_trackers_offline_log_config_and_metrics(
    no_servers: Path, tiny_crops: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    everything = ["csv", "tensorboard", "wandb", "mlflow", "clearml"]
    raw = tiny_config(
        tiny_crops,
        runs,
        trainer={"max_epochs": 1},
        logging={"progress": "none", "loggers": everything, "project": "trackers"},
    )
    first = fit(config_from_dict(raw)).run_dir
    second = fit(config_from_dict(raw)).run_dir  # one process, a second tracker run
    f1 = val_value(first, "val/f1_macro")

    # csv and tensorboard, with the config as TensorBoard hyperparameters
    assert list((first / "tensorboard").glob("events.out.tfevents.*"))
    hparams = yaml.safe_load((first / "tensorboard" / "hparams.yaml").read_text())
    assert hparams["optimizer.lr"] == 0.001 and hparams["model.name"] == "simple_cnn"

    # MLflow: the local file store <run.dir>/mlruns, one run per fit
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(runs / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("trackers")
    assert experiment is not None
    found = client.search_runs([experiment.experiment_id])
    by_dir = {run.data.tags["mediscope.run_dir"]: run for run in found}
    assert set(by_dir) == {str(first.resolve()), str(second.resolve())}
    run = by_dir[str(first.resolve())]
    assert run.info.status == "FINISHED"
    assert run.info.run_name == f"tiny/{first.name}"
    assert run.data.params["optimizer.lr"] == "0.001"
    assert run.data.params["data.image_size"] == "[32, 32]"
    history = client.get_metric_history(run.info.run_id, "val/f1_macro")
    assert [m.value for m in history] == pytest.approx([f1])
    assert "train/loss" in run.data.metrics

    # W&B: an offline run inside each run folder with the metrics and the config
    rows, config = wandb_history(first)
    assert [r["val/f1_macro"] for r in rows if "val/f1_macro" in r] == pytest.approx([f1])
    assert any("train/loss" in r for r in rows)
    assert config["optimizer"]["lr"] == 0.001, config.get("optimizer")
    rows2, _ = wandb_history(second)
    assert [r["val/f1_macro"] for r in rows2 if "val/f1_macro" in r] == pytest.approx(
        [val_value(second, "val/f1_macro")]
    )

    # ClearML: an offline task inside each run folder, closed (zip written)
    entries = list((first / "clearml" / "offline").glob("offline-*"))
    assert len([p for p in entries if p.suffix == ".zip"]) == 1
    folder = next(p for p in entries if p.is_dir())
    task = json.loads((folder / "task.json").read_text())
    assert task["project_name"] == "trackers" and task["name"] == f"tiny/{first.name}"
    assert task["hyperparams"]["config"]["optimizer.lr"]["value"] == "0.001"
    events = json.loads((folder / "metrics.jsonl").read_text().splitlines()[0])
    scalars = {(e["metric"], e["variant"]): e["value"] for e in events}
    assert scalars[("f1_macro", "val")] == pytest.approx(f1)
    assert ("loss", "train") in scalars
    assert list((second / "clearml" / "offline").glob("offline-*.zip"))
    # nothing written to the home folder's ClearML cache
    assert not (no_servers / ".clearml" / "cache").exists()


def test_missing_tracker_package_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tiny_crops: Path, tmp_path: Path, write_config
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # find_spec then reports it missing
    text = yaml.safe_dump(
        tiny_config(tiny_crops, tmp_path / "runs", logging={"loggers": ["csv", "wandb"]}),
        sort_keys=False,
    )
    path = write_config(text)
    config = config_from_text(text, path=path)
    with pytest.raises(ConfigError) as err:
        check_loggers(config)
    line = str(err.value)
    assert "logging.loggers" in line and f"{path}:" in line
    assert "the wandb logger needs the 'wandb' package" in line
    assert "pip install 'mediscope[tracking]'" in line
    with pytest.raises(ConfigError):
        fit(config)
    assert not (tmp_path / "runs").exists()  # nothing written


def test_missing_tracker_package_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch, cli, write_config, tiny_crops: Path, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "clearml", None)
    path = write_config(tiny_config(tiny_crops, tmp_path / "runs"))
    result = cli("fit", path, "--set", "logging.loggers=[csv,clearml]")
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "error: --set: logging.loggers: the clearml logger needs the 'clearml' package, which "
        "is not installed; install it with: pip install 'mediscope[tracking]', or remove "
        "clearml from the list"
    ]


def test_unknown_and_repeated_loggers(tiny_crops: Path, tmp_path: Path) -> None:
    raw = tiny_config(tiny_crops, tmp_path, logging={"loggers": ["csv", "neptune"]})
    with pytest.raises(ConfigError, match="logging.loggers.1"):
        config_from_dict(raw)
    raw = tiny_config(tiny_crops, tmp_path, logging={"loggers": ["csv", "csv"]})
    with pytest.raises(ConfigError, match="loggers repeat: csv"):
        config_from_dict(raw)


def test_offline_unless_a_server_is_configured(
    no_servers: Path, monkeypatch: pytest.MonkeyPatch, tiny_crops: Path, tmp_path: Path
) -> None:
    cfg = config_from_dict(tiny_config(tiny_crops, tmp_path / "runs"))
    assert wandb_offline(cfg) and clearml_offline(cfg)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("CLEARML_API_HOST", "http://clearml.example:8008")
    assert not wandb_offline(cfg) and not clearml_offline(cfg)
    cfg.logging.offline = True
    assert wandb_offline(cfg) and clearml_offline(cfg)
    monkeypatch.delenv("CLEARML_API_HOST")
    cfg.logging.offline = "auto"
    assert clearml_offline(cfg)
    (no_servers / "clearml.conf").write_text("api {}\n")
    assert not clearml_offline(cfg)


def test_mlflow_uri_choice(
    no_servers: Path, monkeypatch: pytest.MonkeyPatch, tiny_crops: Path, tmp_path: Path
) -> None:
    cfg = config_from_dict(tiny_config(tiny_crops, tmp_path / "runs"))
    assert mlflow_uri(cfg) == (tmp_path / "runs" / "mlruns").resolve().as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert mlflow_uri(cfg) == "http://mlflow.example:5000"
    cfg.logging.mlflow_uri = "sqlite:///mlflow.db"
    assert mlflow_uri(cfg) == "sqlite:///mlflow.db"


def test_names_and_params(tiny_crops: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(tiny_config(tiny_crops, tmp_path / "runs"))
    assert tracker_run_name(cfg, tmp_path / "runs" / "tiny" / "20250101-120000") == (
        "tiny/20250101-120000"
    )
    assert tracker_run_name(cfg, tmp_path / "elsewhere" / "cell" / "seed-0") == "cell/seed-0"
    params = config_params(cfg)
    assert params["optimizer.lr"] == 0.001 and params["task"] == "classification"
    assert params["model.params.width"] == 8
    assert params["data.classes"] == "none" and params["loss.params"] == "{}"
    assert all(not isinstance(v, list | dict) for v in params.values())
    assert scalar_title("val/f1_macro") == ("f1_macro", "val")
    assert scalar_title("train/loss") == ("loss", "train")
    assert scalar_title("val/dice/lesion") == ("dice/lesion", "val")
    assert scalar_title("lr-AdamW") == ("lr-AdamW", "lr-AdamW")


def test_clearml_logger_reports_through_its_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """The logger's calls into clearml, with a fake task (no clearml task at all)."""

    class FakeReport:
        def __init__(self) -> None:
            self.scalars: list[tuple[str, str, float, int]] = []

        def report_scalar(self, *, title: str, series: str, value: float, iteration: int):
            self.scalars.append((title, series, value, iteration))

    class FakeTask:
        def __init__(self) -> None:
            self.report = FakeReport()
            self.connected: dict[str, Any] = {}
            self.closed = False
            self.failed = False

        def connect(self, values: dict[str, Any], name: str) -> None:
            self.connected[name] = values

        def get_logger(self) -> FakeReport:
            return self.report

        def mark_failed(self, **kwargs: Any) -> None:
            self.failed = True

        def close(self) -> None:
            self.closed = True

    task = FakeTask()
    logger = loggers_module.ClearMLLogger(project="p", task_name="t", offline=False)
    monkeypatch.setattr(logger, "_init_task", lambda: task)
    logger.log_hyperparams({"optimizer.lr": 0.01, "data.classes": ["a", "b"]})
    logger.log_metrics({"val/f1_macro": 0.5, "epoch": 0.0}, step=7)
    assert task.connected == {"config": {"optimizer.lr": 0.01, "data.classes": "['a', 'b']"}}
    assert task.report.scalars == [("f1_macro", "val", 0.5, 7)]
    logger.finalize("failed")
    assert task.closed and task.failed and logger._task is None
    assert logger.name == "p" and logger.version == "t"
