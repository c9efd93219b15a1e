"""The counting benchmark's helpers: truth boxes from YOLO labels, class-oracle counts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "counting.py"


def _counting():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("counting_benchmark", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_truth_boxes_are_pixels(tmp_path: Path) -> None:
    labels = tmp_path / "a.txt"
    labels.write_text("2 0.5 0.25 0.1 0.2\n0 0.1 0.1 0.2 0.2\n")
    truth = _counting().truth_boxes(labels, 200, 100)
    np.testing.assert_allclose(truth["boxes"], [[90, 15, 110, 35], [0, 0, 40, 20]])
    assert truth["labels"].tolist() == [2, 0]


def test_class_oracle_counts_keep_localisation_errors_only() -> None:
    truth = {
        "boxes": np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], float),
        "labels": np.array([0, 1, 1]),
    }
    found = {
        # the first object found with the wrong class, the second twice (a rod cut in two),
        # the third missed, and one detection of nothing
        "boxes": np.array(
            [[0, 0, 10, 10], [20, 0, 25, 10], [25, 0, 30, 10], [80, 80, 90, 90]], float
        ),
        "labels": np.array([1, 0, 1, 2]),
    }
    counts = _counting().class_oracle_counts(found, truth, 3)
    # the wrong class is fixed; the duplicate, the miss and the empty detection are not
    assert counts == [1, 2, 1]
    assert _counting().class_oracle_counts(
        found, {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}, 3
    ) == [1, 2, 1]
