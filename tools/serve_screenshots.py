"""Takes the screenshots of the ``mediscope serve`` page that the docs show.

Usage::

    python tools/serve_screenshots.py DETECTION_RUN SEGMENTATION_RUN CLASSIFICATION_RUN \\
        --smear SMEAR.png --lesion LESION.jpg --crop CROP.png [--out docs/images]

The runs are those of ``make demo`` (``runs/demo-gram-stain/...``, ``runs/demo-lesions/...``,
``runs/demo-gram-crops/...``); the images come from its data (the large synthetic smear,
a test lesion, a test crop). The real server runs in a thread; the system's Chromium
(``apt-get install chromium``) draws the page. Each screenshot is written as
``serve-detection.png``, ``serve-segmentation.png`` and ``serve-classification.png``,
in fewer colours when that keeps it under 300 KB.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LIMIT = 300_000


def serve(runs: list[Path]) -> tuple[str, Any, list[dict[str, Any]]]:
    """Starts the server over ``runs``; returns its address, the server and its models."""
    import json
    import urllib.request

    import uvicorn

    from mediscope.serve.app import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(create_app([str(r) for r in runs]), port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/"
    with urllib.request.urlopen(url + "api/models") as response:
        models = json.loads(response.read())["models"]
    return url, server, models


def save_small(png: bytes, path: Path) -> None:
    """The screenshot as PNG, in fewer colours when it is over :data:`LIMIT` bytes."""
    import io

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.save(path, optimize=True)
    for colours in (256, 128, 64):
        if path.stat().st_size < LIMIT:
            break
        image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path} ({path.stat().st_size / 1e3:.0f} kB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("detection", type=Path)
    parser.add_argument("segmentation", type=Path)
    parser.add_argument("classification", type=Path)
    parser.add_argument("--smear", type=Path, required=True)
    parser.add_argument("--lesion", type=Path, required=True)
    parser.add_argument("--crop", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    url, server, models = serve([args.detection, args.segmentation, args.classification])
    ids = {m["task"]: m["id"] for m in models if not m.get("error")}
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(600_000)
        page.goto(url)
        page.wait_for_selector("#model:not([disabled])")
        shots = [
            ("detection", args.smear, "#counts"),
            ("segmentation", args.lesion, "#areas"),
            ("classification", args.crop, "#bars"),
        ]
        for task, image, ready in shots:
            page.select_option("#model", ids[task])
            page.set_input_files("#files", str(image))
            page.wait_for_selector(f"{ready}:visible")
            page.wait_for_timeout(500)
            page.evaluate("window.scrollTo(0, 0)")
            save_small(page.screenshot(), args.out / f"serve-{task}.png")
        browser.close()
    server.should_exit = True


if __name__ == "__main__":
    main()
