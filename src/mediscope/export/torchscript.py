"""The graph as a TorchScript file (``torch.jit.trace``), its info as an extra file."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mediscope.errors import ConfigError
from mediscope.export.onnx_export import (
    as_tuple,
    check_inputs,
    example_input,
    input_shape,
    quiet_export,
    within_tolerance,
)
from mediscope.files import write_with
from mediscope.runtime.info import EXTRA_FILE, ModelInfo

#: The batch size traced: not 1, so that no size-1 axis is mistaken for a constant.
TRACE_BATCH = 2


def _differences(
    expected: tuple[torch.Tensor, ...], found: tuple[torch.Tensor, ...], names: list[str]
) -> dict[str, float]:
    result = {}
    for name, want, got in zip(names, expected, found, strict=True):
        same = want.shape == got.shape
        result[name] = float((want - got).abs().max()) if same and want.numel() else 0.0
        if not same:
            result[name] = float("inf")
    return result


def export_torchscript(graph: nn.Module, info: ModelInfo, target: Path) -> ModelInfo:
    """Traces ``graph`` and writes it to ``target`` (atomically), ``info`` inside.

    The traced module takes any batch size (and, for segmentation, any H and W); it is
    compared with the eager graph on other sizes than the traced one before it is
    written. The info is the extra file :data:`~mediscope.runtime.info.EXTRA_FILE`::

        extra = {"mediscope.json": ""}
        module = torch.jit.load(path, _extra_files=extra)

    Raises:
        ConfigError: when the traced module's outputs differ from the eager graph's.
    """
    names = list(info.outputs)
    with quiet_export(), torch.no_grad():
        traced = torch.jit.trace(graph, (example_input(info, TRACE_BATCH),), check_trace=False)
    differences: dict[str, float] = {}
    for inputs in [example_input(info, 1), *check_inputs(info, True, batch=TRACE_BATCH)]:
        with torch.no_grad():
            expected, found = as_tuple(graph(inputs)), as_tuple(traced(inputs))
        for name, value in _differences(expected, found, names).items():
            differences[name] = max(differences.get(name, 0.0), value)
    if not within_tolerance(differences, info):
        raise ConfigError(
            f"the traced model's outputs differ from the model's by up to {differences}",
            where="--format torchscript",
            hint="export --format onnx instead",
        )
    info.export = {
        "format": "torchscript",
        "dynamic_batch": True,
        "input_shape": input_shape(info, True),
        "exporter": f"torch.jit.trace, torch {torch.__version__.split('+')[0]}",
        "max_abs_difference": differences,
    }
    extra = {EXTRA_FILE: info.to_json()}
    with quiet_export():  # torch.jit.save is deprecated in favour of torch.export
        write_with(target, lambda tmp: torch.jit.save(traced, str(tmp), _extra_files=extra))
    return info


def read_info(path: Path) -> ModelInfo:
    """The :class:`ModelInfo` stored in a TorchScript file."""
    extra = {EXTRA_FILE: ""}
    with quiet_export():
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return ModelInfo.from_json(extra[EXTRA_FILE], where=str(path))
