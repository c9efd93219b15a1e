"""The onnxruntime session options of :class:`~mediscope.runtime.backends.OnnxBackend`."""

from __future__ import annotations

from pathlib import Path

import pytest

ort = pytest.importorskip("onnxruntime")


def test_all_graph_optimizations_and_no_spinning_threads(
    trained_runs: dict[str, Path], tmp_path: Path
) -> None:
    from mediscope.export import export_run
    from mediscope.runtime.backends import OnnxBackend

    model = export_run(trained_runs["classification"], output=tmp_path / "model.onnx").model
    options = OnnxBackend(model, threads=1).session.get_session_options()
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.intra_op_num_threads == 1
    for pool in ("intra_op", "inter_op"):
        assert options.get_session_config_entry(f"session.{pool}.allow_spinning") == "0"
