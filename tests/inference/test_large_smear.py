"""``mediscope predict`` on a whole 4,912 x 3,684 smear stays within 4 GB of RAM."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from helpers import tiny_detection_config
from mediscope import api
from mediscope.tasks.validate import load_config

SMEAR = (3684, 4912)  # height, width of the Clinical Bacteria DataSet's raw images
LIMIT = 4 << 30


@pytest.mark.slow
def test_predict_on_a_raw_size_smear_within_4_gb(tiny_smears: Path, tmp_path: Path) -> None:
    raw = tiny_detection_config(tiny_smears, tmp_path / "runs")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    run = api.fit(load_config(path)).run_dir
    # a smear-sized image: the small synthetic smear tiled over the raw size
    tile = np.asarray(Image.open(next((tiny_smears / "large" / "images").glob("*.png"))))
    reps = (SMEAR[0] // tile.shape[0] + 1, SMEAR[1] // tile.shape[1] + 1, 1)
    smear = np.tile(tile, reps)[: SMEAR[0], : SMEAR[1]]
    image = tmp_path / "smear.png"
    Image.fromarray(smear).save(image)
    command = [
        sys.executable, "-m", "mediscope.cli.main", "predict", str(run),
        "--input", str(image), "--output", str(tmp_path / "out"),
        "--set", "inference.window=256", "--set", "inference.batch_size=8",
    ]  # fmt: skip
    child = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    assert child.returncode == 0, child.stderr
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(f"predict on a {SMEAR[1]}x{SMEAR[0]} smear: peak RSS {peak / (1 << 30):.2f} GiB")
    assert peak < LIMIT
    overlay = Image.open(tmp_path / "out" / "overlays" / "smear.jpg")
    assert overlay.size[0] == SMEAR[1] and overlay.size[1] > SMEAR[0]  # a legend band above
    counts = (tmp_path / "out" / "counts.csv").read_text().splitlines()
    assert len(counts) == 2
