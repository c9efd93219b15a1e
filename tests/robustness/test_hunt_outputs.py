"""Outputs that would destroy inputs, and stops that were reported as success.

Two parts of the second robustness corpus (the hunt of issue 20):

- **No command writes into, onto or above its own inputs**, ``--overwrite`` included:
  ``convert`` and ``data tile`` with the destination the source, inside it or above
  it; ``predict --output`` an input image, CSV, folder or checkpoint; ``ensemble
  --output`` an input CSV; ``check --write-exclude`` a dataset image or the config;
  ``check --output`` inside or above the dataset. Each case runs through the corpus
  harness of ``test_bad_inputs`` (exit 2, one ``error:`` line naming the option and the
  input, no traceback) and every input is byte-identical afterwards.
- **Ctrl-C and SIGTERM exit 130 and 143 with one line**, for predict, convert, data
  tile, check, fit and ensemble, stopped while reading inputs, while working and while
  writing. The stop is a real signal sent by the process to itself at a chosen function
  (the hook below), so that it lands at the same point on a loaded machine; a sleep
  before an outside ``kill`` cannot hit "while reading" reliably on a tiny dataset.
  ``fit`` is stopped while reading data and while building the model; its stops
  during training and checkpoint writing are covered by ``tests/engine/test_interrupt.py``.
  ``compare`` runs ``fit`` for each grid point and is not repeated here.

Counts: 23 overlap cases, all of which failed before the fixes (the command ran and
wrote over, into or above an input; the two without ``--overwrite`` were refused as
"not empty" without naming the input); 32 stops (16 points, SIGINT and SIGTERM) and 2
process exit codes, all of which failed before (exit 0 without a word; check also left
``check.json`` when stopped while writing ``check.html``). 0 fail after.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import robustness.test_bad_inputs as corpus
from helpers import merge_sections, tiny_config
from mediscope.data.convert import ConvertOptions, convert

Env, Run = corpus.Env, corpus.Run
env = corpus.env  # the corpus's fixtures, used here by name
trained = corpus.trained

OVERLAP: list[Any] = []


def overlap(case_id: str) -> Any:
    """Registers an overlap case: ``make(env) -> Run`` with the inputs in ``outputs``."""

    def register(make: Any) -> Any:
        OVERLAP.append(pytest.param(make, id=case_id))
        return make

    return register


@pytest.mark.parametrize("make", OVERLAP)
def test_output_over_inputs(
    make: Any, env: Env, cli: Any, caplog: pytest.LogCaptureFixture
) -> None:
    corpus.test_bad_input(make, "error", env, cli, caplog)


def _coco_folder(env: Env) -> tuple[Path, Path]:
    """``x/`` holding ``annotations.json`` and the images it names; returns (x, json)."""
    lesions = env.copy("lesions")
    folder = env.root / "x"
    shutil.copytree(lesions / "img" / "train", folder)
    convert(
        "masks",
        "coco",
        lesions / "labels" / "train",
        folder / "annotations.json",
        ConvertOptions(images=lesions / "img" / "train", classes=["background", "lesion"]),
    )
    return folder, folder / "annotations.json"


def _expect(option: str, path: Path) -> list[str]:
    return [f"{option}:", str(path), "outside the inputs"]


# -- convert ---------------------------------------------------------------------------------


@overlap("convert-coco-masks-dst-holds-the-json-overwrite")
def _(env: Env) -> Run:
    folder, ann = _coco_folder(env)
    args = ["convert", "--from", "coco", "--to", "masks", ann, folder, "--overwrite"]
    return Run(args, _expect("DST", ann), [folder])


@overlap("convert-coco-masks-dst-holds-the-json")
def _(env: Env) -> Run:
    folder, ann = _coco_folder(env)
    return Run(
        ["convert", "--from", "coco", "--to", "masks", ann, folder], _expect("DST", ann), [folder]
    )


@overlap("convert-coco-masks-dst-above-the-json-overwrite")
def _(env: Env) -> Run:
    folder, ann = _coco_folder(env)
    args = ["convert", "--from", "coco", "--to", "masks", ann, env.root, "--overwrite"]
    return Run(args, _expect("DST", ann), [folder])


@overlap("convert-coco-masks-dst-is-the-json")
def _(env: Env) -> Run:
    folder, ann = _coco_folder(env)
    args = ["convert", "--from", "coco", "--to", "masks", ann, ann, "--overwrite"]
    return Run(args, _expect("DST", ann), [folder])


@overlap("convert-masks-coco-dst-is-the-source")
def _(env: Env) -> Run:
    lesions = env.copy("lesions")
    args = ["convert", "--from", "masks", "--to", "coco", lesions, lesions, "--overwrite"]
    return Run(args, _expect("DST", lesions), [lesions])


@overlap("convert-masks-coco-dst-inside-the-source")
def _(env: Env) -> Run:
    lesions = env.copy("lesions")
    args = ["convert", "--from", "masks", "--to", "coco", lesions, lesions / "coco"]
    return Run(args, _expect("DST", lesions), [lesions])


@overlap("convert-masks-coco-dst-json-in-the-images")
def _(env: Env) -> Run:
    lesions = env.copy("lesions")
    images = lesions / "img" / "train"
    args = [
        "convert",
        "--from",
        "masks",
        "--to",
        "coco",
        lesions / "labels" / "train",
        images / "coco.json",
        "--images",
        images,
        "--classes",
        "background,lesion",
    ]
    return Run(args, _expect("DST", images), [lesions])


@overlap("convert-yolo-voc-dst-is-the-source-overwrite")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    args = ["convert", "--from", "yolo", "--to", "voc", smears, smears, "--overwrite"]
    return Run(args, _expect("DST", smears), [smears])


@overlap("convert-yolo-coco-dst-above-the-source-overwrite")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    args = ["convert", "--from", "yolo", "--to", "coco", smears, env.root, "--overwrite"]
    return Run(args, _expect("DST", smears), [smears])


# -- data tile -------------------------------------------------------------------------------


@overlap("tile-dst-is-the-source-overwrite")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    args = ["data", "tile", smears, smears, "--size", "64", "--overwrite"]
    return Run(args, _expect("DST", smears), [smears])


@overlap("tile-dst-is-the-source")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    return Run(["data", "tile", smears, smears, "--size", "64"], _expect("DST", smears), [smears])


@overlap("tile-dst-above-the-source-overwrite")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    args = ["data", "tile", smears, env.root, "--size", "64", "--overwrite"]
    return Run(args, _expect("DST", smears), [smears])


@overlap("tile-dst-inside-the-source")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    args = ["data", "tile", smears, smears / "tiles", "--size", "64"]
    return Run(args, _expect("DST", smears), [smears])


# -- predict ---------------------------------------------------------------------------------


def _run_dir(env: Env, which: str = "classification") -> Path:
    return Path(getattr(env.trained(), which)).parent.parent


def _images(env: Env) -> Path:
    folder = env.root / "images"
    shutil.copytree(env.trained().data / "test" / "G-cocci", folder)
    return folder


@overlap("predict-output-is-the-input-image")
def _(env: Env) -> Run:
    image = next(iter(sorted(_images(env).iterdir())))
    args = ["predict", _run_dir(env), "--input", image, "--output", image]
    return Run(args, _expect("--output", image), [image])


@overlap("predict-output-is-the-input-csv")
def _(env: Env) -> Run:
    images = _images(env)
    listing = env.root / "list.csv"
    listing.write_text("path\n" + "".join(f"{p}\n" for p in sorted(images.iterdir())))
    args = ["predict", _run_dir(env), "--input", listing, "--output", listing]
    return Run(args, _expect("--output", listing), [listing, images])


@overlap("predict-output-is-an-image-listed-in-the-csv")
def _(env: Env) -> Run:
    images = _images(env)
    listing = env.root / "list.csv"
    first = sorted(images.iterdir())[0]
    listing.write_text("path\n" + "".join(f"{p}\n" for p in sorted(images.iterdir())))
    args = ["predict", _run_dir(env), "--input", listing, "--output", first]
    return Run(args, _expect("--output", first), [listing, images])


@overlap("predict-output-inside-the-input-folder")
def _(env: Env) -> Run:
    images = _images(env)
    args = ["predict", _run_dir(env), "--input", images, "--output", images / "predictions.csv"]
    return Run(args, _expect("--output", images), [images])


@overlap("predict-segmentation-output-is-the-input-folder")
def _(env: Env) -> Run:
    images = _images(env)
    args = ["predict", _run_dir(env, "segmentation"), "--input", images, "--output", images]
    return Run(args, _expect("--output", images), [images])


@overlap("predict-output-is-the-checkpoint")
def _(env: Env) -> Run:
    images = _images(env)
    ckpt = env.root / "model.ckpt"
    shutil.copy(env.trained().classification, ckpt)
    config = _run_dir(env) / "config.yaml"
    args = ["predict", config, "--checkpoint", ckpt, "--input", images, "--output", ckpt]
    return Run(args, _expect("--output", ckpt), [ckpt, images])


# -- ensemble --------------------------------------------------------------------------------


@overlap("ensemble-output-is-an-input-csv")
def _(env: Env) -> Run:
    files = []
    for name, p in (("a.csv", 0.8), ("b.csv", 0.3)):
        path = env.root / name
        path.write_text(f"path,label,x,y\n1.png,x,{p},{1 - p:.1f}\n2.png,y,0.2,0.8\n")
        files.append(path)
    args = ["ensemble", *files, "--output", files[1]]
    return Run(args, _expect("--output", files[1]), files)


# -- check -----------------------------------------------------------------------------------


@overlap("check-write-exclude-is-a-dataset-image")
def _(env: Env) -> Run:
    crops = env.copy("crops")
    image = sorted((crops / "train" / "G-cocci").iterdir())[0]
    args = ["check", crops / "train", "--output", env.root / "out", "--write-exclude", image]
    return Run(args, _expect("--write-exclude", image), [crops, env.root / "out"])


@overlap("check-write-exclude-is-the-config")
def _(env: Env) -> Run:
    crops = env.copy("crops")
    config = env.config(env.classification(crops))
    args = ["check", config, "--output", env.root / "out", "--write-exclude", config]
    return Run(args, _expect("--write-exclude", config), [crops, config, env.root / "out"])


@overlap("check-output-inside-an-imagefolder")
def _(env: Env) -> Run:
    crops = env.copy("crops")
    out = crops / "train" / "check"
    args = ["check", crops / "train", "--output", out]
    return Run(args, _expect("--output", crops / "train"), [crops])


# -- Ctrl-C and SIGTERM ----------------------------------------------------------------------

#: Runs CLI commands in one process (imports are slow on a shared machine): each case
#: patches ``module:function`` so that its ``nth`` call first sends the signal to this
#: very process, runs ``main(args)`` and records the exit code and stderr. With one
#: case and ``exit``, the process exits with the command's code.
DRIVER = textwrap.dedent(
    """
    import contextlib, importlib, io, json, os, signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from mediscope.cli.main import main

    cases = json.loads(open(sys.argv[1]).read())
    results = []
    for case in cases:
        module_name, name = case["hook"].split(":")
        module = importlib.import_module(module_name)
        original = getattr(module, name)
        calls = [0]

        def hooked(*args, _original=original, _case=case, **kwargs):
            calls[0] += 1
            if calls[0] == _case["nth"]:
                os.kill(os.getpid(), _case["signal"])
            return _original(*args, **kwargs)

        setattr(module, name, hooked)
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(case["args"])
        finally:
            setattr(module, name, original)
        results.append({"code": code, "err": err.getvalue(), "calls": calls[0]})
        if case.get("exit"):
            sys.stderr.write(err.getvalue())
            sys.exit(code)
    with open(sys.argv[2], "w") as file:
        json.dump(results, file)
    """
)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}


@dataclass
class Stop:
    """A command stopped at a point: ``hook`` (``module:function``, its ``nth`` call)."""

    command: str
    point: str
    args: list[str]
    hook: str
    nth: int
    output: Path


def _stops(root: Path, tiny: dict[str, Path], trained: corpus.Trained) -> list[Stop]:
    crops, lesions, smears = (root / "in" / n for n in ("crops", "lesions", "smears"))
    for name, source in tiny.items():
        shutil.copytree(source, root / "in" / name)
    coco = root / "in" / "coco.json"
    convert("masks", "coco", lesions, coco.parent / "coco-files", ConvertOptions())
    shutil.copy(coco.parent / "coco-files" / "annotations_train.json", coco)
    run_dir = str(trained.classification.parent.parent)
    images = crops / "test" / "G-cocci"
    config = root / "in" / "config.yaml"
    config.write_text(
        yaml.safe_dump(merge_sections(tiny_config(crops, root / "runs"), corpus.FAST))
    )
    preds = []
    for name, p in (("a.csv", 0.8), ("b.csv", 0.3)):
        path = root / "in" / name
        path.write_text(f"path,label,x,y\n1.png,x,{p},{1 - p:.1f}\n2.png,y,0.2,0.8\n")
        preds.append(str(path))
    out = root / "out"
    stops = []
    points = {
        "predict": (
            ["predict", run_dir, "--input", str(images), "--output", "{out}/p.csv"],
            [
                ("reading", "mediscope.inference.predict:collect_inputs", 1),
                ("working", "mediscope.runtime.predictor:prepare", 1),
                ("writing", "os:replace", 1),
            ],
        ),
        "convert": (
            ["convert", "--from", "coco", "--to", "masks", str(coco), "{out}/masks"],
            [
                ("reading", "mediscope.data.formats.coco:read_coco", 1),
                ("working", "mediscope.data.formats.coco:coco_to_masks", 1),
                ("writing", "mediscope.data.formats.coco:write_mask_png", 2),
            ],
        ),
        "tile": (
            ["data", "tile", str(smears), "{out}/tiles", "--size", "64"],
            [
                ("reading", "mediscope.data.prepare.tiles:image_plan", 1),
                ("working", "mediscope.data.prepare.tiles:_tile_image", 1),
                ("writing", "mediscope.data.prepare.tiles:_save_tile", 2),
            ],
        ),
        "check": (
            ["check", str(crops / "train"), "--output", "{out}/check", "--no-html"],
            [
                ("reading", "mediscope.data.doctor.run:scan_path", 1),
                ("working", "mediscope.data.doctor.run:near_duplicates", 1),
            ],
        ),
        "check-html": (
            ["check", str(crops / "train"), "--output", "{out}/check"],
            [("writing", "os:replace", 2)],
        ),
        "fit": (
            ["fit", str(config), "--set", "run.dir={out}/runs"],
            [
                ("reading", "mediscope.engine.training:data_module", 1),
                ("working", "mediscope.engine.training:build_task", 1),
            ],
        ),
        "ensemble": (
            ["ensemble", *preds, "--output", "{out}/e.csv"],
            [
                ("reading", "mediscope.inference.ensemble:read_predictions", 1),
                ("writing", "os:replace", 1),
            ],
        ),
    }
    for command, (args, hooks) in points.items():
        for point, hook, nth in hooks:
            folder = out / f"{command}-{point}"
            folder.mkdir(parents=True)
            filled = [a.replace("{out}", str(folder)) for a in args]
            stops.append(Stop(command, point, filled, hook, nth, folder))
    return stops


def _signals_run(root: Path, cases: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    script, spec, results = root / "driver.py", root / "cases.json", root / "results.json"
    script.write_text(DRIVER)
    spec.write_text(json.dumps(cases))
    return subprocess.run(
        [sys.executable, str(script), str(spec), str(results)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=900,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.slow
def test_stops_exit_130_and_143(
    tmp_path: Path,
    tiny_crops: Path,
    tiny_lesions: Path,
    tiny_smears: Path,
    trained: corpus.Trained,
) -> None:
    tiny = {"crops": tiny_crops, "lesions": tiny_lesions, "smears": tiny_smears}
    stops = _stops(tmp_path, tiny, trained)
    inputs_before = corpus._snapshot(tmp_path / "in")
    cases = [
        {"args": s.args, "hook": s.hook, "nth": s.nth, "signal": int(sig)}
        for sig in (signal.SIGINT, signal.SIGTERM)
        for s in stops
    ]
    proc = _signals_run(tmp_path, cases)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    failed = []
    for i, (case, result) in enumerate(zip(cases, results, strict=True)):
        stop = stops[i % len(stops)]
        sig = case["signal"]
        by, code = ("Ctrl-C", 130) if sig == signal.SIGINT else ("SIGTERM", 143)
        lines = [ln for ln in result["err"].splitlines() if ln.strip()]
        problems = []
        if result["calls"] < stop.nth:
            problems.append(f"the hook was called {result['calls']} times")
        if result["code"] != code:
            problems.append(f"exit {result['code']}, not {code}")
        if len(lines) != 1 or not lines[0].startswith("error: ") or by not in lines[0]:
            problems.append(f"stderr {result['err']!r}")
        if "Traceback" in result["err"]:
            problems.append("a traceback")
        if _files(stop.output):
            problems.append(f"left {_files(stop.output)}")
        if problems:
            failed.append(f"{stop.command} {stop.point} {by}: {'; '.join(problems)}")
    assert not failed, "\n".join(failed)
    assert corpus._snapshot(tmp_path / "in") == inputs_before


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stopped_process_exit_code(
    tmp_path: Path, tiny_lesions: Path, sig: signal.Signals, code: int
) -> None:
    """The process itself (not only ``main``) exits with 130 / 143 and one line."""
    coco = tmp_path / "coco"
    convert("masks", "coco", tiny_lesions, coco, ConvertOptions())
    out = tmp_path / "masks"
    case = {
        "args": [
            "convert",
            "--from",
            "coco",
            "--to",
            "masks",
            str(coco / "annotations_train.json"),
            str(out),
        ],
        "hook": "mediscope.data.formats.coco:coco_to_masks",
        "nth": 1,
        "signal": int(sig),
        "exit": True,
    }
    proc = _signals_run(tmp_path, [case])
    assert proc.returncode == code, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not out.exists()
