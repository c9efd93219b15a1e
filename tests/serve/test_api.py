"""``mediscope serve``'s JSON API through FastAPI's TestClient: every endpoint for each
task, the files against ``mediscope predict``'s, and every refusal (type, size, bomb,
unknown or failed model, result ids, token, a full queue)."""

from __future__ import annotations

import csv
import gc
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")

from fastapi.testclient import TestClient

from mediscope.runtime.results import mask_from_rle
from mediscope.serve.app import create_app
from mediscope.serve.limits import ApiError, ModelQueue, is_dicom, token_matches

TASK_OF = {"tiny": "classification", "tiny-seg": "segmentation", "tiny-det": "detection"}
TASK_OF["tiny-det-onnx"] = "detection"
FILES_OF = {
    "classification": {"image", "overlay", "cam", "csv", "json"},
    "segmentation": {"image", "overlay", "mask", "csv", "json"},
    "detection": {"image", "overlay", "csv", "json", "yolo"},
}


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def upload(path: Path) -> dict[str, Any]:
    return {"image": (path.name, path.read_bytes(), "application/octet-stream")}


def predict(client: TestClient, model: str, path: Path, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/predict", data={"model": model, **fields}, files=upload(path))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_error(response: Any, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) >= {"error", "hint"}
    assert "\n" not in body["error"]
    for word in words:
        assert word in body["error"], body
    return body


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# -- health, models, page ------------------------------------------------------------------


def test_health_models_page_and_docs(client: TestClient, served: dict[str, Path]) -> None:
    assert client.get("/api/health").json() == {"status": "ok", "version": "0.1.0", "models": 4}
    models = {m["id"]: m for m in client.get("/api/models").json()["models"]}
    assert set(models) == set(served)
    for ident, task in TASK_OF.items():
        model = models[ident]
        assert model["task"] == task and model["error"] is None
        assert model["format"] == ("onnx" if ident.endswith("onnx") else "eager")
        assert len(model["colors"]) == len(model["classes"]) > 0
        assert all(len(c) == 3 for c in model["colors"])
        assert len(model["image_size"]) == 2
        assert (model["score_threshold"] is not None) == (task == "detection")
        metrics = model["metrics"]
        assert metrics["split"] == "validation" and metrics["images"] > 0
        values = metrics["values"]
        assert values and all(set(v) == {"value", "low", "high"} for v in values.values())
        stored = json.loads(
            (served[ident] if ident != "tiny-det-onnx" else served[ident].parents[1])
            .joinpath("val_metrics.json")
            .read_text()
        )
        for key, value in values.items():
            assert value["low"] == stored[f"ci_low/{key}"] and value["value"] == stored[key]
        assert model["card"].startswith(
            f"# Model card: {'tiny-det' if ident.endswith('onnx') else ident}"
        )
    assert "## Exported model" in models["tiny-det-onnx"]["card"]  # the file's own card
    assert "## Exported model" not in models["tiny-det"]["card"]
    assert models["tiny"]["cam"] is True and models["tiny-det-onnx"]["cam"] is False
    broken = models["broken-onnx"]
    assert broken["task"] is None and "not an ONNX model" in broken["error"]
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/health", "/api/models", "/api/predict", "/api/batch.csv"):
        assert path in paths
        assert all(op.get("summary") for op in paths[path].values())


# -- predict and files, every task ------------------------------------------------------------


@pytest.mark.parametrize("ident", list(TASK_OF))
def test_predict_and_files(client: TestClient, ident: str, images: dict[str, list[Path]]) -> None:
    task = TASK_OF[ident]
    path = images[task][0]
    fields = {"cam": "true"} if task == "classification" else {}
    body = predict(client, ident, path, **fields)
    with Image.open(path) as original:
        width, height = original.size
    assert body["model"] == ident and body["task"] == task
    assert body["image"] == {"name": path.name, "width": width, "height": height}
    assert set(body["urls"]) == FILES_OF[task]
    result = body["result"]
    assert result["task"] == task and result["path"] == path.name
    files = {}
    for key, url in body["urls"].items():
        assert url == f"/api/results/{body['id']}/{url.rsplit('/', 1)[1]}"
        response = client.get(url)
        assert response.status_code == 200, (key, response.text)
        assert response.headers["cache-control"] == "no-store"
        files[key] = response.content
    shown = Image.open(io.BytesIO(files["image"]))
    assert shown.size == (width, height) and shown.mode in ("RGB", "L")
    overlay = Image.open(io.BytesIO(files["overlay"]))
    assert overlay.size == (width, height)
    rows = read_csv(files["csv"].decode())
    table = client.get("/api/batch.csv", params={"ids": body["id"]}).text
    if task != "detection":  # one row per image: the result's own CSV
        assert table == files["csv"].decode()
    else:
        assert read_csv(table)[0]["total"] == str(sum(result["counts"].values()))
    if task == "classification":
        assert result["cam_shape"] == [height, width]
        assert Image.open(io.BytesIO(files["cam"])).size == (width, height)
        assert rows == [
            {"path": path.name, "label": result["label"]}
            | {c: str(round(p, 6)) for c, p in result["probabilities"].items()}
        ]
        assert json.loads(files["json"])["label"] == result["label"]
    elif task == "segmentation":
        mask = Image.open(io.BytesIO(files["mask"]))
        assert mask.mode == "P"
        expected = mask_from_rle(result["rle"], result["classes"])
        np.testing.assert_array_equal(np.asarray(mask), expected)
        assert rows[0]["mask"] == f"masks/{path.stem}.png"
        share = float(rows[0]["area_fraction/lesion"])
        assert share == pytest.approx(result["fractions"]["lesion"], abs=1e-6)
    else:
        coco = json.loads(files["json"])
        assert {"images", "categories", "annotations"} <= set(coco)
        assert coco["images"][0]["file_name"] == path.name
        assert [c["name"] for c in coco["categories"]] == result["classes"]


def test_predict_16_bit_tiff_and_dicom(
    client: TestClient, images: dict[str, list[Path]], tmp_path: Path
) -> None:
    grey = np.asarray(Image.open(images["classification"][0]).convert("L"), dtype=np.uint16)
    deep = (grey * 200 + 1000).astype(np.uint16)  # 16-bit, not within 0..255
    tiff = tmp_path / "deep.tif"
    Image.fromarray(deep).save(tiff)
    body = predict(client, "tiny", tiff)
    shown = np.asarray(Image.open(io.BytesIO(client.get(body["urls"]["image"]).content)))
    assert shown.dtype == np.uint8 and shown.max() == 255 and shown.min() == 0  # own range

    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds.Modality = "OT"
    ds.Rows, ds.Columns = deep.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    ds.PixelData = deep.tobytes()
    dicom = tmp_path / "scan.bin"  # the content says DICOM, not the name
    ds.save_as(dicom, enforce_file_format=True)
    assert is_dicom(dicom.read_bytes()) and pydicom is not None
    body = predict(client, "tiny", dicom)
    assert body["image"]["width"] == deep.shape[1]
    from_dicom = np.asarray(Image.open(io.BytesIO(client.get(body["urls"]["image"]).content)))
    np.testing.assert_array_equal(from_dicom, shown)  # the same 8-bit image either way


# -- detection: low scores, threshold ----------------------------------------------------------


def test_detection_returns_low_scores_and_files_follow_the_threshold(
    client: TestClient, images: dict[str, list[Path]]
) -> None:
    body = predict(client, "tiny-det-onnx", images["detection"][0])
    models = {m["id"]: m for m in client.get("/api/models").json()["models"]}
    default = models["tiny-det-onnx"]["score_threshold"]
    assert body["threshold"] == body["result"]["threshold"] == default
    scores = np.array(body["result"]["scores"])
    assert len(scores) and scores.min() < default  # the page filters in the browser
    assert scores.min() >= min(default, 0.01)
    kept = np.array(body["result"]["class_indices"])[scores >= default]
    counts = np.bincount(kept, minlength=len(body["result"]["classes"]))
    assert list(body["result"]["counts"].values()) == counts.tolist()
    for threshold in (float(np.median(scores)), float(scores.max()), 0.0, 1.0):
        expected = int((scores >= threshold).sum())
        rows = read_csv(client.get(body["urls"]["csv"], params={"threshold": threshold}).text)
        boxes = [row for row in rows if row["class"]]
        assert len(boxes) == expected
        assert all(float(row["score"]) >= threshold for row in boxes)
        labels = client.get(body["urls"]["yolo"], params={"threshold": threshold}).text
        assert len(labels.splitlines()) == expected
        coco = client.get(body["urls"]["json"], params={"threshold": threshold}).json()
        assert len(coco["annotations"]) == expected
        table = read_csv(
            client.get("/api/batch.csv", params={"ids": body["id"], "threshold": threshold}).text
        )
        assert int(table[0]["total"]) == expected
    asked = float(np.quantile(scores, 0.9))
    again = predict(client, "tiny-det-onnx", images["detection"][0], threshold=str(asked))
    assert again["threshold"] == asked
    assert len(again["result"]["scores"]) == len(scores)  # the floor is min(asked, 0.01)
    assert sum(again["result"]["counts"].values()) == int((scores >= asked).sum())


# -- the batch table against mediscope predict -------------------------------------------------


def batch_rows(
    client: TestClient, model: str, paths: list[Path], **params: Any
) -> list[dict[str, str]]:
    ids = [predict(client, model, path)["id"] for path in paths]
    response = client.get("/api/batch.csv", params={"ids": ",".join(ids), **params})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return read_csv(response.text)


def by_name(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [row | {"path": Path(row["path"]).name} for row in rows]


def test_batch_csv_equals_predict_files(
    client: TestClient,
    served: dict[str, Path],
    images: dict[str, list[Path]],
    cli: Any,
    tmp_path: Path,
) -> None:
    paths = images["detection"]
    out = tmp_path / "onnx"
    assert (
        cli("predict", served["tiny-det-onnx"], "--input", paths[0].parent, "--output", out).code
        == 0
    )
    expected = (out / "counts.csv").read_text().splitlines()[0]
    rows = batch_rows(client, "tiny-det-onnx", paths)
    assert ",".join(rows[0]) == expected  # the same columns, in order
    assert rows == by_name(read_csv((out / "counts.csv").read_text()))
    # the run folder, at a threshold where this tiny detector finds boxes
    # (between two scores: predict keeps boxes scoring above its threshold, the table
    # counts those scoring at least the threshold)
    scores = np.unique(predict(client, "tiny-det", paths[0])["result"]["scores"])
    middle = len(scores) // 2
    threshold = float(scores[middle] + scores[middle + 1]) / 2
    out = tmp_path / "eager"
    code = cli(
        "predict",
        served["tiny-det"],
        "--input",
        paths[0].parent,
        "--output",
        out,
        "--set",
        f"inference.score_threshold={threshold}",
    ).code
    assert code == 0
    written = by_name(read_csv((out / "counts.csv").read_text()))
    assert sum(int(row["total"]) for row in written) > 0
    assert batch_rows(client, "tiny-det", paths, threshold=threshold) == written

    paths = images["classification"]
    out = tmp_path / "labels.csv"
    inputs = [arg for path in paths for arg in ("--input", path)]
    assert cli("predict", served["tiny"], *inputs, "--output", out).code == 0
    rows = batch_rows(client, "tiny", paths)
    written = by_name(read_csv(out.read_text()))
    assert [row["label"] for row in rows] == [row["label"] for row in written]
    assert list(rows[0]) == list(written[0])
    for got, want in zip(rows, written, strict=True):
        for name in list(want)[2:]:
            assert float(got[name]) == pytest.approx(float(want[name]), abs=2e-6)


def test_batch_csv_refuses_mixed_models_and_unknown_ids(
    client: TestClient, images: dict[str, list[Path]]
) -> None:
    one = predict(client, "tiny", images["classification"][0])["id"]
    two = predict(client, "tiny-det-onnx", images["detection"][0])["id"]
    assert_error(client.get("/api/batch.csv", params={"ids": f"{one},{two}"}), 400, "2 models")
    assert_error(client.get("/api/batch.csv", params={"ids": f"{one},nosuchresult00000000"}), 404)
    assert_error(client.get("/api/batch.csv", params={"ids": ","}), 400, "no result ids")


# -- refusals ----------------------------------------------------------------------------------


def test_unreadable_uploads_are_400_by_content(
    client: TestClient, images: dict[str, list[Path]], tmp_path: Path
) -> None:
    text = tmp_path / "notes.png"  # an image's name, a text's content
    text.write_text("patient notes, not an image\n" * 20)
    body = assert_error(
        client.post("/api/predict", data={"model": "tiny"}, files=upload(text)), 400, "notes.png"
    )
    assert "content" in body["error"] and "DICOM" in body["hint"]
    whole = images["detection"][0].read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole[: len(whole) // 2])
    assert_error(
        client.post("/api/predict", data={"model": "tiny"}, files=upload(cut)), 400, "cut.png"
    )
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert_error(
        client.post("/api/predict", data={"model": "tiny"}, files=upload(empty)), 400, "empty"
    )
    svg = tmp_path / "drawing.jpg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    assert_error(client.post("/api/predict", data={"model": "tiny"}, files=upload(svg)), 400)


def png_claiming(width: int, height: int) -> bytes:
    """A 1 x 1 PNG whose header says ``width x height`` (a decompression bomb's header)."""
    data = bytearray(png_bytes(Image.new("L", (1, 1))))
    data[16:20], data[20:24] = width.to_bytes(4, "big"), height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bombs_are_refused_from_the_header(client: TestClient) -> None:
    forged = png_claiming(100_000, 100_000)
    response = client.post(
        "/api/predict", data={"model": "tiny"}, files={"image": ("bomb.png", forged, "image/png")}
    )
    body = assert_error(response, 413, "bomb.png", "10000000000 pixels", "MAX_IMAGE_PIXELS")
    assert "tiles" in body["hint"]
    real = png_bytes(Image.new("1", (10_000, 10_000)))  # 10^8 pixels in a few kB
    assert len(real) < 100_000
    response = client.post(
        "/api/predict", data={"model": "tiny"}, files={"image": ("zeros.png", real, "image/png")}
    )
    assert_error(response, 413, "zeros.png", "10000 x 10000", "MAX_IMAGE_PIXELS")


def test_unknown_and_failed_models(client: TestClient, images: dict[str, list[Path]]) -> None:
    path = images["classification"][0]
    body = assert_error(
        client.post("/api/predict", data={"model": "nope"}, files=upload(path)), 404, "nope"
    )
    assert "tiny-det-onnx" in body["hint"]
    assert_error(
        client.post("/api/predict", data={"model": "broken-onnx"}, files=upload(path)),
        409,
        "failed to load",
        "not an ONNX model",
    )
    assert_error(client.post("/api/predict", data={"model": "tiny"}), 422, "image")
    assert_error(
        client.post(
            "/api/predict", data={"model": "tiny-det-onnx", "threshold": "2"}, files=upload(path)
        ),
        422,
        "threshold",
    )
    assert_error(
        client.post(
            "/api/predict", data={"model": "tiny-det-onnx", "cam": "true"}, files=upload(path)
        ),
        400,
        "Grad-CAM",
    )


def test_result_ids_and_file_names_never_reach_the_file_system(
    client: TestClient, images: dict[str, list[Path]]
) -> None:
    rid = predict(client, "tiny-seg", images["segmentation"][0])["id"]
    assert_error(
        client.get("/api/results/AAAAAAAAAAAAAAAAAAAAAAAA/image.png"), 404, "no such result"
    )
    assert_error(client.get(f"/api/results/{rid}/labels.txt"), 404, "segmentation result has no")
    assert_error(client.get(f"/api/results/{rid}/cam.png"), 404)
    assert_error(client.get(f"/api/results/{rid}/config.yaml"), 404)
    for url in (
        "/api/results/..%2F..%2F..%2Fetc%2Fpasswd/image.png",
        "/api/results/%2e%2e/image.png",
        f"/api/results/{rid}/..%2F..%2Fconfig.yaml",
        f"/api/results/{rid}/%2Fetc%2Fpasswd",
        "/api/results/....................../result.csv",
        "/api/batch.csv?ids=..%2F..%2Fetc%2Fpasswd",
        "/api/batch.csv?ids=%2Fetc%2Fpasswd",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "error" in response.json() and "root:" not in response.text


def test_upload_size_limit(served: dict[str, Path], images: dict[str, list[Path]]) -> None:
    limit_mb = 0.02  # 20 kB of file
    app = create_app([served["tiny-det-onnx"]], max_upload_mb=limit_mb)
    noise = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    medium = png_bytes(Image.fromarray(noise))  # about 49 kB: past the file limit only
    large = png_bytes(Image.fromarray(np.tile(noise, (2, 2, 1))))  # past the body limit too
    limit = int(limit_mb * 2**20)
    assert limit < len(medium) < limit + 64 * 1024 < len(large)
    small = images["classification"][0]
    assert len(small.read_bytes()) < limit
    with TestClient(app) as client:
        predict(client, "tiny-det-onnx", small)
        for data in (medium, large):
            response = client.post(
                "/api/predict",
                data={"model": "tiny-det-onnx"},
                files={"image": ("big.png", data, "image/png")},
            )
            assert_error(response, 413, "0.02 MB")

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            for _ in range(40):
                yield b"x" * 4096

        response = client.post(
            "/api/predict",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert_error(response, 413)


# -- the token ---------------------------------------------------------------------------------


def test_token(served: dict[str, Path], images: dict[str, list[Path]]) -> None:
    app = create_app([served["tiny-det-onnx"]], token="s3cret")
    path = images["detection"][0]
    with TestClient(app) as client:
        assert client.get("/api/health").status_code == 200  # open: says nothing of the data
        assert client.get("/").status_code == 200
        assert client.get("/docs").status_code == 200
        body = assert_error(client.get("/api/models"), 401, "token")
        assert "Bearer" in body["hint"]
        assert_error(client.get("/api/models", headers={"Authorization": "Bearer nope"}), 401)
        assert_error(client.get("/api/models", params={"token": "nope"}), 401)
        assert_error(client.get("/api/models", headers={"Authorization": "Basic s3cret"}), 401)
        assert_error(
            client.post("/api/predict", data={"model": "tiny-det-onnx"}, files=upload(path)), 401
        )
        good = {"Authorization": "Bearer s3cret"}
        assert client.get("/api/models", headers=good).status_code == 200
        assert client.get("/api/models", params={"token": "s3cret"}).status_code == 200
        response = client.post(
            "/api/predict",
            data={"model": "tiny-det-onnx"},
            files=upload(path),
            params={"token": "s3cret"},
        )
        assert response.status_code == 200
        url = response.json()["urls"]["image"]
        assert_error(client.get(url), 401)
        assert client.get(url, headers=good).status_code == 200
        batch = f"/api/batch.csv?ids={response.json()['id']}"
        assert_error(client.get(batch), 401)
        assert client.get(batch + "&token=s3cret").status_code == 200
    assert token_matches("a", "bearer a", None) and not token_matches("a", "Bearer ab", "b")


# -- the queue and a burst ---------------------------------------------------------------------


def test_full_queue_answers_429_and_the_loop_stays_free(
    served: dict[str, Path], images: dict[str, list[Path]]
) -> None:
    app = create_app([served["tiny-det-onnx"]], queue=1)
    model = app.state.registry.get("tiny-det-onnx")
    release = threading.Event()
    path = images["detection"][0]
    with TestClient(app) as client:
        running = model.queue.submit(lambda: release.wait(30))  # the model is busy
        waiting: list[int] = []
        worker = threading.Thread(
            target=lambda: waiting.append(
                client.post(
                    "/api/predict", data={"model": "tiny-det-onnx"}, files=upload(path)
                ).status_code
            )
        )
        worker.start()
        deadline = time.monotonic() + 10
        while model.queue.pending < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert model.queue.pending == 2  # one running, one waiting: the queue is full
        start = time.perf_counter()
        assert client.get("/api/health").status_code == 200
        assert time.perf_counter() - start < 2  # the event loop is not blocked
        response = client.post("/api/predict", data={"model": "tiny-det-onnx"}, files=upload(path))
        body = assert_error(response, 429, "busy")
        assert int(response.headers["Retry-After"]) == body["retry_after"] >= 1
        release.set()
        running.result(timeout=10)
        worker.join(timeout=30)
        assert waiting == [200]
        assert model.queue.pending == 0


def test_model_queue_bounds_its_waiting_work() -> None:
    queue = ModelQueue("m", size=0)
    gate = threading.Event()
    first = queue.submit(lambda: gate.wait(10))
    with pytest.raises(ApiError) as refused:
        queue.submit(lambda: None)
    assert refused.value.status == 429 and "Retry-After" in refused.value.headers
    gate.set()
    assert first.result(timeout=10) is True
    assert queue.submit(lambda: 3).result(timeout=10) == 3
    queue.close()


def rss() -> int:
    psutil = pytest.importorskip("psutil")
    gc.collect()
    return int(psutil.Process().memory_info().rss)


#: Growth of the process's memory allowed over a burst of 40 small predictions: the
#: results store keeps at most 64 results (a 128 px image, boxes and made files each,
#: well under 1 MB), so 150 MB only catches a leak of whole buffers per request.
BURST_RSS_BOUND = 150 * 2**20


def test_burst_of_requests_gets_200_or_429_and_memory_stays_bounded(
    served: dict[str, Path], images: dict[str, list[Path]]
) -> None:
    app = create_app([served["tiny-det-onnx"]], queue=2)
    paths = images["detection"]
    with TestClient(app) as client:

        def one(i: int) -> int:
            path = paths[i % len(paths)]
            response = client.post(
                "/api/predict", data={"model": "tiny-det-onnx"}, files=upload(path)
            )
            if response.status_code == 200:
                assert client.get(response.json()["urls"]["overlay"]).status_code == 200
            else:
                assert response.json()["error"] == "busy" and "Retry-After" in response.headers
            return response.status_code

        for i in range(4):  # warm up: sessions, allocators, thread pools
            one(i)
        before = rss()
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(one, range(40)))
        after = rss()
        assert set(statuses) <= {200, 429} and statuses.count(200) >= 3
        assert app.state.registry.get("tiny-det-onnx").queue.pending == 0
        assert len(app.state.store) <= 64
    assert after - before < BURST_RSS_BOUND, (before, after)


# -- the command -------------------------------------------------------------------------------


def test_serve_without_sources_is_one_line_exit_2(cli: Any, tmp_path: Path) -> None:
    result = cli("serve")
    assert result.code == 2
    assert result.err.startswith("error: ") and len(result.err.strip().splitlines()) == 1
    assert "no models to serve" in result.err
    result = cli("serve", tmp_path / "missing")
    assert result.code == 2 and "not found" in result.err
    result = cli("serve", tmp_path)
    assert result.code == 2 and "no run folders" in result.err


def test_serve_prints_the_address_and_warns_without_token(
    cli: Any, served: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    result = cli("serve", served["tiny-det-onnx"], "--host", "0.0.0.0", "--port", "8123")
    assert result.code == 0, result.err
    assert "warning: listening on 0.0.0.0 without --token" in result.err
    assert "http://0.0.0.0:8123/" in result.out and "1 of 1 models loaded" in result.out
    assert calls[-1]["host"] == "0.0.0.0" and calls[-1]["port"] == 8123
    result = cli("serve", served["tiny-det-onnx"], served["broken-onnx"], "--token", "T0k")
    assert result.code == 0 and "warning" not in result.err
    assert "http://127.0.0.1:8000/?token=T0k" in result.out
    assert "broken-onnx: failed to load" in result.out and "1 of 2 models loaded" in result.out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_runs_uvicorn(served: dict[str, Path]) -> None:
    port = free_port()
    command = [
        sys.executable,
        "-c",
        "import sys; from mediscope.cli.main import main; sys.exit(main())",
        "serve",
        str(served["tiny-det-onnx"]),
        "--port",
        str(port),
        "--token",
        "abc",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        health = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"{base}/api/health", timeout=2) as response:
                    health = json.loads(response.read())
                    break
            except OSError:
                time.sleep(0.2)
        assert health == {"status": "ok", "version": "0.1.0", "models": 1}, process.poll()
        request = urllib.request.Request(f"{base}/api/models?token=abc")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read())["models"][0]["id"] == "tiny-det-onnx"
    finally:
        process.terminate()
        out, err = process.communicate(timeout=30)
    assert f"mediscope serve: {base}/?token=abc" in out, (out, err)


def test_onnx_server_imports_no_training_stack(
    served: dict[str, Path], images: dict[str, list[Path]]
) -> None:
    code = f"""
import sys
from fastapi.testclient import TestClient
from mediscope.serve.app import create_app
client = TestClient(create_app([{str(served["tiny-det-onnx"])!r}]))
with open({str(images["detection"][0])!r}, "rb") as handle:
    data = handle.read()
response = client.post("/api/predict", data={{"model": "tiny-det-onnx"}},
                       files={{"image": ("a.png", data, "image/png")}})
assert response.status_code == 200, response.text
assert client.get(response.json()["urls"]["overlay"]).status_code == 200
heavy = ["torch", "lightning", "timm", "pandas", "matplotlib", "albumentations"]
print(",".join(m for m in heavy if m in sys.modules))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
