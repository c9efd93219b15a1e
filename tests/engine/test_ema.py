"""trainer.ema: a moving average of the weights that validation, checkpoints and
evaluation use, and that --resume continues."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from helpers import last_row_metrics, single_process_validation, tiny_config
from mediscope.api import fit
from mediscope.engine.checkpoints import read_checkpoint
from mediscope.errors import ConfigError
from mediscope.tasks.validate import config_from_dict

DECAY = 0.8


class Weights(L.Callback):
    """The training weights and buffers after every optimizer step."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, out: Any, batch: Any, i: int
    ) -> None:
        self.steps.append({k: v.detach().clone() for k, v in module.state_dict().items()})


def by_hand(steps: list[dict[str, torch.Tensor]], decay: float) -> dict[str, torch.Tensor]:
    """The average ``trainer.ema`` promises: the first weights, then after update n
    ``kept = min(decay, (1 + n) / (10 + n))`` of the average and the rest of the step's."""
    average = {k: v.clone() for k, v in steps[0].items()}
    for n, step in enumerate(steps[1:], start=1):
        kept = min(decay, (1 + n) / (10 + n))
        for key, value in step.items():
            if value.is_floating_point():
                average[key] = kept * average[key] + (1 - kept) * value
            else:
                average[key] = value.clone()
    return average


def epoch_metrics(run: Path) -> dict[int, dict[str, float]]:
    """The validation metrics of metrics.csv by epoch."""
    with (run / "metrics.csv").open() as file:
        rows = [r for r in csv.DictReader(file) if r.get("val/loss")]
    return {int(float(r["epoch"])): {k: float(v) for k, v in r.items() if v} for r in rows}


def config(data: Path, runs: Path, **trainer: Any) -> Any:
    trainer = {"max_epochs": 2, "deterministic": True, "test_after_fit": False, **trainer}
    return config_from_dict(tiny_config(data, runs, trainer=trainer, data={"batch_size": 4}))


def test_checkpoints_hold_the_average_and_validation_sees_it(
    tiny_crops: Path, tmp_path: Path
) -> None:
    weights = Weights()
    run = fit(config(tiny_crops, tmp_path / "ema", ema=DECAY), callbacks=[weights]).run_dir
    plain = fit(config(tiny_crops, tmp_path / "plain")).run_dir
    assert len(weights.steps) > 10
    last = read_checkpoint(run / "checkpoints" / "last.ckpt")
    expected = by_hand(weights.steps, DECAY)
    assert set(last["state_dict"]) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(last["state_dict"][key], value, rtol=1e-5, atol=1e-6)
        # the training weights go beside it, for --resume
        torch.testing.assert_close(last["current_model_state"][key], weights.steps[-1][key])
    moved = [k for k in expected if not torch.equal(expected[k], weights.steps[-1][k])]
    assert len(moved) > len(expected) // 2  # the average is not the last step's weights
    # What validation logged is the average's: Lightning's validation of last.ckpt.
    logged = last_row_metrics(run)
    alone = single_process_validation(run, run / "checkpoints" / "last.ckpt")
    for key, value in logged.items():
        assert alone[key] == pytest.approx(value, rel=1e-5), key
    # The plain run validates other weights.
    assert last_row_metrics(plain)["val/loss"] != logged["val/loss"]
    # The best checkpoint, which fit evaluates, holds an average too.
    best = read_checkpoint(run / "checkpoints" / "best.ckpt")
    assert "current_model_state" in best
    evaluated = json.loads((run / "val_metrics.json").read_text())
    at_best = epoch_metrics(run)[best["epoch"]]
    assert evaluated["accuracy"] == pytest.approx(at_best["val/accuracy"])


def test_resume_continues_the_average(tiny_crops: Path, tmp_path: Path) -> None:
    full = fit(config(tiny_crops, tmp_path / "full", ema=DECAY, max_epochs=3)).run_dir
    first = fit(config(tiny_crops, tmp_path / "parts", ema=DECAY, max_epochs=2)).run_dir
    resumed = fit(config(tiny_crops, tmp_path / "parts", ema=DECAY, max_epochs=3), resume="last")
    assert resumed.run_dir == first
    a = read_checkpoint(full / "checkpoints" / "last.ckpt")
    b = read_checkpoint(first / "checkpoints" / "last.ckpt")
    assert a["epoch"] == b["epoch"] == 2
    for part in ("state_dict", "current_model_state"):
        for key, value in a[part].items():
            torch.testing.assert_close(b[part][key], value, msg=f"{part} {key}")
    assert last_row_metrics(full) == last_row_metrics(first)


@pytest.mark.parametrize("value", [0, 1, 1.5, "yes"])
def test_a_decay_out_of_range_names_the_key(
    tiny_crops: Path, tmp_path: Path, value: object
) -> None:
    with pytest.raises(ConfigError, match=r"trainer\.ema"):
        config(tiny_crops, tmp_path, ema=value)
