"""The graph as an ONNX file, its :class:`ModelInfo` in the metadata, checked by onnxruntime.

torch 2.9 made the ``torch.export``-based exporter the default; it needs ``onnxscript``
and turns data-dependent shapes into guards. The TorchScript-based exporter
(``dynamo=False``) traces the same module the TorchScript export traces, needs only
``onnx``, and keeps the symbolic H and W of the segmentation graph, so it is the one
used here (it produces opsets up to 20).
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mediscope.errors import ConfigError
from mediscope.files import write_with
from mediscope.runtime.info import METADATA_KEY, ModelInfo

#: Lowest opset exported: 13 has per-axis Softmax and per-channel quantization.
MIN_OPSET = 13
#: The default ``--opset``.
DEFAULT_OPSET = 17
#: Largest difference allowed between the eager graph and the file (probabilities).
TOLERANCE = 1e-4
INPUT_NAME = "image"


def require(module: str) -> Any:
    """Imports ``onnx`` or ``onnxruntime``, or says how to install them."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"{module} is not installed",
            where="--format onnx",
            hint="pip install 'mediscope[onnx]' (onnx and onnxruntime)",
        ) from None


def max_opset() -> int:
    """The newest opset both torch's TorchScript-based exporter and onnx produce."""
    onnx = require("onnx")
    try:
        from torch.onnx import _constants

        torch_max = int(_constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
    except (ImportError, AttributeError):  # pragma: no cover - older torch
        torch_max = 17
    return min(torch_max, int(onnx.defs.onnx_opset_version()))


def check_opset(opset: int) -> int:
    """``opset`` if it can be produced here.

    Raises:
        ConfigError: naming the range this installation exports.
    """
    newest = max_opset()
    if not MIN_OPSET <= opset <= newest:
        raise ConfigError(
            f"opset {opset} cannot be exported here (torch {torch.__version__.split('+')[0]} "
            f"and onnx export opsets {MIN_OPSET} to {newest})",
            where="--opset",
            hint=f"choose --opset between {MIN_OPSET} and {newest} (default {DEFAULT_OPSET})",
        )
    return opset


def dynamic_axes(task: str, dynamic_batch: bool) -> dict[int, str]:
    """The symbolic axes of the input (and outputs): N if asked, H and W for segmentation.

    Example:
        >>> dynamic_axes("segmentation", False)
        {2: 'height', 3: 'width'}
    """
    axes = {0: "batch"} if dynamic_batch else {}
    if task == "segmentation":
        axes.update({2: "height", 3: "width"})
    return axes


def input_shape(info: ModelInfo, dynamic_batch: bool) -> list[int | str]:
    """The input's shape with names for the symbolic axes, e.g. ``[1, 3, 'height', 'width']``."""
    names = dynamic_axes(info.task, dynamic_batch)
    shape: list[int] = [1, info.channels, *info.image_size]
    return [names.get(axis, size) for axis, size in enumerate(shape)]


def example_input(info: ModelInfo, batch: int, *, shift: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """A reproducible normal batch of the model's input size (plus ``shift`` pixels)."""
    generator = torch.Generator().manual_seed(0)
    height, width = info.image_size[0] + shift[0], info.image_size[1] + shift[1]
    return torch.randn(batch, info.channels, height, width, generator=generator)


def check_inputs(info: ModelInfo, dynamic_batch: bool, *, batch: int) -> list[torch.Tensor]:
    """Inputs on which the file is compared with the eager graph: the traced size, and
    another batch size and (segmentation) an odd H and W where those are symbolic."""
    inputs = [example_input(info, batch)]
    other_batch = 3 if dynamic_batch else batch
    if info.task == "segmentation":
        inputs.append(example_input(info, other_batch, shift=(3, 5)))
    elif dynamic_batch:
        inputs.append(example_input(info, other_batch))
    return inputs


@contextmanager
def quiet_export() -> Iterator[None]:
    """Silences the tracer's and the legacy exporter's warnings (the graph is checked)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def as_tuple(outputs: Any) -> tuple[torch.Tensor, ...]:
    return tuple(outputs) if isinstance(outputs, tuple | list) else (outputs,)


def max_differences(
    expected: tuple[torch.Tensor, ...], found: list[np.ndarray], names: list[str]
) -> dict[str, float]:
    """Largest absolute difference per output (inf when the shapes differ)."""
    result = {}
    for name, want, got in zip(names, expected, found, strict=True):
        want_np = want.detach().numpy()
        ok = want_np.shape == got.shape
        result[name] = float(np.abs(want_np - got).max()) if ok and want_np.size else 0.0
        if not ok:
            result[name] = float("inf")
    return result


def within_tolerance(differences: dict[str, float], info: ModelInfo) -> bool:
    """Probabilities and scores within :data:`TOLERANCE`; boxes within 1e-4 of the side."""
    side = float(max(info.image_size))
    for name, value in differences.items():
        limit = TOLERANCE * side if name == "boxes" else TOLERANCE
        if not value <= limit:
            return False
    return True


def set_metadata(model: Any, info: ModelInfo) -> None:
    """Writes ``info`` (and a few readable keys) into the model's metadata_props."""
    import onnx

    props = {
        METADATA_KEY: info.to_json(),
        "task": info.task,
        "classes": ", ".join(info.classes),
        "input": f"{INPUT_NAME}: float32 N,C,H,W normalised (mean {info.mean}, std {info.std})",
        "outputs": ", ".join(info.outputs),
        "mediscope_version": info.mediscope_version,
    }
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    model.producer_name = "mediscope"
    model.producer_version = info.mediscope_version
    model.doc_string = f"mediscope {info.task} model ({', '.join(info.classes)})"


def session(model_bytes: bytes) -> Any:
    """An onnxruntime CPU session of a serialized model."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def _run_checked(model: Any, names: list[str], inputs: np.ndarray, opset: int) -> Any:
    """The model's outputs on onnxruntime; a model it cannot load or run is a
    ConfigError (an opset newer than it knows, typically)."""
    try:
        return session(model.SerializeToString()).run(names, {INPUT_NAME: inputs})
    except Exception as exc:  # onnxruntime raises its own exception classes
        ort = require("onnxruntime")
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ConfigError(
            f"onnxruntime {ort.__version__} cannot run the exported opset {opset} model ({text})",
            where="--opset",
            hint="choose a lower --opset, or upgrade onnxruntime",
        ) from None


def export_onnx(
    graph: nn.Module,
    info: ModelInfo,
    target: Path,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
) -> ModelInfo:
    """Exports ``graph`` to ``target`` (atomically) with ``info`` in its metadata.

    The file is run by onnxruntime on the example batch (and, where they are symbolic,
    another batch size and an odd H and W) and compared with the eager graph before it
    is written.

    Args:
        graph: :func:`~mediscope.export.graph.inference_graph`'s module.
        info: The model's info; its ``export`` facts are filled in.
        target: The ``.onnx`` file to write.
        opset: The ONNX opset.
        dynamic_batch: A symbolic batch axis (else N is 1).

    Returns:
        ``info`` with ``export`` filled in (format, opset, input shape, checked
        differences); without ``dynamic_batch``, its ``inference.batch_size`` is 1.

    Raises:
        ConfigError: onnx or onnxruntime missing, an opset out of range, or a file
            whose outputs differ from the eager graph's.
    """
    onnx = require("onnx")
    check_opset(opset)
    names = list(info.outputs)
    axes = dynamic_axes(info.task, dynamic_batch)
    batch = 2 if dynamic_batch else 1
    example = example_input(info, batch)
    with tempfile.TemporaryDirectory(prefix="mediscope-export-") as tmp, quiet_export():
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            graph,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_axes={name: axes for name in [INPUT_NAME, *names]} if axes else None,
            do_constant_folding=True,
        )
        model = onnx.load(str(path))
    onnx.checker.check_model(model)
    differences: dict[str, float] = {}
    for inputs in check_inputs(info, dynamic_batch, batch=batch):
        with torch.no_grad():
            expected = as_tuple(graph(inputs))
        found = _run_checked(model, names, inputs.numpy(), opset)
        for name, value in max_differences(expected, found, names).items():
            differences[name] = max(differences.get(name, 0.0), value)
    if not within_tolerance(differences, info):
        raise ConfigError(
            f"the ONNX file's outputs differ from the model's by up to {differences}",
            where="--opset",
            hint="try another --opset, or export --format torchscript",
        )
    if not dynamic_batch:
        # the file takes one image per run: the Predictor batches by this setting
        info.inference.batch_size = 1
    info.export = {
        "format": "onnx",
        "opset": opset,
        "dynamic_batch": dynamic_batch,
        "input_shape": input_shape(info, dynamic_batch),
        "exporter": f"torch {torch.__version__.split('+')[0]} (TorchScript-based), "
        f"onnx {onnx.__version__}",
        "max_abs_difference": differences,
    }
    set_metadata(model, info)
    write_with(target, lambda tmp: onnx.save(model, str(tmp)))
    return info


def read_info(path: Path) -> ModelInfo:
    """The :class:`ModelInfo` stored in an ONNX file's metadata."""
    onnx = require("onnx")
    model = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise ConfigError("the ONNX file holds no mediscope metadata", where=path)
    return ModelInfo.from_json(props[METADATA_KEY], where=str(path))
