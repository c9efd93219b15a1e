"""Multi-label classification: the npz reader (ChestMNIST layout), the catalog, and a
model that learns synthetic multi-label images, evaluated, predicted and exported."""

from __future__ import annotations

import hashlib
import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import mediscope
from mediscope import api
from mediscope.data import catalog
from mediscope.data.formats.npz import read_npz
from mediscope.errors import DataError
from mediscope.metrics.calibration import read_calibration
from mediscope.metrics.multilabel import multilabel_report
from mediscope.tasks import TASKS
from mediscope.tasks.validate import config_from_dict

#: Macro AUROC the tiny CNN must reach on the synthetic test images (chance: 0.5).
MIN_AUROC = 0.85
LABELS = ["square", "stripes", "red"]


def synthetic_images(n: int, seed: int, side: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Grey noise images with any of three findings: a bright square, horizontal
    stripes, a red tint; labels ``(n, 3)`` 0/1, each present in about half."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, (n, 3))
    images = rng.integers(40, 90, (n, side, side, 3)).astype(np.int16)
    for i, (square, stripes, red) in enumerate(labels):
        if square:
            y, x = rng.integers(2, side - 12, 2)
            images[i, y : y + 10, x : x + 10] += 120
        if stripes:
            images[i, ::4] += 70
        if red:
            images[i, :, :, 0] += 60
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_npz(path: Path, sizes: dict[str, int], *, grey: bool = False, width: int = 3) -> Path:
    """A MedMNIST-style file: ``<split>_images`` and ``<split>_labels`` (N, width)."""
    arrays: dict[str, np.ndarray] = {}
    for seed, (split, n) in enumerate(sizes.items()):
        images, labels = synthetic_images(n, seed)
        if width != 3:
            labels = np.random.default_rng(seed).integers(0, 2, (n, width))
        arrays[f"{split}_images"] = images[..., 0] if grey else images
        arrays[f"{split}_labels"] = labels.astype(np.uint8)
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def test_npz_reader_multilabel(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "chest.npz", {"train": 6, "val": 3, "test": 3}, grey=True, width=14)
    samples = read_npz(path, task="multilabel")
    assert samples.classes == [f"label_{j}" for j in range(14)]
    labels = np.load(path)["train_labels"]
    assert samples.samples[0].label_set == tuple(np.flatnonzero(labels[0]).tolist())
    assert [s.split for s in samples.samples].count("val") == 3
    named = read_npz(path, task="multilabel", classes=[f"f{j}" for j in range(14)])
    assert named.classes[13] == "f13"
    with pytest.raises(DataError, match="task: multilabel"):
        read_npz(path, task="classification")
    with pytest.raises(DataError, match="2 label names for 14"):
        read_npz(path, task="multilabel", classes=["a", "b"])


def test_catalog_marks_chestmnist_multilabel_and_3d_unsupported(cli: Any) -> None:
    assert catalog.get_dataset("chestmnist_64").task == "multilabel"
    assert catalog.get_dataset("pathmnist").task == "classification"
    assert catalog.get_dataset("nodulemnist3d").unsupported
    assert not catalog.get_dataset("chestmnist").unsupported
    listing = cli("data", "fetch", "--list")
    assert listing.code == 0, listing.err
    line = next(x for x in listing.out.splitlines() if x.startswith("nodulemnist3d "))
    assert "not supported" in line
    chest = next(x for x in listing.out.splitlines() if x.startswith("chestmnist "))
    assert "multilabel" in chest


def test_chestmnist_fetch_from_a_local_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog's ChestMNIST entry, served locally, fetched and read as multi-label."""
    www = tmp_path / "www" / "records" / "10519652" / "files"
    www.mkdir(parents=True)
    made = write_npz(www / "chestmnist.npz", {"train": 8, "val": 4, "test": 4}, width=14)
    md5 = hashlib.md5(made.read_bytes()).hexdigest()
    entry = catalog._medmnist_entry("chestmnist", "CC BY 4.0", 16, 28, md5)
    monkeypatch.setitem(catalog._CATALOG, "chestmnist", entry)
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        from mediscope.data.download import fetch

        result = fetch(
            "chestmnist", tmp_path / "data", mirror=f"http://127.0.0.1:{httpd.server_address[1]}"
        )
    finally:
        httpd.shutdown()
    samples = read_npz(result.path, task="multilabel")
    assert len(samples.classes) == 14 and len(samples) == 16


def _config(data: Path, runs: Path, **sections: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "task": "multilabel",
        "seed": 1,
        "data": {
            "format": "npz",
            "path": str(data),
            "classes": LABELS,
            "image_size": 32,
            "batch_size": 32,
            "num_workers": 0,
        },
        "model": {"name": "simple_cnn", "params": {"width": 16, "depth": 2}},
        "optimizer": {"name": "AdamW", "lr": 0.003},
        "trainer": {"max_epochs": 6},
        "logging": {"progress": "none"},
        "report": {"bootstrap": 50, "calibrate": "temperature"},
        "run": {"name": "multilabel", "dir": str(runs)},
    }
    config.update(sections)
    return config


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("multilabel")
    data = write_npz(root / "findings.npz", {"train": 320, "val": 96, "test": 96})
    config = config_from_dict(_config(data, root / "runs"))
    result = api.fit(config)
    metrics, _ = api.test(config, result.best_checkpoint)
    return config, result.run_dir, metrics, data


def test_task_is_registered() -> None:
    spec = TASKS.get("multilabel")
    assert spec.default_loss == "BCEWithLogitsLoss" and spec.default_monitor == "val/auroc_macro"


@pytest.mark.slow
def test_learns_synthetic_multilabel_images(learned: Any) -> None:
    _, run, metrics, _ = learned
    assert metrics["auroc_macro"] >= MIN_AUROC, metrics["auroc_macro"]
    for name in LABELS:
        assert f"ci_low/auroc/{name}" in metrics and f"threshold/{name}" in metrics
    # the metrics file agrees with the stored results and the thresholds chosen on val
    results = np.load(run / "test_results.npz")
    stored = read_calibration(run)
    assert stored is not None and stored.multilabel and stored.temperature > 0
    again = multilabel_report(results["labels"], results["probs"], LABELS, stored.thresholds)
    assert again["f1_macro"] == pytest.approx(metrics["f1_macro"], abs=1e-6)
    assert metrics["temperature"] == pytest.approx(stored.temperature)
    assert "ece_uncalibrated" in metrics
    assert (run / "plots" / "test_roc.png").is_file()
    assert (run / "plots" / "test_calibration.png").is_file()
    text = (run / "report.html").read_text()
    assert "ROC curves, one per label" in text and "auroc_macro" in text


@pytest.mark.slow
def test_predict_and_export(learned: Any, cli: Any, tmp_path: Path) -> None:
    _, run, _, _ = learned
    images, labels = synthetic_images(8, seed=7)
    predictor = mediscope.load(run)
    assert predictor.task == "multilabel" and set(predictor.info.thresholds) == set(LABELS)
    results = predictor.predict(list(images))
    assert isinstance(results, list)
    present = np.array([[name in r.labels for name in LABELS] for r in results])  # type: ignore[union-attr]
    assert (present == labels.astype(bool)).mean() >= 0.75
    # mediscope predict writes the labels present, joined by ';'
    folder = tmp_path / "images"
    folder.mkdir()
    from PIL import Image

    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i}.png")
    out = cli("predict", run, "--input", folder, "--output", tmp_path / "pred.csv")
    assert out.code == 0, out.err
    table = pd.read_csv(tmp_path / "pred.csv", keep_default_na=False)
    assert list(table.columns) == ["path", "label", *LABELS]
    first = results[0]
    assert table.loc[0, "label"] == ";".join(first.labels or [])  # type: ignore[union-attr]
    # the exported graph gives sigmoid probabilities and the same labels
    pytest.importorskip("onnxruntime")
    from mediscope.export import export_run

    export_run(run, format="onnx", output=tmp_path / "model.onnx")
    exported = mediscope.load(tmp_path / "model.onnx")
    assert exported.info.thresholds == predictor.info.thresholds
    a = exported.predict(images[0])
    b = predictor.predict(images[0])
    assert a.probabilities == pytest.approx(b.probabilities, abs=1e-4)  # type: ignore[union-attr]
    assert a.labels == b.labels  # type: ignore[union-attr]
    assert json.loads(a.to_json())["task"] == "multilabel"
