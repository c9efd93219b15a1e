"""Hostile hunt, config values and resume: each case runs ``mediscope fit`` in-process.

Two groups (issue 20, points 2, 5 and 6):

- ``--resume`` of a run made with another config (model, data, task, run name or
  folder, optimizer...): refused before anything is touched, with one line naming the
  keys that differ; the other run's folder stays byte-identical. Resuming with only
  the keys that may differ changed (``trainer.max_epochs``, logging, report, ...)
  trains on.
- config values that ended as an internal error or silent nonsense (seeds beyond
  2**32, image sizes of 10**9, ``limit_*_batches`` of 0 or out of range, a GPU that
  is not there, ``devices: 0``, an unknown strategy, a normalisation std of 0,
  negative class weights, a detection ``crop_size`` of 0, a 300-character run name):
  one ``error:`` line naming the key and the fix, exit 2, no run folder, inputs
  unchanged.

Counts: 41 cases (40 errors, 1 resume that works). 39 failed before the fixes: 32 of
the 33 config values (internal errors, exit 0 after training nothing for
``limit_train_batches: 0``, a std of 0 blamed on the learning rate, an OpenCV assertion
for ``crop_size: 0``; an image size below 8 was already refused) and the 7 resumes of
another config (trained inside the other run's folder and rewrote its config.yaml, or
failed loading its weights with exit 1). 0 fail after.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import robustness.test_bad_inputs as corpus
from robustness.test_bad_inputs import Env, Run, _run_folders, _snapshot

# The first corpus's fixtures: a case's folder with dataset copies, and trained runs.
env = corpus.env
trained = corpus.trained

Make = Callable[[Env], Run]
#: Kinds: ``error`` (exit 2, one line) or ``works`` (exit 0).
CASES, case = corpus.case_registry()


def _digest(path: Path) -> str | None:
    snapshot = _snapshot(path)
    if snapshot is None:
        return None
    sha = hashlib.sha256()
    for name in sorted(snapshot):
        sha.update(name.encode() + b"\0" + hashlib.sha256(snapshot[name]).digest())
    return sha.hexdigest()


@pytest.mark.parametrize(("make", "kind"), CASES)
def test_hunt_config_value(
    make: Make,
    kind: str,
    env: Env,
    cli,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = make(env)
    inputs = [Path(a) for a in run.args if isinstance(a, Path)] + run.outputs
    before = {path: _digest(path) for path in inputs}
    runs_before = _run_folders(env.runs)
    with caplog.at_level(logging.WARNING):
        result = cli(*run.args)
    assert "Traceback" not in result.err + result.out
    if kind == "works":
        assert result.code == 0, result.err
        return
    lines = result.err.splitlines()
    assert result.code == 2, result.err
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: "), result.err
    assert "internal error" not in lines[0]
    line = lines[0].replace(str(env.root), "<tmp>")
    for fragment in run.expect:
        fragment = fragment.replace(str(env.root), "<tmp>")
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert _run_folders(env.runs) == runs_before, "a run folder was left behind"
    for path, digest in before.items():
        assert _digest(path) == digest, f"{path} was changed"


def _fit(env: Env, config: dict[str, Any], *extra: str | Path) -> list[str | Path]:
    return ["fit", env.config(config), *extra]


def _error(env: Env, expect: list[str], **sections: Any) -> Run:
    config = env.classification(**sections)
    path = env.config(config)
    return Run(["fit", path], [f"{path}:", *expect], [env.copy("crops")])


# -- seeds and sizes -----------------------------------------------------------------------


@case("seed-2-pow-32")
def _(env: Env) -> Run:
    return _error(env, ["seed", "4294967296"], seed=2**32)


@case("seed-2-pow-64")
def _(env: Env) -> Run:
    return _error(env, ["seed", "4294967296"], seed=2**64)


@case("image-size-1e9")
def _(env: Env) -> Run:
    return _error(env, ["data.image_size", "65536"], data={"image_size": 10**9})


@case("image-size-one-side-huge")
def _(env: Env) -> Run:
    return _error(env, ["data.image_size", "65536"], data={"image_size": [32, 10**6]})


@case("image-size-negative")
def _(env: Env) -> Run:
    return _error(env, ["data.image_size", "at least 8"], data={"image_size": -32})


# -- limit_*_batches -----------------------------------------------------------------------


@case("limit-train-batches-zero")
def _(env: Env) -> Run:
    return _error(env, ["trainer.limit_train_batches", "0"], trainer={"limit_train_batches": 0})


@case("limit-train-batches-zero-float")
def _(env: Env) -> Run:
    return _error(env, ["trainer.limit_train_batches"], trainer={"limit_train_batches": 0.0})


@case("limit-train-batches-negative")
def _(env: Env) -> Run:
    return _error(env, ["trainer.limit_train_batches"], trainer={"limit_train_batches": -2})


@case("limit-train-batches-float-above-1")
def _(env: Env) -> Run:
    return _error(
        env, ["trainer.limit_train_batches", "(0, 1]"], trainer={"limit_train_batches": 1.5}
    )


@case("limit-train-batches-bool")
def _(env: Env) -> Run:
    return _error(env, ["trainer.limit_train_batches"], trainer={"limit_train_batches": True})


@case("limit-train-batches-share-below-one-batch")
def _(env: Env) -> Run:
    # 0.001 of 3 batches: Lightning refuses it once it has counted the batches.
    return _error(
        env,
        ["trainer.limit_train_batches", "0.001", "give a number of batches"],
        trainer={"limit_train_batches": 0.001},
    )


@case("limit-val-batches-negative-float")
def _(env: Env) -> Run:
    return _error(env, ["trainer.limit_val_batches"], trainer={"limit_val_batches": -0.5})


@case("limit-val-batches-float-above-1")
def _(env: Env) -> Run:
    return _error(env, ["trainer.limit_val_batches"], trainer={"limit_val_batches": 2.5})


@case("limit-val-batches-zero")
def _(env: Env) -> Run:
    return _error(env, ["trainer.limit_val_batches"], trainer={"limit_val_batches": 0})


@case("limit-test-batches-zero")
def _(env: Env) -> Run:
    return _error(env, ["trainer.limit_test_batches"], trainer={"limit_test_batches": 0})


# -- accelerator, devices, strategy ----------------------------------------------------------


@case("accelerator-gpu-without-gpu")
def _(env: Env) -> Run:
    return _error(
        env,
        ["trainer.accelerator", "'gpu' needs a CUDA or MPS device", "use accelerator: cpu or auto"],
        trainer={"accelerator": "gpu"},
    )


@case("accelerator-cuda-without-gpu")
def _(env: Env) -> Run:
    return _error(
        env,
        ["trainer.accelerator", "cuda", "use accelerator: cpu or auto"],
        trainer={"accelerator": "cuda"},
    )


@case("accelerator-mps-without-mps")
def _(env: Env) -> Run:
    return _error(
        env,
        ["trainer.accelerator", "mps", "use accelerator: cpu or auto"],
        trainer={"accelerator": "mps"},
    )


@case("accelerator-unknown")
def _(env: Env) -> Run:
    return _error(
        env,
        ["trainer.accelerator", "'cpus'", "did you mean 'cpu'?"],
        trainer={"accelerator": "cpus"},
    )


@case("devices-zero")
def _(env: Env) -> Run:
    return _error(env, ["trainer.devices", "0"], trainer={"devices": 0})


@case("devices-negative")
def _(env: Env) -> Run:
    return _error(env, ["trainer.devices", "-3"], trainer={"devices": -3})


@case("devices-empty-list")
def _(env: Env) -> Run:
    return _error(env, ["trainer.devices"], trainer={"devices": []})


@case("devices-word")
def _(env: Env) -> Run:
    return _error(env, ["trainer.devices", "auto"], trainer={"devices": "all"})


@case("strategy-unknown")
def _(env: Env) -> Run:
    return _error(
        env,
        ["trainer.strategy", "'ddpp'", "did you mean 'ddp'?", "ddp_spawn", "fsdp"],
        trainer={"strategy": "ddpp"},
    )


# -- normalisation, class weights, crops, run name ------------------------------------------------


@case("normalize-std-zero")
def _(env: Env) -> Run:
    normalize = {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.0, 0.2]}
    return _error(
        env, ["data.normalize", "std must be greater than 0"], data={"normalize": normalize}
    )


@case("normalize-std-negative")
def _(env: Env) -> Run:
    normalize = {"mean": [0.5, 0.5, 0.5], "std": [-0.2, 0.2, 0.2]}
    return _error(
        env, ["data.normalize", "std must be greater than 0"], data={"normalize": normalize}
    )


@case("normalize-lengths-differ")
def _(env: Env) -> Run:
    normalize = {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2]}
    return _error(
        env, ["data.normalize", "3 means", "2 standard deviations"], data={"normalize": normalize}
    )


@case("normalize-wrong-channel-count")
def _(env: Env) -> Run:
    normalize = {"mean": [0.5], "std": [0.2]}
    return _error(
        env, ["data.normalize", "1 channel", "data.channels"], data={"normalize": normalize}
    )


@case("class-weights-negative")
def _(env: Env) -> Run:
    return _error(env, ["loss.class_weights", "-1.0"], loss={"class_weights": [1.0, -1.0]})


@case("class-weights-all-zero")
def _(env: Env) -> Run:
    return _error(env, ["loss.class_weights", "zero"], loss={"class_weights": [0.0, 0.0]})


@case("detection-crop-size-zero")
def _(env: Env) -> Run:
    path = env.config(env.detection(data={"crop_size": 0}))
    return Run(["fit", path], [f"{path}:", "data.crop_size", "at least 8"], [env.copy("smears")])


@case("detection-crop-size-negative")
def _(env: Env) -> Run:
    path = env.config(env.detection(data={"crop_size": [-64, 64]}))
    return Run(["fit", path], [f"{path}:", "data.crop_size", "at least 8"], [env.copy("smears")])


@case("run-name-300-characters")
def _(env: Env) -> Run:
    return _error(
        env, ["run.name", "at most 200 characters", "this one has 300"], run={"name": "r" * 300}
    )


# -- --resume of another run -------------------------------------------------------------------


def _run_config(env: Env) -> tuple[Path, dict[str, Any]]:
    """A copy of the trained classification run (made in ``<case>/old/cls/``, as if it
    had been trained there) and its config, with max_epochs 2 so that the checkpoint
    has an epoch left to train."""
    source = env.trained().classification.parent.parent
    run = env.root / "old" / "cls" / source.name
    shutil.copytree(source, run)
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    config["run"]["dir"] = str(env.root / "old")
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    config["trainer"]["max_epochs"] = 2
    return run, config


def _resume(env: Env, expect: list[str], change: Callable[[dict[str, Any]], None], how: str) -> Run:
    run, config = _run_config(env)
    change(config)
    targets = {"folder": run, "last": "last", "ckpt": run / "checkpoints" / "last.ckpt"}
    return Run(
        _fit(env, config, "--resume", targets[how]),
        [str(run), "--resume of a run made with another config", *expect, f"{run}/config.yaml"],
        [run, env.trained().data],
    )


@case("resume-other-model")
def _(env: Env) -> Run:
    def change(config: dict[str, Any]) -> None:
        config["model"] = {"name": "resnet18"}

    return _resume(env, ["model.name 'simple_cnn' -> 'resnet18'"], change, "folder")


@case("resume-other-model-params")
def _(env: Env) -> Run:
    def change(config: dict[str, Any]) -> None:
        config["model"]["params"]["width"] = 16

    return _resume(env, ["model.params.width 8 -> 16"], change, "last")


@case("resume-other-data")
def _(env: Env) -> Run:
    data = env.copy("crops")

    def change(config: dict[str, Any]) -> None:
        config["data"]["path"] = str(data / "train")

    return _resume(env, ["data.path", str(data / "train")], change, "folder")


@case("resume-other-run-name")
def _(env: Env) -> Run:
    def change(config: dict[str, Any]) -> None:
        config["run"]["name"] = "other"

    return _resume(env, ["run.name 'cls' -> 'other'"], change, "folder")


@case("resume-other-run-dir")
def _(env: Env) -> Run:
    def change(config: dict[str, Any]) -> None:
        config["run"]["dir"] = str(env.runs)

    return _resume(env, ["run.dir"], change, "ckpt")


@case("resume-other-task")
def _(env: Env) -> Run:
    lesions = env.copy("lesions")

    def change(config: dict[str, Any]) -> None:
        config.clear()
        config.update(env.segmentation(lesions, trainer={"max_epochs": 2}))

    return _resume(env, ["task 'classification' -> 'segmentation'", "model.name"], change, "folder")


@case("resume-other-lr-and-seed")
def _(env: Env) -> Run:
    def change(config: dict[str, Any]) -> None:
        config["optimizer"]["lr"] = 0.01
        config["seed"] = 7

    return _resume(env, ["seed 3 -> 7", "optimizer.lr 0.001 -> 0.01"], change, "folder")


@case("resume-with-allowed-changes", "works")
def _(env: Env) -> Run:
    # Resumed with a longer training and other logging, reports and workers.
    _, config = _run_config(env)
    config["logging"] = {"progress": "plain", "loggers": ["csv"]}
    config["report"]["gradcam"] = 1
    config["data"]["num_workers"] = 0
    config["trainer"]["limit_test_batches"] = 1
    return Run(_fit(env, config, "--resume", "last"))
