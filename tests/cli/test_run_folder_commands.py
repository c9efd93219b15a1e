"""fit, validate and test alike: a run folder or CONFIG --checkpoint; fit ends with the
test split; ``--set`` reads KEY=VALUE in every help page."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import tiny_config

FAST = {"report": {"gradcam": 0, "html": False, "bootstrap": 20}}


def run_of(out: str) -> Path:
    last = out.strip().splitlines()[-1]
    assert last.startswith("run: "), out
    return Path(last[len("run: ") :])


def test_fit_tests_then_test_and_validate_take_the_run_folder(
    cli, write_config, tiny_crops: Path, tmp_path: Path
) -> None:
    raw = tiny_config(tiny_crops, tmp_path / "runs", trainer={"max_epochs": 1}, **FAST)
    config = write_config(raw)
    fitted = cli("fit", config)
    assert fitted.code == 0, fitted.err
    run = run_of(fitted.out)
    # fit ended with the test data (data.test_path): the files mediscope test writes
    written = json.loads((run / "test_metrics.json").read_text())
    assert written["n_samples"] == 24
    assert (run / "plots" / "test_confusion_matrix.png").is_file()
    assert "test, best.ckpt" in fitted.out and "test 24" in fitted.out

    # test and validate take the run folder, as predict does: its config and best.ckpt
    (run / "test_metrics.json").unlink()
    tested = cli("test", run)
    assert tested.code == 0, tested.err
    assert "test, 24 images" in tested.out
    assert json.loads((run / "test_metrics.json").read_text()) == written
    (run / "val_metrics.json").unlink()
    validated = cli("validate", run)
    assert validated.code == 0, validated.err
    assert f"metrics: {run / 'val_metrics.json'}" in validated.out
    # ... or another checkpoint of it, and --set still applies
    other = cli(
        "test", run, "--checkpoint", run / "checkpoints" / "last.ckpt", "--set", "data.batch_size=4"
    )
    assert other.code == 0, other.err

    # CONFIG --checkpoint as before; CONFIG alone says what is missing
    assert cli("test", config, "--checkpoint", run / "checkpoints" / "best.ckpt").code == 0
    alone = cli("test", config)
    assert alone.code == 2
    assert "--checkpoint is required with a config file" in alone.err
    assert "or a run folder instead of the config" in alone.err

    # runs/<name> holds runs, and is not one: the newest is named
    parent = cli("validate", run.parent)
    assert parent.code == 2
    assert "not a run folder" in parent.err and f"the newest: {run}" in parent.err

    # a run without best.ckpt points at last.ckpt
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "checkpoints" / "best.ckpt").unlink()
    missing = cli("test", copy)
    assert missing.code == 2
    assert "no checkpoints/best.ckpt" in missing.err
    assert str(copy / "checkpoints" / "last.ckpt") in missing.err


@pytest.mark.parametrize("case", ["off", "no test data"])
def test_fit_without_testing_says_how_to_test(
    case: str, cli, write_config, tiny_crops: Path, tmp_path: Path
) -> None:
    raw = tiny_config(tiny_crops, tmp_path / "runs", trainer={"max_epochs": 1}, **FAST)
    if case == "off":
        raw["trainer"]["test_after_fit"] = False
    else:
        del raw["data"]["test_path"]
    fitted = cli("fit", write_config(raw))
    assert fitted.code == 0, fitted.err
    run = run_of(fitted.out)
    assert not (run / "test_metrics.json").exists()
    if case == "off":
        assert "not run (trainer.test_after_fit: false)" in fitted.out
        assert f"\nto test it: mediscope test {run}\n" in fitted.out
    else:
        assert "no test data (data.test_path" in fitted.out
        assert f"\nto test it: mediscope test {run} --set data.test_path=PATH\n" in fitted.out


def test_fit_tests_the_data_s_own_test_split(cli, write_config, tmp_path: Path) -> None:
    """No data.test_path, but a CSV whose split column marks test rows."""
    from mediscope.data.synthetic.gram_crops import generate_gram_crops

    root = tmp_path / "crops"
    generate_gram_crops(root, per_class=8, test_per_class=3, size=32, seed=1)
    rows = ["path,label,split"]
    for part in ("train", "test"):
        for image in sorted((root / part).rglob("*.png")):
            split = "test" if part == "test" else "train"
            rows.append(f"{image},{image.parent.name},{split}")
    (root / "all.csv").write_text("\n".join(rows) + "\n")
    raw = tiny_config(root, tmp_path / "runs", trainer={"max_epochs": 1}, **FAST)
    raw["data"] = {**raw["data"], "format": "csv", "path": str(root / "all.csv")}
    del raw["data"]["test_path"]
    raw["data"]["split"] = {"method": "holdout", "val_fraction": 0.25}
    fitted = cli("fit", write_config(raw))
    assert fitted.code == 0, fitted.err
    run = run_of(fitted.out)
    assert json.loads((run / "test_metrics.json").read_text())["n_samples"] == 12


def test_an_unreadable_test_path_fails_before_training(
    cli, write_config, tiny_crops: Path, tmp_path: Path
) -> None:
    raw = tiny_config(tiny_crops, tmp_path / "runs", trainer={"max_epochs": 1}, **FAST)
    raw["data"]["test_path"] = str(tmp_path / "nowhere")
    result = cli("fit", write_config(raw))
    assert result.code == 2
    assert "data.test_path" in result.err or "nowhere" in result.err
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written


def _commands(command: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every command of typer's click tree below ``command``, with its path."""
    subs = getattr(command, "commands", None)
    if subs is None:
        yield path, command
        return
    for name, sub in subs.items():
        yield from _commands(sub, f"{path} {name}")


def test_set_reads_key_value_in_every_help_page(cli) -> None:
    import typer

    from mediscope.cli.main import app

    pages = [
        path
        for path, command in _commands(typer.main.get_command(app), "mediscope")
        if any("--set" in getattr(p, "opts", ()) for p in command.params)
    ]
    assert {"mediscope fit", "mediscope validate", "mediscope test"} <= set(pages)
    for path in pages:
        page = cli(*path.split()[1:], "--help")
        assert page.code == 0, path
        assert "--set KEY=VALUE" in page.out, (path, page.out)
        assert "list[str]" not in page.out, path
