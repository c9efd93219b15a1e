"""Tiny trained runs of each task, shared by the export tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from helpers import tiny_config, tiny_detection_config, tiny_segmentation_config
from mediscope import api
from mediscope.tasks.validate import load_config


def _fit(raw: dict, runs: Path) -> Path:
    path = runs / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return api.fit(load_config(path)).run_dir


@pytest.fixture(scope="session")
def classification_run(tiny_crops: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs-classification")
    return _fit(tiny_config(tiny_crops, runs), runs)


@pytest.fixture(scope="session")
def segmentation_run(tiny_lesions: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs-segmentation")
    return _fit(tiny_segmentation_config(tiny_lesions, runs), runs)


@pytest.fixture(scope="session")
def detection_run(tiny_smears: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs-detection")
    return _fit(tiny_detection_config(tiny_smears, runs), runs)
