"""Copies of the session's tiny trained runs (``trained_runs``) that the export tests
write into (``RUN_DIR/export``), leaving the shared runs as other tests expect them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def _copy(run: Path, dst: Path) -> Path:
    # the best checkpoint is what export reads; the others would only take disk space
    skip = shutil.ignore_patterns("last.ckpt", "epoch=*.ckpt", "tensorboard")
    shutil.copytree(run, dst, ignore=skip)
    return dst


@pytest.fixture(scope="session")
def export_runs(
    trained_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Task name -> a copy of its tiny trained run."""
    base = tmp_path_factory.mktemp("export-runs")
    return {task: _copy(run, base / task / run.name) for task, run in trained_runs.items()}


@pytest.fixture(scope="session")
def classification_run(export_runs: dict[str, Path]) -> Path:
    return export_runs["classification"]


@pytest.fixture(scope="session")
def segmentation_run(export_runs: dict[str, Path]) -> Path:
    return export_runs["segmentation"]


@pytest.fixture(scope="session")
def detection_run(export_runs: dict[str, Path]) -> Path:
    return export_runs["detection"]
