"""The Registry class and the built-in registries."""

from __future__ import annotations

import inspect

import pytest
import torch

from mediscope.errors import UnknownNameError
from mediscope.registry import LOSSES, OPTIMIZERS, SCHEDULERS, Registry


def test_register_get_and_refuse_duplicates() -> None:
    registry: Registry[int] = Registry("thing")
    registry.register("alpha", 1, description="the first")
    registry.register("beta")(2)
    assert registry.get("alpha") == 1 and registry.get("beta") == 2
    assert registry.names() == ["alpha", "beta"]
    assert registry.entry("alpha").description == "the first"
    with pytest.raises(ValueError, match="thing 'alpha' is already registered"):
        registry.register("alpha", 3)


def test_unknown_name_suggests_and_lists() -> None:
    registry: Registry[int] = Registry("thing")
    for i, name in enumerate(["resnet18", "resnet34", "vgg16"]):
        registry.register(name, i)
    with pytest.raises(UnknownNameError) as info:
        registry.get("ResNet-18")
    assert str(info.value) == (
        "unknown thing 'ResNet-18'; did you mean 'resnet18'? valid: resnet18, resnet34, vgg16"
    )
    with pytest.raises(UnknownNameError, match="unknown thing 'xyz'; valid: resnet18"):
        registry.get("xyz")


def test_every_torch_optimizer_is_registered() -> None:
    expected = {
        name
        for name, cls in inspect.getmembers(torch.optim, inspect.isclass)
        if issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer
    }
    assert expected <= set(OPTIMIZERS.names())
    assert {"SGD", "Adam", "AdamW", "RMSprop"} <= expected


def test_torch_schedulers_plus_polylr_are_registered() -> None:
    names = set(SCHEDULERS.names())
    assert {"StepLR", "CosineAnnealingLR", "ReduceLROnPlateau", "OneCycleLR", "PolyLR"} <= names
    assert "LambdaLR" not in names  # needs a Python callable, cannot come from YAML


def test_torch_losses_and_focal_are_registered() -> None:
    names = set(LOSSES.names())
    assert {"CrossEntropyLoss", "BCEWithLogitsLoss", "NLLLoss", "FocalLoss", "MSELoss"} <= names
