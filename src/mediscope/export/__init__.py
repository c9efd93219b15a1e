"""Exporting a run's model: ONNX or TorchScript files that carry their metadata, an int8
ONNX model with its measured accuracy change, and a model card.

``mediscope export RUN_DIR`` calls :func:`export_run`; :func:`inference_graph` is the
module every format traces; the metadata it carries is the run's
:func:`mediscope.inference.model_info.model_info`.
"""

from __future__ import annotations

from mediscope.export.api import ExportResult, export_run
from mediscope.export.graph import inference_graph

__all__ = ["ExportResult", "export_run", "inference_graph"]
