"""Models by name: ``mediscope list models``.

Models are built by ``build_model(name, task=..., num_classes=..., in_chans=...,
pretrained=...)``. Registered names are listed by ``mediscope list models``; any timm
classifier is also available as ``timm:<name>``, and any segmentation_models_pytorch
architecture as ``smp:<Arch>`` (with ``encoder=...``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from mediscope.errors import ConfigError, UnknownNameError

# Importing the task packages registers their models (explicit registration).
from mediscope.models import classification as _classification  # noqa: F401
from mediscope.models import detection as _detection  # noqa: F401
from mediscope.models import segmentation as _segmentation  # noqa: F401
from mediscope.models.segmentation.smp_models import (
    SMP_PREFIX,
    build_smp_model,
    check_architecture,
    smp_architectures,
)
from mediscope.params import check_keywords
from mediscope.registry import MODELS, unknown_name_hint

TIMM_PREFIX = "timm:"


def resolve_model(name: str, *, task: str) -> str:
    """Checks that ``name`` builds a model for ``task``; returns how ("registry"/"timm")."""
    if name.startswith(TIMM_PREFIX):
        import timm

        if task != "classification":
            raise UnknownNameError(f"'{name}': timm models by name are classifiers")
        arch = name[len(TIMM_PREFIX) :]
        if not timm.is_model(arch):
            guess = unknown_name_hint(arch, timm.list_models(), limit=10)
            raise UnknownNameError(f"unknown timm model '{arch}'", hint=guess)
        return "timm"
    if name.startswith(SMP_PREFIX):
        if task != "segmentation":
            raise UnknownNameError(f"'{name}': smp models are segmentation models")
        check_architecture(name[len(SMP_PREFIX) :])
        return "smp"
    if name not in MODELS:
        raise UnknownNameError(f"unknown model '{name}'", hint=model_names_hint(name, task))
    entry = MODELS.entry(name)
    if entry.tags.get("task") != task:
        raise UnknownNameError(
            f"model '{name}' is a {entry.tags.get('task')} model, not a {task} model",
            hint=model_names_hint(name, task),
        )
    return "registry"


def input_normalization(name: str, params: dict[str, Any]) -> str:
    """The input statistics a model expects (``imagenet`` unless its tags say otherwise).

    A detector naming its ``backbone`` in ``params`` expects that backbone's statistics.
    """
    kind = MODELS.entry(name).tags.get("normalize", "imagenet") if name in MODELS else "imagenet"
    backbone = params.get("backbone")
    if isinstance(backbone, str) and backbone in MODELS:
        kind = MODELS.entry(backbone).tags.get("normalize", kind)
    return str(kind)


def model_names(task: str | None = None) -> list[str]:
    """Registered model names, optionally only those of one task."""
    return [e.name for e in MODELS.entries() if task is None or e.tags.get("task") == task]


def model_names_hint(name: str, task: str) -> str:
    """'did you mean ... valid: ...' for a model name, with the timm: / smp: escape hatch."""
    hint = unknown_name_hint(name, model_names(task))
    if task == "segmentation":
        archs = ", ".join(SMP_PREFIX + arch for arch in smp_architectures())
        return hint + f", or a segmentation_models_pytorch architecture: {archs}"
    return hint + (", or any timm model as timm:<name>" if task == "classification" else "")


def build_model(
    name: str,
    *,
    task: str,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool | str | Path = False,
    **params: Any,
) -> nn.Module:
    """Builds a model by its registered name (or ``timm:<name>``, ``smp:<Arch>``).

    Args:
        name: A registered name (``mediscope list models``), ``timm:<name>``
            (classification) or ``smp:<Arch>`` (segmentation).
        task: ``classification``, ``segmentation`` or ``detection``.
        num_classes: Number of output classes.
        in_chans: Input channels (1 for grayscale, 3 for RGB).
        pretrained: False, True (download ImageNet weights) or a local weights file.
        **params: Keywords of the builder (e.g. ``drop_rate``; ``encoder`` for smp).

    Example:
        >>> model = build_model("simple_cnn", task="classification", num_classes=4)
    """
    how = resolve_model(name, task=task)
    builder: Callable[..., nn.Module]
    if how == "smp":
        builder = functools.partial(build_smp_model, name[len(SMP_PREFIX) :])
    elif how == "timm":
        from mediscope.models.classification.timm_models import build_timm_classifier

        builder = functools.partial(build_timm_classifier, name[len(TIMM_PREFIX) :])
    else:
        builder = MODELS.get(name)
    check_keywords(
        builder,
        params,
        owner=name,
        section="model.params",
        fixed=("num_classes", "in_chans", "pretrained"),
    )
    try:
        model: nn.Module = builder(
            num_classes=num_classes, in_chans=in_chans, pretrained=pretrained, **params
        )
    except (TypeError, ValueError) as exc:  # a value of the wrong type or range
        if not params:
            raise
        raise ConfigError(
            f"{name}: {exc}", where="model.params", hint="check the values of model.params"
        ) from None
    return model


__all__ = ["build_model", "model_names", "resolve_model"]
