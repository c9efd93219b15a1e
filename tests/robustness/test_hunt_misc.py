# ruff: noqa: F811 (the parameters named 'env' are the imported fixture)
"""A second corpus of hostile inputs (issue 20, points 5 and 6): compare grids,
``data.ignore_index``, one-class datasets, ensembles, damaged run folders given to
``report``, split files and checkpoint metadata of the wrong shape, images beyond PIL's
pixel limit, DICOM folders given to ``predict``, non-regular files given to ``check``,
errors raised inside DataLoader workers.

The cases run through the harness of :mod:`test_bad_inputs` (exit 2, one ``error:``
line with the expected fragments, no traceback, no run folder left, the listed files
unchanged: inputs are listed too, so they stay byte-identical).

Counts: 38 cases (36 errors, 2 handled: classes named 0 and 1 in an ensemble, DICOM
files in a folder given to predict). Before the fixes, 32 failed: 18 ended as ``internal
error`` (exit 1); 10 exited 0 (a compare that trained equal cells twice or let a child
key win, ``data.ignore_index`` ignoring a class, an empty probability averaged as NaN,
report and check accepting list-shaped metrics, environment and split files); one
printed a DataLoader worker's traceback; 3 named the wrong fix (a one-name classes.txt,
checkpoint classes blamed on the weights, a DICOM folder with "no images"). After, none
fail. The 6 that passed before: an empty run folder, an invalid YAML config or a metrics
file that is not JSON given to report, a split.json that is a list given to check, and
data.classes listing one class (classification and masks).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

# The corpus's fixtures 'env' and 'trained' are used by name (as arguments).
import robustness.test_bad_inputs as corpus
from robustness.test_bad_inputs import Env, Run, env, trained  # noqa: F401
from robustness.test_bad_inputs import test_bad_input as check_case

Make = Callable[[Env], Run]
#: Registers a case of ``kind`` (error or handled) under ``case_id``.
CASES, case = corpus.case_registry()


@pytest.mark.parametrize(("make", "kind"), CASES)
def test_hunt(make: Make, kind: str, env: Env, cli, caplog: pytest.LogCaptureFixture) -> None:
    check_case(make, kind, env, cli, caplog)


# -- compare ---------------------------------------------------------------------------


def _compare(env: Env, *grid: str) -> Run:
    config = env.config(env.classification())
    args: list[str | Path] = ["compare", config]
    for item in grid:
        args += ["--grid", item]
    return Run(args, outputs=[config])


@case("compare-parent-and-child-key")
def _(env: Env) -> Run:
    run = _compare(env, "loss={name: CrossEntropyLoss},{name: FocalLoss}", "loss.name=FocalLoss")
    run.expect = ["--grid", "'loss'", "'loss.name'", "one of them"]
    return run


@case("compare-child-and-parent-key")
def _(env: Env) -> Run:
    run = _compare(env, "optimizer.lr=0.1,0.01", "optimizer={name: SGD}")
    run.expect = ["--grid", "'optimizer.lr'", "'optimizer'"]
    return run


@case("compare-equal-values-after-parsing")
def _(env: Env) -> Run:
    run = _compare(env, "optimizer.lr=0.001,1.0e-3")
    run.expect = ["--grid optimizer.lr", "0.001", "1.0e-3", "the same"]
    return run


@case("compare-equal-values-after-validation")
def _(env: Env) -> Run:
    # YAML reads 1e-3 as a string; the schema makes it the float 0.001.
    run = _compare(env, "optimizer.lr=0.001,1e-3", "model.params.width=4,8")
    run.expect = ["--grid optimizer.lr", "0.001", "1e-3", "the same"]
    return run


# -- data.ignore_index and one-class datasets ------------------------------------------


@case("ignore-index-is-a-class-fit")
def _(env: Env) -> Run:
    config = env.config(env.segmentation(data={"ignore_index": 1}))
    return Run(["fit", config], ["data.ignore_index", "1", "'lesion'", "255"], [config])


@case("ignore-index-is-a-class-check")
def _(env: Env) -> Run:
    config = env.config(env.segmentation(data={"ignore_index": 0}))
    out = env.root / "check-out"
    return Run(
        ["check", config, "--output", out], ["data.ignore_index", "'background'"], [config, out]
    )


def _one_class_crops(env: Env) -> Path:
    root = env.copy("crops")
    for split in ("train", "test"):
        for folder in sorted((root / split).iterdir())[1:]:
            shutil.rmtree(folder)
    return root


@case("one-class-imagefolder")
def _(env: Env) -> Run:
    root = _one_class_crops(env)
    config = env.config(env.classification(root))
    return Run(["fit", config], ["one class", "at least two classes"], [config, root])


@case("one-class-listed")
def _(env: Env) -> Run:
    config = env.config(env.classification(data={"classes": ["G-cocci"]}))
    return Run(["fit", config], ["data.classes", "at least two classes"], [config])


@case("one-class-segmentation-listed")
def _(env: Env) -> Run:
    root = env.copy("lesions")
    config = env.config(env.segmentation(root, data={"classes": ["lesion"]}))
    return Run(["fit", config], ["data.classes", "at least two classes"], [config, root])


@case("one-class-segmentation-classes-file")
def _(env: Env) -> Run:
    root = env.copy("lesions")
    (root / "classes.txt").write_text("lesion\n", encoding="utf-8")
    config = env.segmentation(root)
    del config["data"]["classes"]
    path = env.config(config)
    return Run(["fit", path], [str(root / "classes.txt"), "lesion", "background"], [path, root])


# -- ensemble --------------------------------------------------------------------------


def _predictions(env: Env, rows: list[str], name: str, header: str = "path,label,a,b") -> Path:
    path = env.root / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _ensemble(env: Env, second: list[str], header: str = "path,label,a,b") -> Run:
    first = _predictions(env, ["x.png,a,0.9,0.1", "y.png,b,0.2,0.8"], "one.csv", header)
    other = _predictions(env, second, "two.csv", header)
    out = env.root / "ensemble.csv"
    return Run(["ensemble", first, other, "--output", out], outputs=[first, other, out])


@case("ensemble-label-not-a-class")
def _(env: Env) -> Run:
    run = _ensemble(env, ["x.png,c,0.9,0.1", "y.png,b,0.2,0.8"])
    run.expect = ["two.csv", "'c'", "not a class column", "a, b"]
    return run


@case("ensemble-numeric-class-names", "handled")
def _(env: Env) -> Run:
    header = "path,label,0,1"
    first = _predictions(env, ["x.png,0,0.9,0.1", "y.png,1,0.2,0.8"], "one.csv", header)
    other = _predictions(env, ["x.png,0,0.7,0.3", "y.png,1,0.4,0.6"], "two.csv", header)
    out = env.root / "ensemble.csv"
    return Run(["ensemble", first, other, "--output", out], ["2 images; ensemble"])


@case("ensemble-duplicated-row")
def _(env: Env) -> Run:
    run = _ensemble(env, ["x.png,a,0.9,0.1", "y.png,b,0.2,0.8", "x.png,b,0.3,0.7"])
    run.expect = ["two.csv", "x.png", "twice"]
    return run


@case("ensemble-non-numeric-probability")
def _(env: Env) -> Run:
    run = _ensemble(env, ["x.png,a,high,0.1", "y.png,b,0.2,0.8"])
    run.expect = ["two.csv", "column 'a'", "'high'", "a number"]
    return run


@case("ensemble-empty-probability")
def _(env: Env) -> Run:
    run = _ensemble(env, ["x.png,a,0.9,", "y.png,b,0.2,0.8"])
    run.expect = ["two.csv", "column 'b'", "a number"]
    return run


@case("ensemble-output-existing-folder")
def _(env: Env) -> Run:
    run = _ensemble(env, ["x.png,a,0.9,0.1", "y.png,b,0.2,0.8"])
    folder = env.root / "out"
    folder.mkdir()
    run.args[-1] = folder
    run.outputs.append(folder)
    run.expect = [f"{folder}", "is a folder", "give --output a CSV file"]
    return run


# -- report on damaged run folders -----------------------------------------------------


def _run_folder(env: Env, **files: str | bytes) -> Path:
    run = env.root / "a-run"
    run.mkdir()
    config = yaml.safe_dump(env.classification(), sort_keys=False)
    metrics = json.dumps({"accuracy": 0.5, "n_samples": 4})
    for name, content in {"config.yaml": config, "val_metrics.json": metrics, **files}.items():
        path = run / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return run


def _report(run: Path, *expect: str) -> Run:
    return Run(["report", run], list(expect), [run])


@case("report-empty-folder")
def _(env: Env) -> Run:
    run = env.root / "empty"
    run.mkdir()
    return _report(run, str(run), "no config.yaml", "mediscope fit")


@case("report-config-garbage-bytes")
def _(env: Env) -> Run:
    run = _run_folder(env, **{"config.yaml": bytes(range(256)) * 4})
    return _report(run, str(run / "config.yaml"), "cannot read")


@case("report-config-a-list")
def _(env: Env) -> Run:
    run = _run_folder(env, **{"config.yaml": "- task: classification\n"})
    return _report(run, str(run / "config.yaml"), "not a run's config")


@case("report-config-invalid-yaml")
def _(env: Env) -> Run:
    run = _run_folder(env, **{"config.yaml": "task: [classification\n"})
    return _report(run, str(run / "config.yaml"), "invalid YAML")


@case("report-metrics-not-json")
def _(env: Env) -> Run:
    run = _run_folder(env, **{"val_metrics.json": "accuracy: 0.5"})
    return _report(run, str(run / "val_metrics.json"), "cannot read")


@case("report-metrics-a-list")
def _(env: Env) -> Run:
    run = _run_folder(env, **{"val_metrics.json": "[0.5, 0.7]"})
    return _report(run, str(run / "val_metrics.json"), "not a metrics file")


@case("report-metrics-string-value")
def _(env: Env) -> Run:
    run = _run_folder(env, **{"val_metrics.json": '{"accuracy": "high", "n_samples": 4}'})
    return _report(run, str(run / "val_metrics.json"), "'accuracy'", "high", "not a number")


@case("report-environment-a-list")
def _(env: Env) -> Run:
    run = _run_folder(env, **{"environment.json": '["python"]'})
    return _report(run, str(run / "environment.json"), "not")


# -- split files -----------------------------------------------------------------------


def _resumable(env: Env) -> Path:
    source = env.trained().classification.parent.parent
    run = env.root / "runs-copy" / source.name
    shutil.copytree(source, run)
    return run


@case("resume-split-a-list")
def _(env: Env) -> Run:
    run = _resumable(env)
    (run / "split.json").write_text('["train_0001.png"]', encoding="utf-8")
    return Run(
        ["fit", run / "config.yaml", "--resume", run, "--set", "trainer.max_epochs=2"],
        [str(run / "split.json"), "train", "val"],
        [run],
    )


def _check_split(env: Env, content: str) -> Run:
    config = env.config(env.classification())
    split = env.root / "split.json"
    split.write_text(content, encoding="utf-8")
    out = env.root / "check-out"
    return Run(
        ["check", config, "--split", split, "--output", out],
        [str(split), "train", "val"],
        [config, split, out],
    )


@case("check-split-a-list")
def _(env: Env) -> Run:
    return _check_split(env, '["a.png"]')


@case("check-split-ids-a-string")
def _(env: Env) -> Run:
    return _check_split(env, '{"train": "a.png", "val": []}')


@case("check-split-ids-not-strings")
def _(env: Env) -> Run:
    return _check_split(env, '{"train": [["a.png"]], "val": [{"b": 1}]}')


# -- checkpoint metadata ---------------------------------------------------------------


def _bad_meta(env: Env, change: Callable[[dict[str, Any]], Any]) -> Run:
    source = env.trained().classification
    data = torch.load(source, weights_only=True)
    data["mediscope"] = change(data["mediscope"])
    ckpt = env.root / "bad.ckpt"
    torch.save(data, ckpt)
    config = env.config(env.classification(env.trained().data))
    return Run(
        ["test", config, "--checkpoint", ckpt],
        [str(ckpt), "metadata", "give a .ckpt"],
        [ckpt, config],
    )


@case("checkpoint-meta-a-string")
def _(env: Env) -> Run:
    return _bad_meta(env, lambda meta: "classification")


@case("checkpoint-classes-not-strings")
def _(env: Env) -> Run:
    return _bad_meta(env, lambda meta: {**meta, "classes": [0, 1, 2, 3]})


@case("checkpoint-classes-a-string")
def _(env: Env) -> Run:
    return _bad_meta(env, lambda meta: {**meta, "classes": "abc"})


@case("checkpoint-normalization-wrong-shape")
def _(env: Env) -> Run:
    return _bad_meta(env, lambda meta: {**meta, "normalization": [0.5, 0.5]})


# -- images beyond PIL's pixel limit, DICOM folders, non-regular files -----------------


#: A data.max_pixels that the tiny images (32 px) pass and _large_png's do not.
SMALL_LIMIT = 64 * 64


def _large_png(path: Path) -> Path:
    Image.new("RGB", (200, 200), (120, 40, 200)).save(path)
    return path


@case("fit-png-beyond-pil-limit")
def _(env: Env) -> Run:
    root = env.copy("crops")
    big = _large_png(next((root / "train").iterdir()) / "huge.png")
    config = env.config(env.classification(root, data={"max_pixels": SMALL_LIMIT}))
    return Run(["fit", config], [str(big), "data.max_pixels", "--set"], [config, root])


@case("predict-png-beyond-pil-limit")
def _(env: Env) -> Run:
    trained = env.trained()
    inputs = env.root / "inputs"
    shutil.copytree(trained.data / "test" / "G-cocci", inputs)
    big = _large_png(inputs / "huge.png")
    out = env.root / "predictions.csv"
    run_dir = trained.classification.parent.parent
    return Run(
        [
            "predict",
            run_dir,
            "--input",
            inputs,
            "--output",
            out,
            "--set",
            f"data.max_pixels={SMALL_LIMIT}",
        ],
        [str(big), "data.max_pixels", "--set"],
        [out, inputs],
    )


@case("predict-dicom-in-folder", "handled")
def _(env: Env) -> Run:
    from data.formats.test_dicom import write_dicom

    trained = env.trained()
    inputs = env.root / "scans"
    values = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
    for i in range(2):
        write_dicom(inputs / f"s{i}.dcm", values * (i + 1))
    out = env.root / "predictions.csv"
    run_dir = trained.classification.parent.parent
    return Run(["predict", run_dir, "--input", inputs, "--output", out], ["2 images"])


@case("check-dev-null")
def _(env: Env) -> Run:
    out = env.root / "check-out"
    return Run(["check", "/dev/null", "--output", out], ["/dev/null", "not a file"], [out])


@case("check-fifo")
def _(env: Env) -> Run:
    fifo = env.root / "pipe.png"
    os.mkfifo(fifo)
    out = env.root / "check-out"
    return Run(["check", fifo, "--output", out], [str(fifo), "not a file"], [out])


# -- errors inside DataLoader workers --------------------------------------------------


@case("worker-bad-image")
def _(env: Env) -> Run:
    root = env.copy("crops")
    bad = next((root / "train").iterdir()) / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    config = env.config(env.classification(root, data={"num_workers": 1}))
    return Run(["fit", config], [str(bad), "remove or replace"], [config, root])
