"""Bounded documents, duplicated keys and the real mistake first (issue 20, points 4, 5, 7).

Two kinds of cases, each checking what the user sees (exit code 2, exactly one line
``error: ...`` naming the file, line or key and the fix, no traceback, no ``internal
error``, no run folder left behind, the inputs byte-identical):

- ``error`` cases run ``mediscope`` in-process (duplicated YAML keys, unknown keys
  named before the keys they hide, every problem listed, ``--set`` named as the place,
  too deep or too large documents);
- ``hang`` cases run it in a subprocess with a timeout and an address-space limit:
  YAML alias bombs of a few hundred bytes (in a config, a ``--set`` value, a YOLO
  ``data.yaml``, a ``--grid`` value, a run folder's ``config.yaml``) and files read as
  lists that are no regular files (``data.exclude`` naming ``/dev/zero`` or a FIFO, a
  ``classes.txt`` linked to ``/dev/zero``) or are huge.

Counts: 21 cases, all 21 failed before the fixes: four alias bombs hung or ran out of
memory (``internal error: MemoryError``), the fifth (``--set``) was refused only because
``simple_cnn`` takes no such keyword; ``/dev/zero`` and a huge exclude file ran out of
memory, a FIFO blocked, a ``classes.txt`` linked to ``/dev/zero`` was called missing;
duplicated keys kept the last; too deep or too large documents were read; a recursive
alias was an internal error; ``model: {nmae: ...}`` named only the missing ``name``, with
"[and 1 more problem]"; a section's error blamed the config line for a ``--set`` value.
0 failed after.
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import mediscope
import robustness.test_bad_inputs as corpus
from robustness.test_bad_inputs import Env, Run, _run_folders, _snapshot

SRC = Path(mediscope.__file__).resolve().parents[1]  # the subprocess runs the same code
#: Enough to import torch and read a config; an alias bomb needs many times more.
ADDRESS_SPACE = 6 * 2**30
TIMEOUT = 120  # seconds: the CLI's start (torch) takes 10-20 s on a busy machine

#: Nine levels of nine aliases: 387 million nodes when expanded, under 500 bytes.
BOMB_LEVELS = 9


def bomb_block(indent: str = "") -> str:
    """Block-style YAML keys ``a0..a8``, each a list of nine aliases of the one before."""
    lines = [f"{indent}a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, BOMB_LEVELS):
        lines.append(f"{indent}a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def bomb_flow() -> str:
    """The same bomb as one flow mapping (a ``--set`` or ``--grid`` value)."""
    items = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    items += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, BOMB_LEVELS)]
    return "{" + ", ".join(items) + "}"


def _digest(paths: list[Path]) -> dict[str, str]:
    """A hash of every regular file under ``paths`` (size and time for huge ones)."""
    out: dict[str, str] = {}
    for top in paths:
        for path in [top, *top.rglob("*")] if top.is_dir() else [top]:
            if not path.is_file():  # folders, FIFOs, links to devices
                continue
            stat = path.stat()
            if stat.st_size > 2**24:
                out[str(path)] = f"{stat.st_size}:{stat.st_mtime_ns}"
            else:
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _check_line(err: str, code: int, expect: list[str], root: Path) -> None:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert code == 2, err[-2000:]
    assert len(lines) == 1, err[-2000:]
    assert lines[0].startswith("error: "), err
    assert "internal error" not in lines[0]
    line = lines[0].replace(str(root), "<tmp>")
    for fragment in expect:
        fragment = fragment.replace(str(root), "<tmp>")
        assert fragment in line, f"{fragment!r} not in {line!r}"


Make = Callable[[Env], Run]
#: Kinds: ``error`` (in-process) or ``hang`` (subprocess, bounded).
CASES, case = corpus.case_registry()


@pytest.fixture
def env(
    tmp_path: Path,
    tiny_crops: Path,
    tiny_lesions: Path,
    tiny_smears: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Env:
    monkeypatch.chdir(tmp_path)
    sources = {"crops": tiny_crops, "lesions": tiny_lesions, "smears": tiny_smears}
    return Env(tmp_path, sources, request)


def _bounded_run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    threads = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    environ = dict(os.environ, PYTHONPATH=str(SRC), **threads)
    code = "import sys; from mediscope.cli.main import main; sys.exit(main(sys.argv[1:]))"
    try:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=cwd,
            env=environ,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            preexec_fn=limit,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"mediscope {' '.join(args)} did not end within {TIMEOUT} s")


@pytest.mark.parametrize(("make", "kind"), CASES)
def test_hunt_yaml(make: Make, kind: str, env: Env, cli) -> None:
    run = make(env)
    inputs = [p for p in env.root.iterdir() if p.is_file() or p.is_dir()]
    before = _digest(inputs)
    runs_before = _run_folders(env.runs)
    outputs_before = {path: _snapshot(path) for path in run.outputs}
    if kind == "hang":
        result = _bounded_run([str(a) for a in run.args], env.root)
        code, err = result.returncode, result.stderr
    else:
        result = cli(*run.args)
        code, err = result.code, result.err
    _check_line(err, code, run.expect, env.root)
    assert _run_folders(env.runs) == runs_before, "a run folder was left behind"
    for path, snap in outputs_before.items():
        assert _snapshot(path) == snap, f"{path} was written"
    assert _digest(inputs) == before, "an input changed"


def _text(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False)


def _line_of(text: str, prefix: str, nth: int = 0) -> int:
    return [i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith(prefix)][nth]


# -- duplicated keys (point 5) -------------------------------------------------------------


@case("duplicate-section")
def _(env: Env) -> Run:
    config = env.classification()
    text = _text(config)
    text += "data:\n  path: " + str(env.root / "elsewhere") + "\n"
    path = env.config(text)
    first, second = _line_of(text, "data:"), _line_of(text, "data:", 1)
    return Run(["fit", path], [f"{path}:{second}: data: the key repeats (first at line {first})"])


@case("duplicate-nested-key")
def _(env: Env) -> Run:
    text = _text(env.classification(optimizer={"name": "AdamW", "lr": 0.01}))
    text = text.replace("  lr: 0.01\n", "  lr: 0.01\n  lr: 0.5\n")
    path = env.config(text)
    first, second = _line_of(text, "  lr:"), _line_of(text, "  lr:", 1)
    return Run(
        ["fit", path],
        [f"{path}:{second}: optimizer.lr: the key repeats (first at line {first})", "keep one"],
    )


@case("duplicate-set-key")
def _(env: Env) -> Run:
    path = env.config(env.classification())
    return Run(
        ["fit", path, "--set", "model.params={width: 8, width: 16}"],
        ["--set: model.params", "width: the key repeats"],
    )


@case("duplicate-key-data-yaml")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    data_yaml = smears / "data.yaml"
    text = data_yaml.read_text(encoding="utf-8")
    names = _line_of(text, "names:")
    text += "names: [a, b]\n"
    data_yaml.write_text(text, encoding="utf-8")
    second = len(text.splitlines())
    path = env.config(env.detection(smears))
    return Run(
        ["check", path],
        [f"{data_yaml}:{second}: names: the key repeats (first at line {names})"],
    )


# -- the real mistake first (point 7) ------------------------------------------------------


@case("misspelt-key-named-first")
def _(env: Env) -> Run:
    config = env.classification()
    config["model"] = {"nmae": "resnet18"}
    path = env.config(config)
    line = _line_of(_text(config), "  nmae:")
    return Run(
        ["fit", path],
        [
            f"{path}:{line}: model.nmae: unknown key; did you mean 'name'?",
            "model.name: required key is missing",
        ],
    )


@case("every-problem-listed")
def _(env: Env) -> Run:
    config = env.classification(trainer={"max_epochs": 0}, optimizer={"lr": -1.0, "wd": 0.1})
    path = env.config(config)
    return Run(
        ["fit", path],
        ["optimizer.wd: unknown key", "trainer.max_epochs:", "optimizer.lr:"],
    )


@case("set-section-error-names-set")
def _(env: Env) -> Run:
    split = {"method": "kfold", "folds": 3}
    path = env.config(env.classification(data={"split": split}))
    return Run(
        ["fit", path, "--set", "data.split.fold=5"],
        ["error: --set: data.split: fold 5 does not exist in 3 folds"],
    )


@case("set-unknown-key-first")
def _(env: Env) -> Run:
    path = env.config(env.classification())
    return Run(
        ["fit", path, "--set", "model={nmae: resnet18}"],
        ["error: --set: model.nmae: unknown key; did you mean 'name'?"],
    )


# -- bounded documents (point 4), in-process -----------------------------------------------


@case("config-too-deep")
def _(env: Env) -> Run:
    text = _text(env.classification())
    text = text.replace("model:\n", "model:\n  extra: " + "[" * 200 + "]" * 200 + "\n", 1)
    path = env.config(text)
    return Run(["fit", path], [f"{path}:", "nested deeper than", "fewer levels"])


@case("config-too-large")
def _(env: Env) -> Run:
    text = _text(env.classification()) + ("# padding\n" * 150_000)
    path = env.config(text)
    return Run(["fit", path], [f"{path}: the file is larger than 1 MB"])


@case("config-recursive-alias")
def _(env: Env) -> Run:
    text = _text(env.classification()) + "extra: &loop [1, *loop]\n"
    path = env.config(text)
    return Run(["fit", path], [f"{path}:{_line_of(text, 'extra:')}:", "alias", "loop"])


@case("set-too-deep")
def _(env: Env) -> Run:
    path = env.config(env.classification())
    return Run(
        ["fit", path, "--set", "model.params.x=" + "[" * 200 + "]" * 200],
        ["--set: model.params.x", "nested deeper than"],
    )


# -- bounded documents (point 4): alias bombs, in a subprocess with limits ------------------


@case("alias-bomb-config", "hang")
def _(env: Env) -> Run:
    text = _text(env.classification()) + bomb_block()
    path = env.config(text)
    return Run(["fit", path], [f"{path}:", "alias", "expand"])


@case("alias-bomb-set", "hang")
def _(env: Env) -> Run:
    path = env.config(env.classification())
    return Run(
        ["fit", path, "--set", f"model.params={bomb_flow()}"],
        ["--set: model.params", "alias", "expand"],
    )


@case("alias-bomb-data-yaml", "hang")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    data_yaml = smears / "data.yaml"
    data_yaml.write_text(data_yaml.read_text(encoding="utf-8") + bomb_block(), encoding="utf-8")
    path = env.config(env.detection(smears))
    return Run(["check", path], [f"{data_yaml}:", "alias", "expand"])


@case("alias-bomb-grid", "hang")
def _(env: Env) -> Run:
    path = env.config(env.classification())
    return Run(
        ["compare", path, "--grid", f"model.params={bomb_flow()}"],
        ["model.params", "alias", "expand"],
        outputs=[env.runs],
    )


@case("alias-bomb-run-config", "hang")
def _(env: Env) -> Run:
    run = env.root / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("task: classification\n" + bomb_block(), encoding="utf-8")
    return Run(["report", run], [f"{run / 'config.yaml'}:", "alias", "expand"])


# -- files read as lists (point 4), in a subprocess with limits ----------------------------


@case("exclude-dev-zero", "hang")
def _(env: Env) -> Run:
    path = env.config(env.classification(data={"exclude": "/dev/zero"}))
    return Run(["fit", path], ["/dev/zero: not a regular file", "data.exclude"])


@case("exclude-fifo", "hang")
def _(env: Env) -> Run:
    fifo = env.root / "exclude.txt"
    os.mkfifo(fifo)
    path = env.config(env.classification(data={"exclude": str(fifo)}))
    return Run(["fit", path], [f"{fifo}: not a regular file"])


@case("exclude-huge", "hang")
def _(env: Env) -> Run:
    huge = env.root / "exclude.txt"
    with huge.open("wb") as handle:  # sparse: 8 GB on paper, nothing on disk
        handle.truncate(8 * 2**30)
    path = env.config(env.classification(data={"exclude": str(huge)}))
    return Run(["fit", path], [f"{huge}: the file is larger than", "data.exclude"])


@case("classes-txt-dev-zero", "hang")
def _(env: Env) -> Run:
    lesions = env.copy("lesions")
    (lesions / "classes.txt").unlink(missing_ok=True)
    (lesions / "classes.txt").symlink_to("/dev/zero")
    config = env.segmentation(lesions)
    del config["data"]["classes"]
    path = env.config(config)
    return Run(["check", path], [f"{lesions / 'classes.txt'}: not a regular file"])
