"""The page of ``mediscope serve`` in a real browser (Chromium through Playwright).

The real server runs with uvicorn in a thread over the session's tiny trained runs; the
page uploads synthetic images, draws the results, and its downloads are compared with
what ``mediscope predict`` writes for the same image. Without Chromium these tests fail
(they never skip): ``apt-get install chromium``, or MEDISCOPE_CHROMIUM=/path/to/chrome.
Screenshots of each page go to a temporary folder (MEDISCOPE_SCREENSHOTS=DIR keeps them).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 120_000


@dataclass
class Served:
    """A running server: its address and the model id of each task."""

    url: str
    ids: dict[str, str]
    models: list[dict[str, Any]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read().decode("utf-8"))


@pytest.fixture(scope="module")
def start_server() -> Iterator[Any]:
    """Starts ``create_app(sources, **options)`` with uvicorn in a thread; stops them all."""
    import uvicorn

    from mediscope.serve.app import create_app

    servers: list[tuple[Any, threading.Thread]] = []

    def start(sources: list[Path], **options: Any) -> Served:
        app = create_app([str(s) for s in sources], **options)
        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/"
        token = options.get("token")
        query = f"?token={token}" if token else ""
        models = get_json(f"{url}api/models{query}")["models"]
        ids = {m["task"]: m["id"] for m in models if not m.get("error")}
        return Served(url, ids, models)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture(scope="module")
def page_server(start_server: Any, trained_runs: dict[str, Path]) -> Served:
    """The server over the three tiny runs."""
    tasks = ("detection", "segmentation", "classification")
    return start_server([trained_runs[task] for task in tasks])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium (the system's), driven by Playwright; a clear failure when it is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need Playwright: pip install -e '.[dev]'")
    executable = os.environ.get("MEDISCOPE_CHROMIUM") or shutil.which("chromium")
    if not executable or not Path(executable).is_file():
        pytest.fail(
            "Chromium is missing: the page's tests drive a real browser. Install it with "
            "`apt-get install chromium` (.ci/run does), or set MEDISCOPE_CHROMIUM to a "
            "Chrome or Chromium executable"
        )
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: MEDISCOPE_SCREENSHOTS, or a temporary folder."""
    wanted = os.environ.get("MEDISCOPE_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page; fails the test when the page's JavaScript throws."""
    context = browser.new_context(viewport={"width": 1400, "height": 950}, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, f"the page's JavaScript failed: {errors}"


# -- helpers ---------------------------------------------------------------------------------


def open_page(page: Any, served: Served, task: str, query: str = "") -> None:
    page.goto(served.url + query)
    page.wait_for_selector("#model:not([disabled])")
    page.select_option("#model", served.ids[task])


def upload(page: Any, files: Any) -> dict[str, Any]:
    """Sends files through the file chooser; returns the last predict response's JSON."""
    with page.expect_response(lambda r: r.url.endswith("/api/predict")) as response:
        page.set_input_files("#files", files)
    return dict(response.value.json())


def drop(page: Any, path: Path) -> dict[str, Any]:
    """Drops a file on the drop zone (as a drag from the desktop does); returns the JSON."""
    import base64

    data = base64.b64encode(path.read_bytes()).decode("ascii")
    script = """([name, data]) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name));
        const zone = document.getElementById("drop");
        zone.dispatchEvent(new DragEvent("dragover", { bubbles: true, dataTransfer: transfer }));
        zone.dispatchEvent(new DragEvent("drop", { bubbles: true, dataTransfer: transfer }));
    }"""
    with page.expect_response(lambda r: r.url.endswith("/api/predict")) as response:
        page.evaluate(script, [path.name, data])
    return dict(response.value.json())


def table(page: Any, selector: str) -> dict[str, list[str]]:
    """A table's body rows: first cell's text -> the other cells' texts."""
    rows = page.eval_on_selector_all(
        f"{selector} tbody tr",
        "rows => rows.map(r => Array.from(r.children).map(c => c.textContent.trim()))",
    )
    return {row[0]: row[1:] for row in rows}


def number(text: str) -> float:
    return float(text.replace(",", "").replace("%", "").strip())


def read_csv(path: Path | str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))


def download(page: Any, selector: str, folder: Path, name: str) -> Path:
    with page.expect_download() as info:
        page.click(selector)
    target = folder / name
    info.value.save_as(target)
    return target


def counts_at(result: dict[str, Any], threshold: float) -> dict[str, int]:
    counts = dict.fromkeys(result["classes"], 0)
    for name, score in zip(result["class_names"], result["scores"], strict=True):
        if score >= threshold:
            counts[name] += 1
    return counts


def between(low: float, high: float) -> float:
    """A short decimal strictly between two scores (no box scores exactly it)."""
    for digits in range(3, 17):
        value = float(f"{(low + high) / 2:.{digits}g}")
        if low < value < high:
            return value
    return (low + high) / 2


def shown_counts(page: Any) -> dict[str, int]:
    return {name: int(number(cells[0])) for name, cells in table(page, "#counts").items()}


def canvas_pixels(page: Any) -> np.ndarray:
    png = page.locator("#viewer").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


# -- detection -------------------------------------------------------------------------------


def test_detection_boxes_threshold_downloads_match_the_cli(
    page_server: Served,
    page: Any,
    trained_runs: dict[str, Path],
    tiny_smears: Path,
    cli: Any,
    tmp_path: Path,
    shots: Path,
) -> None:
    smear = sorted((tiny_smears / "large" / "images").glob("*.png"))[0]
    open_page(page, page_server, "detection")
    predicts: list[str] = []
    page.on("request", lambda r: predicts.append(r.url) if "/api/predict" in r.url else None)
    body = upload(page, str(smear))
    page.wait_for_selector("#counts")
    result = body["result"]
    default = float(body["threshold"])
    width, height = Image.open(smear).size
    assert page.inner_text("#result-title").startswith(f"{smear.name} · {width} × {height} px")

    # the table and the canvas show the boxes scoring at least the model's threshold
    assert shown_counts(page) == counts_at(result, default)
    drawn = sum(counts_at(result, default).values())
    assert page.get_attribute("#viewer", "data-boxes") == str(drawn)
    assert page.inner_text("#count-total") == str(drawn)
    page.screenshot(path=shots / "detection.png", full_page=True)

    # a threshold between two scores: the counts change at once, with no new request
    scores = sorted(set(result["scores"]))
    assert len(scores) >= 2, f"the detector found too few boxes to test thresholds: {scores}"
    threshold = between(scores[len(scores) // 2 - 1], scores[len(scores) // 2])
    expected = counts_at(result, threshold)
    assert sum(expected.values()) != drawn
    page.fill("#threshold-number", str(threshold))
    assert shown_counts(page) == expected
    assert page.get_attribute("#viewer", "data-boxes") == str(sum(expected.values()))
    # the slider by keyboard: to the top (1.0), then to the floor the server kept boxes at
    page.focus("#threshold")
    page.keyboard.press("End")
    assert shown_counts(page) == counts_at(result, 1.0)
    page.keyboard.press("Home")
    assert sum(shown_counts(page).values()) == len(result["scores"])
    page.fill("#threshold-number", str(threshold))
    assert shown_counts(page) == expected
    assert len(predicts) == 1, predicts

    # a class switched off leaves the counts and hides its boxes
    present = [name for name, n in expected.items() if n]
    page.uncheck(f"#show-{result['classes'].index(present[0])}")
    assert page.get_attribute("#viewer", "data-boxes") == str(
        sum(expected.values()) - expected[present[0]]
    )
    assert shown_counts(page) == expected
    page.check(f"#show-{result['classes'].index(present[0])}")

    # zoom by buttons and wheel, pan by dragging
    level = page.inner_text("#zoom-level")
    page.click("#zoom-in")
    assert number(page.inner_text("#zoom-level")) > number(level)
    box = page.locator("#viewer").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    zoomed = number(page.inner_text("#zoom-level"))
    page.mouse.wheel(0, 300)
    assert number(page.inner_text("#zoom-level")) < zoomed
    before = canvas_pixels(page)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 80, box["y"] + box["height"] / 2 + 40)
    page.mouse.up()
    assert np.abs(canvas_pixels(page) - before).mean() > 1
    page.click("#zoom-fit")
    page.screenshot(path=shots / "detection-threshold.png", full_page=True)

    # the counts at this threshold equal the CLI's counts.csv at the same threshold, the
    # boxes its predictions.csv
    got = read_csv(download(page, "a[data-kind=counts]", tmp_path, "counts.csv"))
    boxes = read_csv(download(page, "a[data-kind=csv]", tmp_path, "boxes.csv"))
    run = trained_runs["detection"]
    done = cli(
        "predict",
        run,
        "--input",
        smear,
        "--output",
        tmp_path / "cli",
        "--set",
        f"inference.score_threshold={threshold}",
    )
    assert done.code == 0, done.err
    want = read_csv(tmp_path / "cli" / "counts.csv")
    assert len(got) == len(want) == 1
    assert Path(got[0].pop("path")).name == Path(want[0].pop("path")).name == smear.name
    assert got[0] == want[0]
    assert {k: int(v) for k, v in got[0].items() if k != "total"} == expected
    want_boxes = read_csv(tmp_path / "cli" / "predictions.csv")
    assert len(boxes) == len(want_boxes) == sum(expected.values())
    for row in [*boxes, *want_boxes]:
        assert Path(row.pop("path")).name == smear.name
    assert boxes == want_boxes

    # the other downloads: COCO JSON, YOLO labels, the overlay
    for kind in ("json", "yolo", "overlay"):
        assert page.locator(f"a[data-kind={kind}]").count() == 1, kind
    coco = json.loads(download(page, "a[data-kind=json]", tmp_path, "coco.json").read_text())
    assert coco
    overlay = Image.open(download(page, "a[data-kind=overlay]", tmp_path, "overlay.png"))
    assert overlay.size == (width, height)

    # a second image: the batch table and its CSV equal the CLI's counts of both images
    second = sorted((tiny_smears / "images" / "test").glob("*.png"))[0]
    upload(page, str(second))
    page.wait_for_function("document.querySelectorAll('#batch-table tbody tr').length === 2")
    rows = table(page, "#batch-table")
    assert set(rows) == {smear.name, second.name}
    batch = read_csv(download(page, "#batch-csv", tmp_path, "batch.csv"))
    done = cli(
        "predict",
        run,
        "--input",
        smear,
        "--input",
        second,
        "--output",
        tmp_path / "cli-batch",
        "--set",
        f"inference.score_threshold={threshold}",
    )
    assert done.code == 0, done.err
    want_rows = {
        Path(r.pop("path")).name: r for r in read_csv(tmp_path / "cli-batch" / "counts.csv")
    }
    got_rows = {Path(r.pop("path")).name: r for r in batch}
    assert got_rows == want_rows
    for name, cells in rows.items():  # the page's table says the same
        assert [int(number(c)) for c in cells] == [int(v) for v in want_rows[name].values()]
    assert len(predicts) == 2


# -- segmentation ----------------------------------------------------------------------------


def test_segmentation_overlay_opacity_and_areas(
    page_server: Served,
    page: Any,
    trained_runs: dict[str, Path],
    tiny_lesions: Path,
    cli: Any,
    tmp_path: Path,
    shots: Path,
) -> None:
    image = sorted((tiny_lesions / "img" / "test").iterdir())[0]
    open_page(page, page_server, "segmentation")
    body = drop(page, image)
    page.wait_for_selector("#areas")
    result = body["result"]
    assert page.get_attribute("#viewer", "data-layer") == "mask"

    # the areas: pixels and shares per class, as the server measured them
    rows = table(page, "#areas")
    assert list(rows) == result["classes"]
    for name, (pixels, share) in rows.items():
        assert int(number(pixels)) == result["areas"][name]
        assert number(share) == pytest.approx(100 * result["fractions"][name], abs=0.006)
    assert (
        sum(int(number(p)) for p, _ in rows.values())
        == body["image"]["width"] * body["image"]["height"]
    )

    # the opacity slider: from clear to opaque; the mask shows where it holds objects
    page.focus("#opacity")
    page.keyboard.press("Home")
    assert page.get_attribute("#viewer", "data-opacity") == "0"
    clear = canvas_pixels(page)
    page.keyboard.press("End")
    assert page.get_attribute("#viewer", "data-opacity") == "1"
    opaque = canvas_pixels(page)
    objects = sum(result["areas"][name] for name in result["classes"][1:])
    assert (np.abs(opaque - clear).max() > 30) == (objects > 0)
    page.keyboard.press("Home")
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    assert float(page.get_attribute("#viewer", "data-opacity")) == pytest.approx(0.5)
    page.screenshot(path=shots / "segmentation.png", full_page=True)

    # the shares equal the CLI's predictions.csv; the downloads are there
    done = cli(
        "predict", trained_runs["segmentation"], "--input", image, "--output", tmp_path / "cli"
    )
    assert done.code == 0, done.err
    want = read_csv(tmp_path / "cli" / "predictions.csv")[0]
    for name in result["classes"]:
        assert result["fractions"][name] == pytest.approx(
            float(want[f"area_fraction/{name}"]), abs=1e-6
        )
    mask = Image.open(download(page, "a[data-kind=mask]", tmp_path, "mask.png"))
    assert mask.size == (body["image"]["width"], body["image"]["height"])
    page_csv = read_csv(download(page, "a[data-kind=csv]", tmp_path, "areas.csv"))
    assert len(page_csv) == 1
    assert page.locator("a[data-kind=overlay]").count() == 1


# -- classification --------------------------------------------------------------------------


def test_classification_bars_and_gradcam(
    page_server: Served,
    page: Any,
    trained_runs: dict[str, Path],
    tiny_crops: Path,
    cli: Any,
    tmp_path: Path,
    shots: Path,
) -> None:
    folder = sorted(p for p in (tiny_crops / "test").iterdir() if p.is_dir())[0]
    image = sorted(folder.iterdir())[0]
    open_page(page, page_server, "classification")
    assert page.is_checked("#cam")
    body = upload(page, str(image))
    page.wait_for_selector("#bars")
    result = body["result"]

    # one bar per class, longest first, each with its probability
    bars = page.eval_on_selector_all(
        "#bars li",
        "items => items.map(li => [li.querySelector('.bar-name').textContent.trim(),"
        " li.querySelector('.bar-value').textContent.trim(),"
        " parseFloat(li.querySelector('.bar-fill').style.width)])",
    )
    assert sorted(name for name, _, _ in bars) == sorted(result["probabilities"])
    for name, text, width in bars:
        p = result["probabilities"][name]
        assert number(text) == pytest.approx(100 * p, abs=0.051)
        assert width == pytest.approx(100 * p, abs=0.01)
    assert [w for _, _, w in bars] == sorted((w for _, _, w in bars), reverse=True)
    assert result["label"] in page.inner_text(".verdict")

    # the Grad-CAM heatmap over the image, with its opacity slider
    assert "cam" in body["urls"]
    assert page.get_attribute("#viewer", "data-layer") == "cam"
    assert page.is_visible("#layer-option")
    page.focus("#opacity")
    page.keyboard.press("Home")
    clear = canvas_pixels(page)
    page.keyboard.press("End")
    assert np.abs(canvas_pixels(page) - clear).max() > 30
    page.click("#zoom-fit")
    page.screenshot(path=shots / "classification.png", full_page=True)

    # the same label and probabilities as the CLI
    done = cli(
        "predict", trained_runs["classification"], "--input", image, "--output", tmp_path / "p.csv"
    )
    assert done.code == 0, done.err
    want = read_csv(tmp_path / "p.csv")[0]
    assert want["label"] == result["label"]
    for name, p in result["probabilities"].items():
        assert p == pytest.approx(float(want[name]), abs=1e-4)
    got = read_csv(download(page, "a[data-kind=csv]", tmp_path, "label.csv"))
    assert got[0]["label"] == result["label"]


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("smear.png", b"this is not an image at all"),  # unreadable, named like an image
        ("report.png", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"),  # a PDF
    ],
)
def test_a_bad_file_shows_the_servers_message(
    page_server: Served, page: Any, tiny_crops: Path, shots: Path, name: str, content: bytes
) -> None:
    open_page(page, page_server, "classification")
    with page.expect_response(lambda r: r.url.endswith("/api/predict")) as response:
        page.set_input_files("#files", {"name": name, "mimeType": "image/png", "buffer": content})
    assert response.value.status == 400
    message = response.value.json()["error"]
    alert = page.locator(".job.failed [role=alert]")
    alert.wait_for()
    assert message in alert.inner_text()
    assert "Traceback" not in page.content()
    assert page.is_hidden("#page-error")
    # the page goes on: a good image after the bad one
    good = sorted(next((tiny_crops / "test").iterdir()).iterdir())[0]
    upload(page, str(good))
    page.wait_for_selector("#bars")
    if name == "smear.png":
        page.screenshot(path=shots / "error.png", full_page=True)


def test_a_busy_server_says_when_to_retry(page_server: Served, page: Any, tiny_crops: Path) -> None:
    # the contract's 429 answer, given by the browser (a full queue is hard to time)
    open_page(page, page_server, "classification")
    page.route(
        "**/api/predict",
        lambda route: route.fulfill(
            status=429,
            headers={"Retry-After": "7"},
            content_type="application/json",
            body=json.dumps({"error": "busy", "retry_after": 7}),
        ),
    )
    image = sorted(next((tiny_crops / "test").iterdir()).iterdir())[0]
    page.set_input_files("#files", str(image))
    alert = page.locator(".job.failed [role=alert]")
    alert.wait_for()
    assert "busy" in alert.inner_text() and "7 s" in alert.inner_text()
    page.unroute("**/api/predict")
    with page.expect_response(lambda r: r.url.endswith("/api/predict")):
        page.click(".job.failed button:has-text('Retry')")
    page.wait_for_selector("#bars")
    assert page.locator(".job.done").count() == 1


def test_token_upload_limit_and_a_model_that_failed_to_load(
    start_server: Any, page: Any, trained_runs: dict[str, Path], tmp_path: Path, shots: Path
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    served = start_server(
        [trained_runs["classification"], broken], token="s3cret-token", max_upload_mb=1
    )
    failed = [m for m in served.models if m.get("error")]
    assert len(failed) == 1

    # without the token: the page says what is missing
    page.goto(served.url)
    page.locator("#page-error").wait_for()
    assert "token" in page.inner_text("#page-error").lower()

    # with it: the models; the broken one shows why and takes no images
    open_page(page, served, "classification", "?token=s3cret-token")
    page.select_option("#model", failed[0]["id"])
    alert = page.locator("#model-info [role=alert]")
    alert.wait_for()
    assert failed[0]["error"] in alert.inner_text()
    assert page.is_disabled("#files")
    page.screenshot(path=shots / "failed-model.png", full_page=True)

    # an image over the limit: a clear message, not a blank page
    page.select_option("#model", served.ids["classification"])
    noise = np.random.default_rng(0).integers(0, 256, (900, 900, 3), dtype=np.uint8)
    large = tmp_path / "large.png"
    Image.fromarray(noise).save(large)
    assert large.stat().st_size > 1_100_000
    page.set_input_files("#files", str(large))
    alert = page.locator(".job.failed [role=alert]")
    alert.wait_for()
    assert "large" in alert.inner_text().lower()


# -- many images, every format, and a whole smear ------------------------------------------------


def write_dicom(path: Path, stored: np.ndarray) -> Path:
    """A small uncompressed 16-bit grey DICOM file (needs pydicom, a dev dependency)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = stored.astype(np.uint16).tobytes()
    try:
        ds.save_as(path, enforce_file_format=True)  # pydicom 3
    except TypeError:  # pydicom 2
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    return path


def test_many_images_at_once_in_every_format(
    page_server: Served, page: Any, tiny_crops: Path, tmp_path: Path
) -> None:
    folder = sorted(p for p in (tiny_crops / "test").iterdir() if p.is_dir())[0]
    crop = np.asarray(Image.open(sorted(folder.iterdir())[0]).convert("RGB"))
    grey16 = (crop.mean(axis=2) * 257).astype(np.uint16)  # the crop's 16-bit grey twin
    tiff = tmp_path / "crop16.tif"
    Image.fromarray(grey16).save(tiff)
    assert Image.open(tiff).mode.startswith("I;16")
    dicom = write_dicom(tmp_path / "crop.dcm", grey16)
    jpeg = tmp_path / "crop.jpg"
    Image.fromarray(crop).save(jpeg, quality=95)
    png = tmp_path / "crop.png"
    Image.fromarray(crop).save(png)
    files = [png, jpeg, tiff, dicom]

    open_page(page, page_server, "classification")
    page.set_input_files("#files", [str(f) for f in files])
    page.wait_for_function(
        f"document.querySelectorAll('.job.done, .job.failed').length === {len(files)}"
    )
    assert page.locator(".job.failed").all_inner_texts() == []
    rows = table(page, "#batch-table")
    assert list(rows) == [f.name for f in files]  # in the order they were sent
    batch = read_csv(download(page, "#batch-csv", tmp_path, "batch.csv"))
    assert [Path(r["path"]).name for r in batch] == [f.name for f in files]
    assert [r["label"] for r in batch] == [cells[0] for cells in rows.values()]
    # the newest result is on show, the DICOM's pixels as the server read them
    height, width = grey16.shape
    page.wait_for_function(
        f"document.querySelector('#result-title').textContent.startsWith('{dicom.name}')"
    )
    assert f"{width} × {height} px" in page.inner_text("#result-title")
    # another is a click away, and stays on show
    page.click(f".job:has-text('{tiff.name}') button:has-text('Show')")
    page.wait_for_function(
        f"document.querySelector('#result-title').textContent.startsWith('{tiff.name}')"
    )
    assert page.get_attribute("#viewer", "data-layer") == "cam"


@pytest.mark.slow
def test_a_whole_smear_of_4912_by_3684_pixels(
    page_server: Served, page: Any, tiny_smears: Path, tmp_path: Path, shots: Path
) -> None:
    small = np.asarray(Image.open(sorted((tiny_smears / "large" / "images").glob("*.png"))[0]))
    reps = (-(-3684 // small.shape[0]), -(-4912 // small.shape[1]), 1)
    smear = tmp_path / "whole-smear.jpg"
    Image.fromarray(np.tile(small[:, :, :3], reps)[:3684, :4912]).save(smear, quality=92)

    open_page(page, page_server, "detection")
    page.set_input_files("#files", str(smear))
    page.wait_for_selector(".job.predicting progress")  # the progress shows while it runs
    page.wait_for_selector("#counts")
    assert "4912 × 3684 px" in page.inner_text("#result-title")
    drawn = int(page.get_attribute("#viewer", "data-boxes") or "-1")
    assert drawn == int(page.inner_text("#count-total"))
    page.click("#zoom-one")
    assert page.inner_text("#zoom-level") == "100 %"
    page.screenshot(path=shots / "whole-smear.png", full_page=True)
