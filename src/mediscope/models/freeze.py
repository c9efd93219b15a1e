"""Backbone freezing: ``freeze: all | none | N`` (the N first stages).

A model may say what its stages are (``backbone_stages()`` and ``classifier()``);
for timm models the stages come from ``feature_info`` and the head from
``get_classifier()``.
"""

from __future__ import annotations

from torch import nn


def _head_params(model: nn.Module) -> set[int]:
    head = None
    for method in ("classifier", "get_classifier"):
        getter = getattr(model, method, None)
        if callable(getter) and not isinstance(getter, nn.Module):
            head = getter()
            break
    if isinstance(head, nn.Module):
        return {id(p) for p in head.parameters()}
    return set()


def backbone_stages(model: nn.Module) -> list[list[nn.Parameter]]:
    """The backbone's parameters grouped in stages, input → output; the head excluded."""
    head = _head_params(model)
    own_stages = getattr(model, "backbone_stages", None)
    if callable(own_stages):
        return [[p for p in stage.parameters() if id(p) not in head] for stage in own_stages()]
    feature_info = getattr(model, "feature_info", None)
    modules = [f["module"] for f in feature_info] if isinstance(feature_info, list) else []
    stages: dict[int, list[nn.Parameter]] = {}
    current = 0
    for name, param in model.named_parameters():
        if id(param) in head:
            continue
        # A parameter inside a later feature module opens that stage; parameters in no
        # feature module (the stem, blocks between reductions) stay in the current one.
        index = next((i for i, m in enumerate(modules) if name.startswith(m + ".")), None)
        if index is not None and index > current:
            current = index
        stages.setdefault(current, []).append(param)
    return [stages[k] for k in sorted(stages)]


def apply_freeze(model: nn.Module, freeze: str | int) -> int:
    """Sets ``requires_grad`` per ``freeze``; returns the number of frozen parameters."""
    stages = backbone_stages(model)
    for param in model.parameters():
        param.requires_grad_(True)
    if freeze == "none" or freeze == 0:
        return 0
    count = len(stages) if freeze == "all" else min(int(freeze), len(stages))
    frozen = 0
    for stage in stages[:count]:
        for param in stage:
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen
