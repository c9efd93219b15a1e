"""Optimizers and schedulers by name, PolyLR and the linear warm-up."""

from __future__ import annotations

import pytest
import torch

from mediscope.errors import ConfigError
from mediscope.optim import PolyLR, build_optimizer, build_scheduler


def lrs(scheduler, optimizer, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def make_optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return build_optimizer("SGD", [torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_polylr_matches_the_formula() -> None:
    optimizer = make_optimizer(0.1)
    scheduler = PolyLR(optimizer, total_iters=4, power=2.0)
    values = lrs(scheduler, optimizer, 6)
    expected = [0.1 * (1 - min(t, 4) / 4) ** 2 for t in range(6)]
    assert values == pytest.approx(expected)


def test_cosine_defaults_to_the_training_length() -> None:
    optimizer = make_optimizer(1.0)
    scheduler = build_scheduler("CosineAnnealingLR", optimizer, params={}, length=4)
    assert scheduler.T_max == 4
    assert lrs(scheduler, optimizer, 5) == pytest.approx([1.0, 0.8535534, 0.5, 0.1464466, 0.0])


def test_linear_warmup_then_main_schedule() -> None:
    optimizer = make_optimizer(1.0)
    scheduler = build_scheduler(
        "StepLR",
        optimizer,
        params={"step_size": 1, "gamma": 0.5},
        length=10,
        warmup=2,
        warmup_start_factor=0.1,
    )
    assert lrs(scheduler, optimizer, 5) == pytest.approx([0.1, 0.55, 1.0, 0.5, 0.25])


def test_bad_keywords_are_config_errors() -> None:
    optimizer = make_optimizer()
    with pytest.raises(
        ConfigError,
        match=r"scheduler.params.step_siz: StepLR takes no keyword 'step_siz'; "
        r"did you mean 'step_size'\? valid: step_size, gamma, last_epoch",
    ):
        build_scheduler("StepLR", optimizer, params={"step_siz": 1}, length=3)
    with pytest.raises(ConfigError, match=r"optimizer.params.betas: SGD takes no keyword 'betas'"):
        build_optimizer("SGD", [torch.nn.Parameter(torch.zeros(1))], lr=0.1, extra={"betas": 1})
    with pytest.raises(ConfigError, match=r"scheduler.params.step_size: StepLR: input should be"):
        build_scheduler("StepLR", optimizer, params={"step_size": "two"}, length=3)
    with pytest.raises(ConfigError, match="ReduceLROnPlateau cannot follow a warm-up"):
        build_scheduler("ReduceLROnPlateau", optimizer, params={}, length=3, warmup=1)


def test_optimizer_keywords_pass_through() -> None:
    opt = build_optimizer(
        "SGD",
        [torch.nn.Parameter(torch.zeros(1))],
        lr=0.1,
        weight_decay=0.01,
        extra={"momentum": 0.9, "nesterov": True},
    )
    group = opt.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["momentum"], group["nesterov"]) == (
        0.1,
        0.01,
        0.9,
        True,
    )
