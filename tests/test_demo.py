"""The embedded demo end to end; it is also the classification learning test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mediscope.demo import demo_data, lesion_data, smear_data


@pytest.mark.slow
def test_demo_learns_gram_crops(cli, tmp_path: Path) -> None:
    result = cli("demo", "--cache", tmp_path / "cache", "--runs", tmp_path / "runs")
    assert result.code == 0, result.err
    runs = [Path(x.removeprefix("run: ")) for x in result.out.splitlines() if x.startswith("run: ")]
    assert len(runs) == 3
    run, seg_run, det_run = runs
    # it ends with the command that serves the three models on the web page
    last = result.out.strip().splitlines()[-1]
    assert last == f"see them in a browser: mediscope serve {run} {seg_run} {det_run}"
    assert run.parent.parent == tmp_path / "runs"
    assert seg_run.parent.name == "demo-lesions"
    test = json.loads((run / "test_metrics.json").read_text())
    val = json.loads((run / "val_metrics.json").read_text())
    assert test["n_samples"] == 400
    assert test["f1_macro"] >= 0.90, test
    assert val["f1_macro"] >= 0.90, val
    # the segmentation part: held-out Dice, galleries and overlays
    seg_test = json.loads((seg_run / "test_metrics.json").read_text())
    print(
        f"demo segmentation: test dice_mean {seg_test['dice_mean']:.4f}, iou_mean {seg_test['iou_mean']:.4f}"
    )
    assert seg_test["n_samples"] == 60
    assert seg_test["dice_mean"] >= 0.85, seg_test
    for name in ("test_best.png", "test_worst.png", "val_best.png"):
        assert (seg_run / "plots" / name).stat().st_size > 10_000
    overlays = sorted((seg_run / "predictions" / "overlays").glob("*.png"))
    masks = sorted((seg_run / "predictions" / "masks").glob("*.png"))
    assert len(overlays) == len(masks) == 8
    assert (seg_run / "test_per_sample.csv").read_text().count("\n") == 61
    # the detection part: held-out mAP, a large smear counted in tiles, overlays
    det_test = json.loads((det_run / "test_metrics.json").read_text())
    print(f"demo detection: test map_50 {det_test['map_50']:.4f}, map {det_test['map']:.4f}")
    assert det_test["n_images"] == 50
    assert det_test["map_50"] >= 0.5, det_test
    counts = (det_run / "predictions" / "counts.csv").read_text().splitlines()
    assert counts[0] == "path,G-cocci,G+cocci,G-bacilli,G+bacilli,total" and len(counts) == 2
    assert int(counts[1].split(",")[-1]) > 20  # a 1600 x 1200 smear holds many bacteria
    assert "counted on" in result.out and "labelled on" in result.out
    overlay = next((det_run / "predictions" / "overlays").glob("*.jpg"))
    assert overlay.stat().st_size > 50_000
    # the data is generated once, in the --cache folder, and reused (the demo's three
    # data sets, as the command finds them)
    cache = tmp_path / "cache"
    made = {
        root: sorted((f, f.stat().st_mtime_ns) for f in root.rglob("*") if f.is_file())
        for root in (demo_data(cache), lesion_data(cache), smear_data(cache))
    }
    assert {root.parent for root in made} == {cache} and all(made.values())
    again = [demo_data(cache), lesion_data(cache), smear_data(cache)]
    assert list(made) == again
    for root, files in made.items():
        assert sorted((f, f.stat().st_mtime_ns) for f in root.rglob("*") if f.is_file()) == files
    # the detector learns on fields twice as crowded as the generator's default
    assert (
        "crowding of the train and test images: 2 x"
        in (smear_data(cache) / "README.txt").read_text()
    )


def test_the_serve_command_quotes_the_run_folders() -> None:
    from mediscope.cli.demo import serve_command

    command = serve_command([Path("runs/a b/1"), Path("runs/c")])
    assert command == "mediscope serve 'runs/a b/1' runs/c"


def test_demo_options_reach_each_part(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mediscope.demo

    calls = []

    class Stop(Exception):
        pass

    def stop(**kwargs: object) -> None:
        calls.append(kwargs)
        raise Stop  # the first part is enough: the parts are given the same options

    for name in ("run_demo", "run_segmentation_demo", "run_detection_demo"):
        monkeypatch.setattr(mediscope.demo, name, stop)
    result = cli("demo", "--cache", tmp_path / "c", "--runs", tmp_path / "r", "--epochs", "1")
    assert result.code != 0  # stopped in the first part
    assert len(calls) == 1
    assert {k: calls[0][k] for k in ("runs", "cache", "epochs")} == {
        "runs": tmp_path / "r",
        "cache": tmp_path / "c",
        "epochs": 1,
    }
