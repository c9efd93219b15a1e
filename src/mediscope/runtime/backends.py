"""Where the network runs: onnxruntime, TorchScript, or the eager PyTorch model.

A backend maps a normalised batch ``(N, C, H, W)`` float32 to the named outputs of the
graph contract (:mod:`mediscope.runtime.info`). Only :class:`OnnxBackend` is free of
torch: the other two import it when they are built.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mediscope.errors import ConfigError
from mediscope.runtime.info import EXTRA_FILE, METADATA_KEY, ModelInfo
from mediscope.runtime.pipeline import Detections

#: The outputs of each task's graph, in order.
OUTPUTS = {
    "classification": ["probabilities"],
    "multilabel": ["probabilities"],
    "segmentation": ["probabilities"],
    "detection": ["boxes", "scores"],
}


class Backend(Protocol):
    """Runs the network on a batch."""

    #: ``eager``, ``torchscript`` or ``onnx``.
    name: str

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's named outputs for a normalised ``(N, C, H, W)`` float32 batch."""
        ...


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(
            "running an ONNX model needs onnxruntime",
            where="onnxruntime",
            hint="pip install 'mediscope[runtime]'",
        ) from None
    return onnxruntime


class OnnxBackend:
    """An exported ONNX model on onnxruntime (CPU, or CUDA when asked and available).

    Args:
        path: The ``.onnx`` file.
        device: ``cpu`` or ``cuda``.
        threads: Intra-op threads; None lets onnxruntime choose (all cores).

    Raises:
        ConfigError: a file that is not ONNX, lacks mediscope's metadata, or uses an
            opset this onnxruntime cannot run; one line naming the file.
    """

    name = "onnx"

    def __init__(self, path: str | Path, *, device: str = "cpu", threads: int | None = None):
        ort = _onnxruntime()
        self.path = Path(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: warnings are not the user's business
        # All graph optimizations (constant folding, Conv+BN+activation fusion, layout
        # transforms); onnxruntime's default, stated. Measured on resnet18 at 224 px, one
        # thread: 41 ms per image with them, 65 ms without.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning: a spinning pool takes the cores from
        # the predictor's NumPy and OpenCV work between calls and from other processes;
        # on a 2-core machine under load, resnet18 at 2 threads took 42 ms per image
        # without spinning and 83 ms with it.
        for pool in ("intra_op", "inter_op"):
            options.add_session_config_entry(f"session.{pool}.allow_spinning", "0")
        if threads is not None:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        if not self.path.is_file():
            raise ConfigError("model file not found", where=self.path, hint="check the path")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception classes
            raise _load_error(self.path, exc) from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ConfigError(
                "an ONNX model without mediscope's metadata",
                where=self.path,
                hint="export the model with `mediscope export RUN_DIR --format onnx`",
            )
        self.info = ModelInfo.from_json(meta[METADATA_KEY], where=str(self.path))
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        #: The batch size the file was exported for (an int), or None for any.
        self.fixed_batch = first.shape[0] if isinstance(first.shape[0], int) else None
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        step = self.fixed_batch
        if step is None or len(batch) == step:
            outputs = self.session.run(None, {self.input_name: batch})
            return dict(zip(self.output_names, outputs, strict=True))
        # a file exported without --dynamic-batch takes its own batch size only
        parts = [
            self.session.run(None, {self.input_name: batch[i : i + step]})
            for i in range(0, len(batch), step)
        ]
        return {
            name: np.concatenate([part[k] for part in parts])
            for k, name in enumerate(self.output_names)
        }


def _load_error(path: Path, exc: Exception) -> ConfigError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "opset" in text.lower():
        return ConfigError(
            f"this onnxruntime cannot run the model's opset ({text[:200]})",
            where=path,
            hint="export again with a lower --opset, or upgrade onnxruntime",
        )
    return ConfigError(
        f"not an ONNX model onnxruntime can load ({text[:200]})",
        where=path,
        hint="give a file written by `mediscope export`",
    )


class TorchScriptBackend:
    """An exported TorchScript model (``torch.jit.load``); torch is imported here."""

    name = "torchscript"

    def __init__(self, path: str | Path, *, device: str = "cpu"):
        import torch

        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError("model file not found", where=self.path, hint="check the path")
        extra = {EXTRA_FILE: ""}
        try:
            with warnings.catch_warnings():  # TorchScript's deprecation notice, at every load
                warnings.simplefilter("ignore", FutureWarning)
                self.module = torch.jit.load(
                    str(self.path), map_location=device, _extra_files=extra
                )
        except Exception as exc:  # torch raises RuntimeError, ValueError, zip errors, ...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"not a TorchScript model ({first[:200]})",
                where=self.path,
                hint="give a file written by `mediscope export --format torchscript`",
            ) from None
        if not extra[EXTRA_FILE]:
            raise ConfigError(
                "a TorchScript model without mediscope's metadata",
                where=self.path,
                hint="export the model with `mediscope export RUN_DIR --format torchscript`",
            )
        text = extra[EXTRA_FILE]
        self.info = ModelInfo.from_json(
            text.decode() if isinstance(text, bytes) else text, where=str(self.path)
        )
        self.device = device
        self.module.eval()

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.module(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
        values = out if isinstance(out, tuple | list) else (out,)
        names = OUTPUTS[self.info.task]
        return {n: v.float().cpu().numpy() for n, v in zip(names, values, strict=True)}


class TorchBackend:
    """The eager PyTorch model of a run (a restored task's network).

    Classification and segmentation return softmax probabilities, multi-label
    classification sigmoid ones, as the exported graph does. A detector detects with
    its own decoding and NMS (:meth:`detect`), which is
    the reference the exported dense graph plus NumPy NMS is tested against.

    Args:
        model: The network (``task.model``).
        task: The task name.
        device: Where it runs.
    """

    name = "eager"

    def __init__(self, model: Any, *, task: str, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.task = task
        self.device = device

    def _tensor(self, batch: np.ndarray) -> Any:
        import torch

        return torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        if self.task == "detection":
            raise ConfigError(
                "an eager detector has no dense outputs; use detect()", where="backend"
            )
        with torch.inference_mode():
            logits = self.model(self._tensor(batch))
        if self.task == "multilabel":
            return {"probabilities": logits.float().sigmoid().cpu().numpy()}
        return {"probabilities": logits.float().softmax(dim=1).cpu().numpy()}

    def detect(
        self,
        batch: np.ndarray,
        *,
        score_threshold: float,
        iou_threshold: float,
        max_detections: int,
    ) -> list[Detections]:
        """Boxes (input pixels), scores and labels per image of the batch."""
        import torch

        with torch.inference_mode():
            found = self.model.predict(
                self._tensor(batch),
                score_threshold=score_threshold,
                iou_threshold=iou_threshold,
                max_detections=max_detections,
            )
        return [
            (
                r["boxes"].float().cpu().numpy(),
                r["scores"].float().cpu().numpy(),
                r["labels"].cpu().numpy().astype(np.int64),
            )
            for r in found
        ]
