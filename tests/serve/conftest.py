"""What the server tests serve: the session's tiny runs, an ONNX export of the detection
run (in a copy of it, so its metrics and card sit beside it), and a broken model file."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")

from fastapi.testclient import TestClient


@pytest.fixture(scope="session")
def detection_onnx(trained_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``COPY/export/model.onnx`` of the detection run, with its ``model_card.md``."""
    from mediscope.export import export_run

    skip = shutil.ignore_patterns("last.ckpt", "epoch=*.ckpt", "tensorboard")
    run = trained_runs["detection"]
    copy = tmp_path_factory.mktemp("serve-onnx") / "tiny-det" / run.name
    shutil.copytree(run, copy, ignore=skip)
    return export_run(copy, format="onnx").model


@pytest.fixture(scope="session")
def broken_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("serve-broken") / "broken.onnx"
    path.write_bytes(b"this is not an ONNX model")
    return path


@pytest.fixture(scope="session")
def served(
    trained_runs: dict[str, Path], detection_onnx: Path, broken_model: Path
) -> dict[str, Path]:
    """Model id -> source of the main test server."""
    return {
        "tiny": trained_runs["classification"],
        "tiny-seg": trained_runs["segmentation"],
        "tiny-det": trained_runs["detection"],
        "tiny-det-onnx": detection_onnx,
        "broken-onnx": broken_model,
    }


@pytest.fixture(scope="module")
def client(served: dict[str, Path]) -> Iterator[TestClient]:
    """A client of one server with every test model (queue 4, no token)."""
    from mediscope.serve.app import create_app

    app = create_app(list(served.values()), queue=4)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def images(tiny_crops: Path, tiny_lesions: Path, tiny_smears: Path) -> dict[str, list[Path]]:
    """Test images per task (none of them in a validation split)."""
    return {
        "classification": sorted((tiny_crops / "test").rglob("*.png"))[:4],
        "segmentation": sorted((tiny_lesions / "img" / "test").glob("*.jpg"))[:3],
        "detection": sorted((tiny_smears / "images" / "test").glob("*.png"))[:4],
    }
