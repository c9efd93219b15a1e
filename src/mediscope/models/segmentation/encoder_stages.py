"""An smp encoder's parameters grouped in stages, for ``freeze: N``.

smp encoders come from many families (torchvision ResNets, EfficientNets, timm models
behind ``tu-``, mix transformers) and no attribute lists the stages of every one. What
they share is their output: the input, then one feature map per stage (strides 2, 4,
8, 16, 32). So one forward pass of a small random image records the order in which the
layers run and which layer produced each feature map; stage ``k`` holds the parameters
of the layers that ran after feature ``k - 1`` was produced, up to feature ``k``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _run_order(
    encoder: nn.Module, probe: torch.Tensor
) -> tuple[list[Any], list[tuple[nn.Module, torch.Tensor | None]]]:
    """Runs ``encoder`` on ``probe``; returns its output and its layers in finishing order.

    Each layer counts once, when its first call returns, with its output if that is a
    plain tensor (containers return the list of feature maps, which is no feature map).
    The outputs are kept, so no later tensor can reuse their memory.
    """
    order: list[tuple[nn.Module, torch.Tensor | None]] = []
    seen: set[int] = set()

    def record(module: nn.Module, _inputs: Any, output: Any) -> None:
        if id(module) not in seen:
            seen.add(id(module))
            order.append((module, output if isinstance(output, torch.Tensor) else None))

    handles = [m.register_forward_hook(record) for m in encoder.modules() if m is not encoder]
    training = encoder.training
    try:
        encoder.eval()  # batch norm statistics must not see the probe
        with torch.no_grad():
            features = encoder(probe)
    finally:
        for handle in handles:
            handle.remove()
        encoder.train(training)
    return list(features) if isinstance(features, (list, tuple)) else [features], order


def _same_values(output: torch.Tensor | None, feature: torch.Tensor) -> bool:
    """Whether ``output`` is ``feature``, or a copy of it in another memory layout."""
    if output is None or output.numel() != feature.numel():
        return False
    if output.data_ptr() == feature.data_ptr():
        return True
    # A transformer's tokens reshaped to a map, or channels-last permuted to channels
    # first, hold the same numbers in another order.
    return torch.equal(output.flatten().sort().values, feature.flatten().sort().values)


def _boundaries(
    features: list[Any], order: list[tuple[nn.Module, torch.Tensor | None]], probe: torch.Tensor
) -> list[int]:
    """For each feature map, the position in ``order`` of the last layer that made it."""
    bounds: list[int] = []
    start = 0
    for feature in features:
        if not isinstance(feature, torch.Tensor) or feature.numel() == 0:
            continue  # smp's empty placeholder for a stride an encoder lacks
        if feature.data_ptr() == probe.data_ptr():
            continue  # most encoders return their input first, as the stride-1 map
        # The last layer with this output: an in-place ReLU after a batch norm owns it.
        hits = [i for i in range(start, len(order)) if _same_values(order[i][1], feature)]
        if hits:
            bounds.append(hits[-1])
            start = hits[-1] + 1
    return bounds


def stages_by_feature(encoder: nn.Module, *, in_chans: int, side: int) -> list[list[str]]:
    """Names of the encoder's parameters in stages, input → output.

    Args:
        encoder: An smp encoder (returns a list of feature maps); it is run once, in
            eval mode and without gradients.
        in_chans: Its input channels.
        side: Side of the square probe image (a multiple of the encoder's stride).

    Returns:
        One list of parameter names per stage that owns parameters. Layers running
        after the last feature map join the last stage. A feature map that no layer
        output, not even in another layout (a ViT's tokens without the class token),
        merges its stage into the next; an encoder that cannot run on the probe is a
        single stage.
    """
    names = {id(p): n for n, p in encoder.named_parameters()}
    first = next(encoder.parameters())
    # Random values (from a private generator: the global seed stays untouched) make
    # every layer's output distinct, so copies of a feature map can be recognised.
    generator = torch.Generator().manual_seed(0)
    probe = torch.rand(1, in_chans, side, side, generator=generator)
    probe = probe.to(device=first.device, dtype=first.dtype)
    try:
        features, order = _run_order(encoder, probe)
    except Exception:  # any failure of a foreign encoder on the probe
        return [list(names.values())]
    bounds = _boundaries(features, order, probe)
    stages: list[list[str]] = [[] for _ in range(max(len(bounds), 1))]
    placed: set[str] = set()
    for position, (module, _) in enumerate(order):
        # Layers after the last feature map (a head the encoder still runs) join its stage.
        stage = next((k for k, b in enumerate(bounds) if position <= b), max(len(bounds) - 1, 0))
        for param in module.parameters(recurse=False):
            name = names.get(id(param))
            if name is not None and name not in placed:  # a shared layer counts once
                placed.add(name)
                stages[stage].append(name)
    # The encoder's own parameters and those of layers the probe did not reach.
    stages[-1].extend(n for n in names.values() if n not in placed)
    return [stage for stage in stages if stage]
