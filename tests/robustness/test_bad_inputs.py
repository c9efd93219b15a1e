"""A corpus of broken inputs, generated at test time and run through the real CLI.

Each case builds one broken input (a config, a dataset, a checkpoint or a command
line), runs ``mediscope`` in-process and checks what the user sees:

- ``error`` cases: exit code 2; stderr is exactly one line ``error: ...`` that names
  the file, line or key at fault and says what to do (a fragment of each is asserted);
  no traceback; nothing half-written (no new run folder, the output of convert /
  predict / tile absent or unchanged);
- ``skip`` cases: inputs that mediscope documents as skipped (``data.on_bad_label:
  skip``, ``--on-bad-label skip``) run to the end (exit 0) with one warning giving the
  count;
- ``handled`` cases: odd but valid inputs (16-bit, palette, CMYK, mixed grayscale and
  RGB images, a validation split without some class): the command succeeds.

Counts: 96 cases tried: 88 clean errors, 3 documented skips, 5 handled (works: 16-bit,
palette, CMYK, mixed grayscale and RGB images, and a validation split without a class,
which logs a warning). When this corpus was written, 15 cases failed (raw TypeError as
"internal error", usage errors with exit 1, messages without the config line, a YOLO
label file silently shared by two images, half-written predict output, ...); the
readers, loader and CLI were fixed. Four more (a truncated or zero-byte image, a mask
of another size or with values outside the classes, all found while training) gave the
clean error but left the run folder behind until fit removed run folders in which no
epoch finished.

What is an error and what a warning: a class without training samples is an error (the
model cannot learn it), so is a class in the test data that training never saw; a
validation or test split without some class is a warning (its per-class metrics are
undefined).
"""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from helpers import merge_sections, tiny_config, tiny_detection_config, tiny_segmentation_config

# -- the harness ---------------------------------------------------------------------------

#: Keeps every fit short: one epoch, few batches, no bootstrap, no report, CSV logs only.
FAST: dict[str, Any] = {
    "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 2},
    "logging": {"progress": "none", "loggers": ["csv"]},
    "report": {"bootstrap": 0, "html": False, "gradcam": 0, "gallery": 0},
}


class LeftoverOutput(AssertionError):
    """A failed command left files behind (a run folder, a half-written output)."""


@dataclass
class Run:
    """What a case runs and what its error line must say.

    Attributes:
        args: The command line after ``mediscope``.
        expect: Fragments of the error line (error cases) or of the warning (skip
            cases): the file, line or key at fault and what to do.
        outputs: Files or folders the command must leave absent or unchanged.
    """

    args: list[str | Path]
    expect: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)


@dataclass
class Env:
    """A case's temporary folder, with copies of the tiny datasets on demand."""

    root: Path
    sources: dict[str, Path]
    request: pytest.FixtureRequest

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def copy(self, name: str) -> Path:
        """A fresh copy of the tiny dataset ``name`` (crops, lesions, smears)."""
        target = self.root / name
        if not target.exists():
            shutil.copytree(self.sources[name], target)
        return target

    def config(self, content: dict[str, Any] | str, name: str = "config.yaml") -> Path:
        path = self.root / name
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    def classification(self, root: Path | None = None, /, **sections: Any) -> dict[str, Any]:
        config = tiny_config(root or self.copy("crops"), self.runs)
        return merge_sections(merge_sections(config, FAST), sections)

    def segmentation(self, root: Path | None = None, /, **sections: Any) -> dict[str, Any]:
        config = tiny_segmentation_config(root or self.copy("lesions"), self.runs)
        return merge_sections(merge_sections(config, FAST), sections)

    def detection(self, root: Path | None = None, /, **sections: Any) -> dict[str, Any]:
        config = tiny_detection_config(root or self.copy("smears"), self.runs)
        return merge_sections(merge_sections(config, FAST), sections)

    def trained(self) -> Trained:
        trained: Trained = self.request.getfixturevalue("trained")
        return trained


@dataclass(frozen=True)
class Trained:
    """Checkpoints of finished tiny runs (shared by the checkpoint cases)."""

    classification: Path  # best.ckpt
    segmentation: Path
    data: Path  # the classification run's data (train/, test/)


Make = Callable[[Env], Run]


def case_registry() -> tuple[list[Any], Callable[..., Callable[[Make], Make]]]:
    """A corpus file's list of cases and the decorator ``@case(case_id, kind)`` that
    adds a case to it (each file says which kinds it runs)."""
    cases: list[Any] = []

    def case(case_id: str, kind: str = "error") -> Callable[[Make], Make]:
        def register(make: Make) -> Make:
            cases.append(pytest.param(make, kind, id=case_id))
            return make

        return register

    return cases, case


#: Kinds: error (exit 2, one line), skip (a documented skip warns), handled (works).
CASES, case = case_registry()


def _snapshot(path: Path) -> dict[str, bytes] | None:
    if not path.exists():
        return None
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _run_folders(runs: Path) -> set[Path]:
    return {p for p in runs.glob("*/*") if p.is_dir()} if runs.is_dir() else set()


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, tiny_crops: Path, tiny_lesions: Path
) -> Trained:
    from mediscope.cli.main import main

    root = tmp_path_factory.mktemp("trained")
    data = root / "crops"
    shutil.copytree(tiny_crops, data)
    checkpoints = []
    for name, config in (
        ("cls", tiny_config(data, root / "runs")),
        ("seg", tiny_segmentation_config(tiny_lesions, root / "runs")),
    ):
        config = merge_sections(merge_sections(config, FAST), {"run": {"name": name}})
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        assert main(["fit", str(path)]) == 0
        (run,) = (root / "runs" / name).iterdir()
        checkpoints.append(run / "checkpoints" / "best.ckpt")
    return Trained(checkpoints[0], checkpoints[1], data)


@pytest.fixture
def env(
    tmp_path: Path,
    tiny_crops: Path,
    tiny_lesions: Path,
    tiny_smears: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Env:
    monkeypatch.chdir(tmp_path)  # default output folders (checks/) land here
    sources = {"crops": tiny_crops, "lesions": tiny_lesions, "smears": tiny_smears}
    return Env(tmp_path, sources, request)


@pytest.mark.parametrize(("make", "kind"), CASES)
def test_bad_input(make: Make, kind: str, env: Env, cli, caplog: pytest.LogCaptureFixture) -> None:
    run = make(env)
    runs_before = _run_folders(env.runs)
    outputs_before = {path: _snapshot(path) for path in run.outputs}
    with caplog.at_level(logging.WARNING):
        result = cli(*run.args)
    # Warnings go to stderr through logging (pytest's handler here): one line each.
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "Traceback" not in result.err + result.out
    if kind == "error":
        lines = result.err.splitlines()
        assert result.code == 2, result.err
        assert len(lines) == 1, result.err
        assert lines[0].startswith("error: "), result.err
        assert "internal error" not in lines[0]
        # Fragments are matched outside the temporary folder's name, which holds the
        # case's id (a fragment 'tab' must not match '.../test_bad_input_yaml_tab0/').
        line = lines[0].replace(str(env.root), "<tmp>")
        for fragment in run.expect:
            fragment = fragment.replace(str(env.root), "<tmp>")
            assert fragment in line, f"{fragment!r} not in {line!r}"
        if _run_folders(env.runs) != runs_before:
            raise LeftoverOutput(f"a run folder was left behind: {_run_folders(env.runs)}")
        for path, before in outputs_before.items():
            if _snapshot(path) != before:
                raise LeftoverOutput(f"{path} was written")
        return
    assert result.code == 0, result.err
    if kind == "skip":
        skipped = [w for w in warnings if "skipped" in w]
        assert len(skipped) == 1, warnings
        for fragment in run.expect:
            assert fragment in skipped[0], f"{fragment!r} not in {skipped[0]!r}"
    else:
        assert kind == "handled"
        said = "\n".join([result.out, result.err, *warnings])
        for fragment in run.expect:
            assert fragment in said, f"{fragment!r} not in the output"


def _fit(env: Env, config: dict[str, Any] | str, *extra: str) -> list[str | Path]:
    return ["fit", env.config(config), *extra]


# -- configs -------------------------------------------------------------------------------


@case("yaml-tab")
def _(env: Env) -> Run:
    text = yaml.safe_dump(env.classification(), sort_keys=False)
    text = text.replace("  max_epochs: 1", "\tmax_epochs: 1")
    path = env.config(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith("\t"))
    return Run(
        ["fit", path],
        [f"{path}:{line}: invalid YAML: found character '\\t'", "indent with spaces"],
    )


@case("yaml-unclosed-bracket")
def _(env: Env) -> Run:
    text = yaml.safe_dump(env.classification(), sort_keys=False)
    text += "augment:\n  crop_scale: [0.5, 1.0\n"
    path = env.config(text)
    opened = len(text.splitlines())
    return Run(
        ["fit", path],
        [f"{path}:{opened + 1}: invalid YAML", f"started on line {opened}", "close the bracket"],
    )


@case("empty-config")
def _(env: Env) -> Run:
    path = env.config("# nothing yet\n")
    return Run(["fit", path], [f"{path}: the config is empty", "start with 'task: ...'"])


@case("config-not-a-mapping")
def _(env: Env) -> Run:
    path = env.config("- task: classification\n")
    return Run(["fit", path], [f"{path}: the config must be a mapping", "start with"])


@case("config-not-found")
def _(env: Env) -> Run:
    return Run(
        ["fit", env.root / "nope.yaml"], ["nope.yaml: config file not found", "check the path"]
    )


@case("unknown-top-level-key")
def _(env: Env) -> Run:
    config = env.classification()
    config["optimiser"] = {"lr": 0.01}
    path = env.config(config)
    return Run(["fit", path], [f"{path}:", "optimiser: unknown key", "did you mean 'optimizer'?"])


@case("unknown-nested-key")
def _(env: Env) -> Run:
    path = env.config(env.classification(optimizer={"name": "AdamW", "weight_decy": 0.1}))
    return Run(
        ["fit", path],
        [f"{path}:", "optimizer.weight_decy: unknown key", "did you mean 'weight_decay'?"],
    )


@case("string-for-int")
def _(env: Env) -> Run:
    path = env.config(env.classification(trainer={"max_epochs": "ten"}))
    return Run(["fit", path], [f"{path}:", "trainer.max_epochs", "integer", "'ten'"])


@case("list-for-float")
def _(env: Env) -> Run:
    path = env.config(env.classification(optimizer={"lr": [0.1, 0.01]}))
    return Run(["fit", path], [f"{path}:", "optimizer.lr", "number", "[0.1, 0.01]"])


@case("negative-batch-size")
def _(env: Env) -> Run:
    path = env.config(env.classification(data={"batch_size": -4}))
    return Run(["fit", path], [f"{path}:", "data.batch_size", "greater than or equal to 1", "-4"])


@case("image-size-zero")
def _(env: Env) -> Run:
    path = env.config(env.classification(data={"image_size": 0}))
    return Run(["fit", path], [f"{path}:", "data.image_size", "at least 8 pixels"])


@case("missing-data-path")
def _(env: Env) -> Run:
    config = env.classification()
    del config["data"]["path"]
    path = env.config(config)
    return Run(
        ["fit", path], [f"{path}:", "data.path: required key is missing", "add 'path' under 'data'"]
    )


@case("data-path-not-found")
def _(env: Env) -> Run:
    missing = env.root / "nowhere"
    return Run(
        _fit(env, env.classification(missing)), [f"{missing}", "not found", "check data.path"]
    )


@case("unknown-model")
def _(env: Env) -> Run:
    path = env.config(env.classification(model={"name": "resnet19"}))
    return Run(["fit", path], [f"{path}:", "model.name: unknown model 'resnet19'", "did you mean"])


@case("unknown-loss")
def _(env: Env) -> Run:
    path = env.config(env.classification(loss={"name": "FocalLos"}))
    return Run(
        ["fit", path],
        [f"{path}:", "loss.name: unknown loss 'FocalLos'", "did you mean 'FocalLoss'?"],
    )


@case("model-params-unknown-keyword")
def _(env: Env) -> Run:
    path = env.config(env.classification())
    return Run(
        ["fit", path, "--set", "model.params.foo=1"],
        ["--set: model.params.foo", "simple_cnn", "width", "depth"],
    )


@case("model-params-unknown-keyword-in-file")
def _(env: Env) -> Run:
    path = env.config(env.classification(model={"params": {"width": 8, "dropout": 0.2}}))
    return Run(["fit", path], [f"{path}:", "model.params.dropout", "drop_rate"])


@case("unknown-optimizer")
def _(env: Env) -> Run:
    path = env.config(env.classification(optimizer={"name": "Adamm"}))
    return Run(
        ["fit", path], [f"{path}:", "optimizer.name: unknown optimizer 'Adamm'", "did you mean"]
    )


@case("optimizer-params-unknown-keyword")
def _(env: Env) -> Run:
    path = env.config(env.classification(optimizer={"name": "AdamW", "params": {"momentum": 0.9}}))
    return Run(["fit", path], [f"{path}:", "optimizer.params.momentum", "betas"])


@case("loss-params-unknown-keyword")
def _(env: Env) -> Run:
    path = env.config(env.classification(loss={"name": "CrossEntropyLoss", "params": {"gamma": 2}}))
    return Run(["fit", path], [f"{path}:", "loss.params.gamma", "label_smoothing"])


@case("scheduler-param-wrong-type")
def _(env: Env) -> Run:
    path = env.config(
        env.classification(scheduler={"name": "StepLR", "params": {"step_size": "two"}})
    )
    return Run(["fit", path], [f"{path}:", "scheduler.params.step_size", "'two'"])


@case("format-of-another-task")
def _(env: Env) -> Run:
    path = env.config(env.segmentation(data={"format": "imagefolder"}))
    return Run(["fit", path], [f"{path}:", "data.format", "segmentation formats: masks"])


@case("set-without-equals")
def _(env: Env) -> Run:
    path = env.config(env.classification())
    return Run(["fit", path, "--set", "optimizer.lr"], ["--set", "has no '='", "key.path=value"])


@case("set-unknown-key")
def _(env: Env) -> Run:
    path = env.config(env.classification())
    return Run(
        ["fit", path, "--set", "optimizer.learning_rate=0.1"],
        ["--set: optimizer.learning_rate: unknown key", "valid:"],
    )


@case("resume-last-without-runs")
def _(env: Env) -> Run:
    path = env.config(env.classification())
    return Run(["fit", path, "--resume", "last"], [str(env.runs / "tiny"), "no run", "start with"])


@case("monitor-not-a-metric")
def _(env: Env) -> Run:
    path = env.config(env.classification(checkpoint={"monitor": "val/f1"}))
    return Run(["fit", path], ["checkpoint.monitor", "'val/f1'", "did you mean"])


@case("usage-error-one-line")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    dst = env.root / "tiles"
    return Run(["data", "tile", smears, dst, "--size", "0"], ["--size", "--help"], [dst])


@case("usage-missing-argument")
def _(env: Env) -> Run:
    return Run(["fit"], ["Missing argument 'CONFIG'", "see 'mediscope fit --help'"])


@case("usage-unknown-option")
def _(env: Env) -> Run:
    path = env.config(env.classification())
    return Run(["fit", path, "--sett", "x=1"], ["No such option: --sett", "mediscope fit --help"])


@case("set-value-wrong-type")
def _(env: Env) -> Run:
    path = env.config(env.classification())
    return Run(
        ["fit", path, "--set", "trainer.max_epochs=many"],
        ["--set: trainer.max_epochs: input should be a valid integer", "'many'"],
    )


@case("folds-with-weights")
def _(env: Env) -> Run:
    path = env.config(env.classification())
    weights = env.root / "w.pt"
    weights.write_bytes(b"")
    return Run(
        ["fit", path, "--folds", "3", "--weights", weights],
        ["command line: --folds and --weights exclude each other"],
    )


@case("resume-folder-without-checkpoint")
def _(env: Env) -> Run:
    path = env.config(env.classification())
    folder = env.runs / "tiny" / "20240101-000000"
    folder.mkdir(parents=True)
    return Run(["fit", path, "--resume", folder], [str(folder), "no checkpoints/last.ckpt"])


@case("exclude-entry-matches-nothing")
def _(env: Env) -> Run:
    exclude = env.root / "exclude.txt"
    exclude.write_text("# bad crops\nG-cocci_00003.png\nG-cocci_99999\n", encoding="utf-8")
    config = env.classification(data={"exclude": str(exclude)})
    return Run(_fit(env, config), [f"{exclude}:3", "'G-cocci_99999' matches no sample", "stem"])


# -- classification data -------------------------------------------------------------------


@case("empty-dataset-folder")
def _(env: Env) -> Run:
    empty = env.root / "empty"
    empty.mkdir()
    return Run(
        _fit(env, env.classification(data={"path": str(empty)})),
        [f"{empty}: no class folders", "ROOT/<class name>/"],
    )


@case("class-folder-without-images")
def _(env: Env) -> Run:
    crops = env.copy("crops")
    (crops / "train" / "G-spirilla").mkdir()
    return Run(
        _fit(env, env.classification(crops)),
        [str(crops / "train"), "no samples of G-spirilla", "add samples"],
    )


@case("class-only-in-val")
def _(env: Env) -> Run:
    crops = env.copy("crops")
    lines = ["path,label,split"]
    for image in sorted((crops / "train").rglob("*.png")):
        split = (
            "val"
            if image.parent.name == "G+cocci"
            else ("val" if image.stem.endswith("0") else "train")
        )
        lines.append(f"{image.relative_to(crops)},{image.parent.name},{split}")
    manifest = crops / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = env.classification(data={"format": "csv", "path": str(manifest), "test_path": None})
    return Run(_fit(env, config), [str(manifest), "no samples of G+cocci", "add samples"])


@case("class-only-in-test")
def _(env: Env) -> Run:
    trained = env.trained()
    crops = env.copy("crops")
    extra = crops / "test" / "G-spirilla"
    extra.mkdir()
    shutil.copy(next((crops / "test" / "G-cocci").iterdir()), extra / "x.png")
    config = env.config(env.classification(crops))
    metrics = trained.classification.parent.parent / "test_metrics.json"
    return Run(
        ["test", config, "--checkpoint", trained.classification],
        [str(extra), "'G-spirilla' is not one of data.classes"],
        [metrics],
    )


@case("val-without-a-class", "handled")
def _(env: Env) -> Run:
    crops = env.copy("crops")
    lines = ["path,label,split"]
    for number, image in enumerate(sorted((crops / "train").rglob("*.png"))):
        val = image.parent.name != "G+cocci" and number % 4 == 0
        lines.append(f"{image.relative_to(crops)},{image.parent.name},{'val' if val else 'train'}")
    manifest = crops / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = env.classification(data={"format": "csv", "path": str(manifest), "test_path": None})
    return Run(
        _fit(env, config),
        ["run: ", "the validation split has no samples of 1 of 4 classes (G+cocci)"],
    )


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _jpeg(path: Path, size: int = 32, mode: str = "RGB") -> Path:
    rng = np.random.default_rng(len(str(path)))
    pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, format="JPEG", quality=90)
    return path


@case("truncated-jpeg")
def _(env: Env) -> Run:
    crops = env.copy("crops")
    bad = _jpeg(crops / "train" / "G-cocci" / "broken.jpg", size=64)
    _truncate(bad)
    return Run(_fit(env, env.classification(crops)), [str(bad), "remove or replace the file"])


@case("zero-byte-image")
def _(env: Env) -> Run:
    crops = env.copy("crops")
    bad = crops / "train" / "G-cocci" / "empty.png"
    bad.write_bytes(b"")
    return Run(_fit(env, env.classification(crops)), [str(bad), "remove or replace the file"])


@case("not-an-image-with-image-suffix")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    bad = smears / "images" / "train" / "notes.jpg"
    bad.write_text("these are my notes, not a picture\n", encoding="utf-8")
    (smears / "labels" / "train" / "notes.txt").write_text("0 0.5 0.5 0.1 0.1\n", encoding="utf-8")
    return Run(
        _fit(env, env.detection(smears)), [str(bad), "cannot read the image", "remove or replace"]
    )


def _mode_folder(env: Env, save: Callable[[Path, int], None], suffix: str) -> Path:
    root = env.root / "modes"
    for c, name in enumerate(("a", "b")):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i in range(8):
            save(folder / f"{name}{i}{suffix}", 16 * c + i)
    return root


def _handled_fit(env: Env, root: Path) -> Run:
    config = env.classification(root, data={"test_path": None, "batch_size": 4})
    return Run(_fit(env, config), ["run: "])


@case("16-bit-png", "handled")
def _(env: Env) -> Run:
    def save(path: Path, seed: int) -> None:
        pixels = np.random.default_rng(seed).integers(0, 65535, (24, 24), dtype=np.uint16)
        Image.fromarray(pixels).save(path)
        assert Image.open(path).mode.startswith("I")

    return _handled_fit(env, _mode_folder(env, save, ".png"))


@case("palette-png", "handled")
def _(env: Env) -> Run:
    def save(path: Path, seed: int) -> None:
        pixels = np.random.default_rng(seed).integers(0, 255, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).convert("P", palette=Image.Palette.ADAPTIVE).save(path)
        assert Image.open(path).mode == "P"

    return _handled_fit(env, _mode_folder(env, save, ".png"))


@case("cmyk-jpeg", "handled")
def _(env: Env) -> Run:
    def save(path: Path, seed: int) -> None:
        _jpeg(path, size=24, mode="CMYK")
        assert Image.open(path).mode == "CMYK"

    return _handled_fit(env, _mode_folder(env, save, ".jpg"))


@case("mixed-grayscale-and-rgb", "handled")
def _(env: Env) -> Run:
    def save(path: Path, seed: int) -> None:
        pixels = np.random.default_rng(seed).integers(0, 255, (24, 24, 3), dtype=np.uint8)
        picture = Image.fromarray(pixels)
        (picture.convert("L") if seed % 2 else picture).save(path)

    return _handled_fit(env, _mode_folder(env, save, ".png"))


# -- CSV manifests -------------------------------------------------------------------------


def _manifest(env: Env, rows: list[str]) -> Path:
    crops = env.copy("crops")
    path = crops / "labels.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _csv_rows(env: Env, header: str = "path,label") -> list[str]:
    crops = env.copy("crops")
    images = sorted((crops / "train").rglob("*.png"))
    return [header] + [f"{p.relative_to(crops)},{p.parent.name}" for p in images]


def _csv_config(env: Env, manifest: Path, **data: Any) -> dict[str, Any]:
    return env.classification(
        data={"format": "csv", "path": str(manifest), "test_path": None, **data}
    )


@case("csv-missing-columns")
def _(env: Env) -> Run:
    manifest = _manifest(env, _csv_rows(env, header="file,class"))
    return Run(
        _fit(env, _csv_config(env, manifest)),
        [f"{manifest}:1", "missing column 'path'", "found columns: file, class"],
    )


@case("csv-unknown-label")
def _(env: Env) -> Run:
    rows = _csv_rows(env)
    rows[5] = rows[5].rsplit(",", 1)[0] + ",G-cocus"
    manifest = _manifest(env, rows)
    classes = ["G+bacilli", "G+cocci", "G-bacilli", "G-cocci"]
    config = _csv_config(env, manifest, classes=classes)
    return Run(
        _fit(env, config), [f"{manifest}:6", "unknown label 'G-cocus'", "did you mean 'G-cocci'?"]
    )


@case("csv-image-missing")
def _(env: Env) -> Run:
    rows = _csv_rows(env)
    rows.append("train/G-cocci/ghost.png,G-cocci")
    manifest = _manifest(env, rows)
    return Run(
        _fit(env, _csv_config(env, manifest)),
        [f"{manifest}:{len(rows)}", "ghost.png", "relative to"],
    )


@case("csv-duplicate-image")
def _(env: Env) -> Run:
    rows = _csv_rows(env)
    rows.append(rows[3])
    manifest = _manifest(env, rows)
    return Run(
        _fit(env, _csv_config(env, manifest)),
        [f"{manifest}:{len(rows)}", "duplicate image", "list each image once"],
    )


@case("csv-not-utf8")
def _(env: Env) -> Run:
    manifest = _manifest(env, [])
    manifest.write_bytes("path,label\nbild_ä.png,a\n".encode("latin-1"))
    return Run(_fit(env, _csv_config(env, manifest)), [str(manifest), "not UTF-8"])


# -- YOLO ----------------------------------------------------------------------------------


def _label_file(smears: Path, stem: str = "train_00003") -> Path:
    return smears / "labels" / "train" / f"{stem}.txt"


def _append_line(file: Path, line: str) -> int:
    lines = [*file.read_text(encoding="utf-8").splitlines(), line]
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


@case("yolo-wrong-field-count")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    label = _label_file(smears)
    number = _append_line(label, "1 0.5 0.5 0.1")
    return Run(
        _fit(env, env.detection(smears)),
        [f"{label}:{number}: 4 fields, expected 5", "class cx cy w h", "on_bad_label: skip"],
    )


@case("yolo-score-column")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    label = _label_file(smears)
    number = _append_line(label, "1 0.5 0.5 0.1 0.1 0.93")
    return Run(
        _fit(env, env.detection(smears)),
        [f"{label}:{number}: 6 fields", "training labels carry no score"],
    )


@case("yolo-nan")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    label = _label_file(smears)
    number = _append_line(label, "1 nan 0.5 0.1 0.1")
    return Run(
        _fit(env, env.detection(smears)),
        [f"{label}:{number}: cx is nan (not finite)", "fix the label"],
    )


@case("yolo-out-of-range")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    label = _label_file(smears)
    number = _append_line(label, "1 1.5 0.5 0.1 0.1")
    return Run(
        _fit(env, env.detection(smears)),
        [f"{label}:{number}: cx 1.5 is outside [0, 1]", "fractions of the image size"],
    )


@case("yolo-class-id-beyond-classes")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    label = _label_file(smears)
    number = _append_line(label, "7 0.5 0.5 0.1 0.1")
    return Run(
        _fit(env, env.detection(smears)),
        [f"{label}:{number}: class id 7 is not in 0..3", "4 classes"],
    )


@case("yolo-data-yaml-without-names")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    (smears / "data.yaml").write_text("train: images/train\ntest: images/test\n", encoding="utf-8")
    return Run(
        _fit(env, env.detection(smears)), [str(smears), "class names are not given", "'names'"]
    )


@case("yolo-data-yaml-invalid")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    (smears / "data.yaml").write_text("train: images/train\nnames: [a, b\n", encoding="utf-8")
    return Run(_fit(env, env.detection(smears)), [f"{smears / 'data.yaml'}:", "invalid YAML"])


@case("yolo-label-without-image")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    orphan = _label_file(smears, "lost_0001")
    orphan.write_text("0 0.5 0.5 0.1 0.1\n", encoding="utf-8")
    return Run(
        _fit(env, env.detection(smears)),
        [str(orphan), "label file without an image", "expected an image lost_0001"],
    )


@case("yolo-same-stem-twice")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    image = next((smears / "images" / "train").glob("train_00003.*"))
    twin = image.with_suffix(".jpg" if image.suffix != ".jpg" else ".png")
    Image.open(image).convert("RGB").save(twin)
    return Run(
        _fit(env, env.detection(smears)),
        [str(_label_file(smears)), image.name, twin.name, "rename"],
    )


@case("yolo-bad-lines-skipped", "skip")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    _append_line(_label_file(smears), "1 0.5 0.5 0.1")
    _append_line(_label_file(smears, "train_00004"), "9 0.5 0.5 0.1 0.1")
    config = env.detection(smears, data={"on_bad_label": "skip"})
    return Run(_fit(env, config), ["2 bad label entries skipped", "on_bad_label: skip"])


# -- COCO ----------------------------------------------------------------------------------


def _coco(env: Env) -> tuple[Path, dict[str, Any]]:
    """A COCO detection copy of the smears (annotations_train.json + images/)."""
    from mediscope.data.convert import convert

    coco = env.root / "coco"
    convert("yolo", "coco", env.copy("smears"), coco)
    file = coco / "annotations_train.json"
    return file, json.loads(file.read_text(encoding="utf-8"))


def _coco_fit(env: Env, file: Path, document: dict[str, Any] | str) -> list[str | Path]:
    text = document if isinstance(document, str) else json.dumps(document)
    file.write_text(text, encoding="utf-8")
    return _fit(env, env.detection(file.parent, data={"format": "coco"}))


@case("coco-no-images")
def _(env: Env) -> Run:
    file, document = _coco(env)
    del document["images"]
    return Run(_coco_fit(env, file, document), [str(file), "no 'images' and 'annotations' lists"])


@case("coco-annotation-without-bbox")
def _(env: Env) -> Run:
    file, document = _coco(env)
    del document["annotations"][2]["bbox"]
    return Run(
        _coco_fit(env, file, document),
        [f"{file}: annotations[2]", "bbox is not a list, expected 4", "[x, y, w, h]"],
    )


@case("coco-unknown-category")
def _(env: Env) -> Run:
    file, document = _coco(env)
    document["annotations"][1]["category_id"] = 42
    return Run(
        _coco_fit(env, file, document),
        [
            f"{file}: annotations[1]",
            "category_id 42 is not in categories",
            "category ids: 1, 2, 3, 4",
        ],
    )


@case("coco-invalid-json")
def _(env: Env) -> Run:
    file, _ = _coco(env)
    return Run(_coco_fit(env, file, '{"images": [\n  {"id": 1,\n'), [f"{file}:3", "not valid JSON"])


@case("coco-image-missing")
def _(env: Env) -> Run:
    file, document = _coco(env)
    document["images"][0]["file_name"] = "images/train/ghost.png"
    return Run(
        _coco_fit(env, file, document), [f"{file}: images[0]", "ghost.png not found", "--images"]
    )


@case("coco-bad-annotations-skipped", "skip")
def _(env: Env) -> Run:
    file, document = _coco(env)
    document["annotations"][1]["category_id"] = 42
    del document["annotations"][2]["bbox"]
    document["annotations"][3]["bbox"] = [10, 10, -4, 5]
    file.write_text(json.dumps(document), encoding="utf-8")
    dst = env.root / "yolo-out"
    return Run(
        ["convert", "--from", "coco", "--to", "yolo", "--on-bad-label", "skip", file.parent, dst],
        ["3 bad label entries skipped", "annotations[1]"],
    )


# -- VOC -----------------------------------------------------------------------------------


def _voc(env: Env) -> Path:
    from mediscope.data.convert import convert

    voc = env.root / "voc"
    convert("yolo", "voc", env.copy("smears"), voc)
    return voc


def _voc_fit(env: Env, voc: Path) -> list[str | Path]:
    return _fit(env, env.detection(voc, data={"format": "voc"}))


@case("voc-malformed-xml")
def _(env: Env) -> Run:
    voc = _voc(env)
    xml = sorted((voc / "Annotations").glob("*.xml"))[2]
    xml.write_text(xml.read_text(encoding="utf-8").replace("</object>", "", 1), encoding="utf-8")
    return Run(_voc_fit(env, voc), [f"{xml}:", "malformed XML"])


@case("voc-xmin-greater-than-xmax")
def _(env: Env) -> Run:
    voc = _voc(env)
    xml = sorted((voc / "Annotations").glob("*.xml"))[1]
    text = xml.read_text(encoding="utf-8")
    start = text.index("<xmin>")
    text = text[:start] + "<xmin>120</xmin>" + text[text.index("</xmin>", start) + 7 :]
    xml.write_text(text, encoding="utf-8")
    return Run(_voc_fit(env, voc), [f"{xml}:", "zero or negative size", "x2 > x1"])


@case("voc-unknown-object-name")
def _(env: Env) -> Run:
    voc = _voc(env)
    xml = sorted((voc / "Annotations").glob("*.xml"))[0]
    text = xml.read_text(encoding="utf-8")
    start = text.index("<name>")
    text = text[:start] + "<name>G-cocus</name>" + text[text.index("</name>", start) + 7 :]
    xml.write_text(text, encoding="utf-8")
    return Run(
        _voc_fit(env, voc), [f"{xml}:", "'G-cocus' is not a class", "did you mean 'G-cocci'?"]
    )


@case("voc-bad-objects-skipped", "skip")
def _(env: Env) -> Run:
    voc = _voc(env)
    xml = sorted((voc / "Annotations").glob("*.xml"))[1]
    text = xml.read_text(encoding="utf-8")
    start = text.index("<xmin>")
    text = text[:start] + "<xmin>120</xmin>" + text[text.index("</xmin>", start) + 7 :]
    xml.write_text(text, encoding="utf-8")
    dst = env.root / "coco-out"
    return Run(
        ["convert", "--from", "voc", "--to", "coco", "--on-bad-label", "skip", voc, dst],
        ["1 bad label entry skipped", str(xml)],
    )


# -- segmentation masks --------------------------------------------------------------------


def _mask_of(lesions: Path, stem: str = "train_0003") -> Path:
    return lesions / "labels" / "train" / f"{stem}.png"


@case("mask-wrong-size-fit")
def _(env: Env) -> Run:
    lesions = env.copy("lesions")
    mask = _mask_of(lesions)
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(mask)
    every = {"limit_train_batches": None}  # the bad mask must be read
    return Run(
        _fit(env, env.segmentation(lesions, trainer=every)),
        [str(mask), "mask size 24x20 differs", "width and height"],
    )


@case("mask-wrong-size-convert")
def _(env: Env) -> Run:
    lesions = env.copy("lesions")
    mask = _mask_of(lesions)
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(mask)
    (lesions / "classes.txt").write_text("background\nlesion\n", encoding="utf-8")
    dst = env.root / "coco-out"
    return Run(
        ["convert", "--from", "masks", "--to", "coco", lesions, dst],
        [
            str(mask),
            "mask is 24 x 20, its image 32 x 32",
            "masks must have the size of their images",
        ],
        [dst],
    )


@case("mask-values-beyond-classes-fit")
def _(env: Env) -> Run:
    lesions = env.copy("lesions")
    mask = _mask_of(lesions)
    values = np.zeros((32, 32), np.uint8)
    values[4:9, 4:9] = 7
    Image.fromarray(values).save(mask)
    every = {"limit_train_batches": None}  # the bad mask must be read
    config = env.segmentation(lesions, trainer=every)
    return Run(_fit(env, config), [str(mask), "mask values 7", "data.classes"])


@case("mask-values-beyond-classes-convert")
def _(env: Env) -> Run:
    lesions = env.copy("lesions")
    mask = _mask_of(lesions)
    values = np.zeros((32, 32), np.uint8)
    values[4:9, 4:9] = 7
    Image.fromarray(values).save(mask)
    dst = env.root / "yolo-out"
    return Run(
        [
            "convert",
            "--from",
            "masks",
            "--to",
            "yolo",
            "--classes",
            "background,lesion",
            lesions,
            dst,
        ],
        [str(mask), "mask values 7 are not classes 0..1"],
        [dst],
    )


@case("mask-missing")
def _(env: Env) -> Run:
    lesions = env.copy("lesions")
    mask = _mask_of(lesions)
    mask.unlink()
    image = lesions / "img" / "train" / "train_0003.jpg"
    return Run(
        _fit(env, env.segmentation(lesions)), [str(image), "image without a mask", "expected"]
    )


@case("masks-same-stem-twice")
def _(env: Env) -> Run:
    lesions = env.copy("lesions")
    image = lesions / "img" / "train" / "train_0003.jpg"
    Image.open(image).save(image.with_suffix(".png"))
    return Run(
        _fit(env, env.segmentation(lesions)),
        ["two images of the same stem", "train_0003", "data.img_suffix"],
    )


@case("masks-manifest-missing-columns")
def _(env: Env) -> Run:
    lesions = env.copy("lesions")
    manifest = lesions / "manifest.csv"
    manifest.write_text(
        "image,label\nimg/train/train_0000.jpg,labels/train/train_0000.png\n", encoding="utf-8"
    )
    return Run(
        _fit(env, env.segmentation(manifest)),
        [f"{manifest}:1", "no image and mask columns", "image,mask"],
    )


# -- checkpoints ---------------------------------------------------------------------------


def _test_with(env: Env, checkpoint: Path) -> list[str | Path]:
    trained = env.trained()
    return ["test", env.config(env.classification(trained.data)), "--checkpoint", checkpoint]


@case("checkpoint-random-bytes")
def _(env: Env) -> Run:
    bad = env.root / "random.ckpt"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    return Run(_test_with(env, bad), [str(bad), "not a loadable checkpoint", "mediscope fit"])


@case("checkpoint-text-file")
def _(env: Env) -> Run:
    bad = env.root / "notes.ckpt"
    bad.write_text("epoch 3 looked best\n", encoding="utf-8")
    return Run(_test_with(env, bad), [str(bad), "not a loadable checkpoint", "mediscope fit"])


@case("checkpoint-zip-not-torch")
def _(env: Env) -> Run:
    bad = env.root / "weights.ckpt"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("readme.txt", "not a torch file")
    return Run(_test_with(env, bad), [str(bad), "not a loadable checkpoint", "mediscope fit"])


@case("checkpoint-of-another-task")
def _(env: Env) -> Run:
    other = env.trained().segmentation
    return Run(
        _test_with(env, other), [str(other), "does not fit the configured model", "use the config"]
    )


@case("checkpoint-not-found")
def _(env: Env) -> Run:
    missing = env.root / "best.ckpt"
    return Run(_test_with(env, missing), [str(missing), "checkpoint not found", "check the path"])


@case("weights-random-bytes")
def _(env: Env) -> Run:
    bad = env.root / "weights.pt"
    bad.write_bytes(np.random.default_rng(1).bytes(2048))
    return Run(
        _fit(env, env.classification(), "--weights", str(bad)),
        [str(bad), "not a readable weights file"],
    )


@case("weights-of-another-model")
def _(env: Env) -> Run:
    other = env.trained().segmentation
    return Run(
        _fit(env, env.classification(), "--weights", str(other)),
        [str(other), "no tensor of the file matches the model", "another architecture"],
    )


@case("test-without-test-data")
def _(env: Env) -> Run:
    trained = env.trained()
    config = env.config(env.classification(trained.data, data={"test_path": None}))
    return Run(
        ["test", config, "--checkpoint", trained.classification],
        ["data.test_path", "no test data", "set it"],
    )


@case("test-path-not-found")
def _(env: Env) -> Run:
    trained = env.trained()
    missing = env.root / "no-test"
    config = env.config(env.classification(trained.data, data={"test_path": str(missing)}))
    return Run(
        ["test", config, "--checkpoint", trained.classification],
        [str(missing), "not found", "check data.test_path"],
    )


# -- predict, convert, tile, check ---------------------------------------------------------


@case("predict-truncated-image")
def _(env: Env) -> Run:
    trained = env.trained()
    inputs = env.root / "inputs"
    shutil.copytree(trained.data / "test" / "G-cocci", inputs)
    bad = _jpeg(inputs / "broken.jpg", size=64)
    _truncate(bad)
    out = env.root / "predictions.csv"
    run_dir = trained.classification.parent.parent
    return Run(
        ["predict", run_dir, "--input", inputs, "--output", out],
        [str(bad), "remove or replace"],
        [out],
    )


@case("predict-segmentation-truncated-image")
def _(env: Env) -> Run:
    trained = env.trained()
    inputs = env.root / "inputs"
    inputs.mkdir()
    for i in range(3):
        _jpeg(inputs / f"a{i}.jpg")
    bad = _jpeg(inputs / "b-broken.jpg", size=64)
    _truncate(bad)
    out = env.root / "masks-out"
    run_dir = trained.segmentation.parent.parent
    return Run(
        ["predict", run_dir, "--input", inputs, "--output", out],
        [str(bad), "remove or replace"],
        [out],
    )


@case("predict-segmentation-into-a-csv")
def _(env: Env) -> Run:
    trained = env.trained()
    out = env.root / "masks.csv"
    run_dir = trained.segmentation.parent.parent
    inputs = trained.data / "test" / "G-cocci"
    return Run(
        ["predict", run_dir, "--input", inputs, "--output", out],
        [str(out), "segmentation writes a folder", "give --output a folder"],
        [out],
    )


@case("predict-input-missing")
def _(env: Env) -> Run:
    trained = env.trained()
    missing = env.root / "no-such-images"
    out = env.root / "predictions.csv"
    run_dir = trained.classification.parent.parent
    return Run(
        ["predict", run_dir, "--input", missing, "--output", out],
        [str(missing), "check --input"],
        [out],
    )


@case("convert-unknown-format")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    dst = env.root / "out"
    return Run(
        ["convert", "--from", "yolov8", "--to", "coco", smears, dst],
        ["--from/--to", "did you mean 'yolo'?"],
        [dst],
    )


@case("convert-bad-label")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    label = _label_file(smears, "train_00009")
    number = _append_line(label, "0 0.5 0.5 0 0.1")
    dst = env.root / "coco-out"
    return Run(
        ["convert", "--from", "yolo", "--to", "coco", smears, dst],
        [f"{label}:{number}", "zero or negative size", "--on-bad-label skip"],
        [dst],
    )


@case("convert-into-non-empty-folder")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    dst = env.root / "taken"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine\n", encoding="utf-8")
    return Run(
        ["convert", "--from", "yolo", "--to", "voc", smears, dst],
        [str(dst), "not empty", "--overwrite"],
        [dst],
    )


@case("coco-to-masks-invalid-json")
def _(env: Env) -> Run:
    src = env.root / "broken.json"
    src.write_text('{"images": [], "annotations": [}', encoding="utf-8")
    dst = env.root / "masks-out"
    return Run(
        ["convert", "--from", "coco", "--to", "masks", src, dst],
        [f"{src}:1", "not valid JSON"],
        [dst],
    )


@case("tile-bad-label")
def _(env: Env) -> Run:
    smears = env.copy("smears")
    label = _label_file(smears, "train_00002")
    number = _append_line(label, "2 0.5 0.5 0.1 -0.2")
    dst = env.root / "tiles"
    return Run(
        ["data", "tile", smears, dst, "--size", "64"],
        [f"{label}:{number}", "--on-bad-label skip"],
        [dst],
    )


@case("check-path-missing")
def _(env: Env) -> Run:
    missing = env.root / "no-dataset"
    return Run(["check", missing], [str(missing), "not found"], [env.root / "checks"])
