"""Comparative studies: every combination of a grid of config values, under identical
conditions, each evaluated and all ranked in one leaderboard.

A study folder holds ``study.json`` (the grid, the base overrides, the resolved base
config and each cell's status), ``splits/`` (the train / validation split of every
repeat, computed once and given to every cell), one folder per cell and the
leaderboard files. A cell is one combination of grid values; with ``seeds`` or
``folds`` a cell runs once per seed and / or fold, each in a sub-folder (``seed-0``,
``fold-2``, ``seed-0-fold-2``). Running the same study again skips finished runs (their
metrics files exist), continues interrupted ones from ``last.ckpt`` and reruns the rest.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import shutil
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import lightning as L

from mediscope.config.loader import load_config
from mediscope.config.schema import DEFAULT_MONITOR, Config
from mediscope.data.datamodule import SPLIT_FILE, MediscopeDataModule
from mediscope.engine.api import build_task, fit, task_from_checkpoint, test, validate
from mediscope.engine.checkpoints import read_checkpoint
from mediscope.engine.folds import fold_config
from mediscope.engine.loggers import check_loggers
from mediscope.engine.run_dir import BEST, CHECKPOINTS, LAST
from mediscope.errors import (
    ConfigError,
    DataError,
    InterruptedRun,
    MediscopeError,
    RunDirError,
)
from mediscope.files import write_json_atomic, write_text_atomic, write_with
from mediscope.registry import unknown_name_hint
from mediscope.reports.leaderboard import (
    CellRuns,
    Leaderboard,
    RunMetrics,
    build_leaderboard,
    known_metrics,
    value_label,
    write_leaderboard,
)

STUDY_FILE = "study.json"
RUN_RECORD = "study_run.json"
ERROR_FILE = "error.txt"
STUDY_VERSION = 1

# Data keys that do not change which samples go to train and validation.
_NOT_SPLIT_KEYS = {
    "image_size",
    "channels",
    "normalize",
    "window",
    "sampler",
    "batch_size",
    "num_workers",
    "crop_size",
    "crop_object_prob",
    "test_path",
}


class CellsFailed(MediscopeError):
    """Some cells of a study failed (the others ran); exit code 1."""

    exit_code = 1


@dataclass(frozen=True)
class Repeat:
    """One repetition of a cell: a seed (``None``: the config's) and / or a fold."""

    seed: int | None = None
    fold: int | None = None

    @property
    def tag(self) -> str:
        """The run's sub-folder: ``seed-0``, ``fold-2``, ``seed-0-fold-2``; ``""`` for none."""
        parts = []
        if self.seed is not None:
            parts.append(f"seed-{self.seed}")
        if self.fold is not None:
            parts.append(f"fold-{self.fold}")
        return "-".join(parts)

    @property
    def label(self) -> str:
        """``seed 0, fold 2`` for progress lines."""
        return self.tag.replace("-", " ").replace(" fold", ", fold")


@dataclass
class Cell:
    """One combination of grid values."""

    index: int
    name: str
    values: dict[str, str]

    @property
    def overrides(self) -> list[str]:
        """The cell's ``key=value`` overrides, in grid order."""
        return [f"{key}={value}" for key, value in self.values.items()]

    def describe(self) -> str:
        """``model.name=unet loss.name=DiceLoss``."""
        return " ".join(self.overrides)


@dataclass
class StudyPlan:
    """A validated study: nothing is written until :func:`run_study`."""

    config_path: Path
    overrides: list[str]
    grid: dict[str, list[str]]
    seeds: list[int] | None
    folds: int | None
    folder: Path
    base: Config
    cells: list[Cell]
    repeats: list[Repeat]
    configs: dict[tuple[int, str], Config]
    split_names: dict[tuple[int, str], str]
    metric: str
    has_test: bool
    _datamodules: dict[str, MediscopeDataModule] = field(default_factory=dict, repr=False)


@dataclass
class StudyEvent:
    """A progress report of :func:`run_study` (one run of one cell)."""

    kind: Literal["start", "done", "skip", "failed"]
    cell: Cell
    cells: int
    repeat: Repeat
    repeat_index: int
    repeats: int
    metric: str
    value: float | None = None
    interval: tuple[float, float] | None = None
    seconds: float | None = None
    error: str | None = None


@dataclass
class StudyResult:
    """The study folder, its leaderboard, and the cells that failed."""

    folder: Path
    leaderboard: Leaderboard
    files: dict[str, Path]
    failed: list[str]
    ran: int
    skipped: int


# -- the command line's grid -----------------------------------------------------------


def split_values(text: str) -> list[str]:
    """Splits ``a,b,[1, 2],{x: 1, y: 2}`` at the commas outside brackets and quotes."""
    values, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    return values


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """``["model.name=unet,segnet", "loss.name=DiceLoss"]`` → ``{key: [values]}``.

    Raises:
        ConfigError: for a missing ``=``, an empty or repeated key or value.
    """
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"'{item}' is not KEY=V1,V2",
                where="--grid",
                hint="e.g. --grid model.name=unet,segnet",
            )
        if key in grid:
            raise ConfigError(
                f"'{key}' is given twice", where="--grid", hint=f"list all values once: {key}=a,b,c"
            )
        values = split_values(text)
        if any(not v for v in values):
            raise ConfigError(
                f"{key}: empty value in '{text}'", where="--grid", hint="separate values by commas"
            )
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise ConfigError(f"{key}: values repeat: {', '.join(dupes)}", where="--grid")
        grid[key] = values
    return grid


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``.

    Raises:
        ConfigError: for anything but distinct non-negative integers.
    """
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"'{text}' is not a list of integers", where="--seeds", hint="e.g. --seeds 0,1,2"
        ) from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(
            f"'{text}': give distinct seeds >= 0", where="--seeds", hint="e.g. --seeds 0,1,2"
        )
    return seeds


def cell_name(index: int, values: Sequence[str], width: int) -> str:
    """A folder name for a cell: ``03-unet-DiceLoss`` (unsafe characters become ``_``)."""
    labels = [value_label(v) for v in values]
    slug = "-".join(re.sub(r"[^A-Za-z0-9._+]+", "_", v).strip("_") or "_" for v in labels)
    return f"{index:0{width}d}-{slug[:80]}"


# -- planning: validate everything, write nothing --------------------------------------


def plan_study(
    config_path: str | Path,
    *,
    grid: dict[str, list[str]],
    overrides: Sequence[str] = (),
    seeds: Sequence[int] | None = None,
    folds: int | None = None,
    metric: str | None = None,
    output: str | Path | None = None,
) -> StudyPlan:
    """Loads and checks every cell's config and the data splits; writes nothing.

    Args:
        config_path: The base YAML config.
        grid: Config keys and the values to compare; every combination is a cell.
        overrides: ``key=value`` changes of the base config (``--set``).
        seeds: Run every cell once per seed (mean ± sd in the leaderboard).
        folds: Run every cell as k-fold cross-validation (mean ± sd).
        metric: The leaderboard's main metric; default the checkpoint monitor's.
        output: The study folder; default ``<run.dir>/<run.name>-study``.

    Returns:
        The validated plan.

    Raises:
        ConfigError: a bad grid key or value (naming the cell), seed, fold count or
            metric, or a study folder that holds another study.
        DataError: data that cannot be read or split.
    """
    config_path = Path(config_path)
    overrides = list(overrides)
    seeds = list(seeds) if seeds is not None else None
    if folds is not None and folds < 2:
        raise ConfigError(f"--folds {folds}: at least 2 folds are needed", where="--folds")
    if not grid and seeds is None and folds is None:
        raise ConfigError(
            "nothing to compare",
            where="compare",
            hint="give --grid KEY=V1,V2 (or --seeds, --folds)",
        )
    if seeds is not None and "seed" in grid:
        raise ConfigError(
            "seed is both a grid key and --seeds", where="--grid", hint="use one of them"
        )
    if folds is not None and any(k.startswith("data.split") for k in grid):
        raise ConfigError(
            "--folds sets the split; data.split cannot be a grid key too", where="--grid"
        )
    base = load_config(config_path, overrides)
    folder = Path(output) if output is not None else base.run.dir / f"{base.run.name}-study"

    keys = list(grid)
    combos = list(itertools.product(*grid.values())) if grid else [()]
    width = max(2, len(str(len(combos))))
    cells = [
        Cell(i, cell_name(i, combo, width), dict(zip(keys, combo, strict=True)))
        for i, combo in enumerate(combos, start=1)
    ]
    repeats = [
        Repeat(seed, fold)
        for seed in (seeds if seeds is not None else [None])
        for fold in (range(folds) if folds is not None else [None])
    ]

    configs: dict[tuple[int, str], Config] = {}
    for cell in cells:
        for repeat in repeats:
            configs[(cell.index, repeat.tag)] = _cell_config(
                config_path, overrides, cell, repeat, folds
            )

    # The splits: one per repeat and distinct data setting, shared by every cell.
    signatures = {key: _split_signature(cfg) for key, cfg in configs.items()}
    split_names: dict[tuple[int, str], str] = {}
    datamodules: dict[str, MediscopeDataModule] = {}
    for repeat in repeats:
        distinct = sorted({signatures[(c.index, repeat.tag)] for c in cells})
        for cell in cells:
            key = (cell.index, repeat.tag)
            name = repeat.tag or "holdout"
            if len(distinct) > 1:
                name += f"-{signatures[key]}"
            split_names[key] = name
            if name not in datamodules:
                datamodule = MediscopeDataModule(configs[key])
                datamodule.prepare_samples()  # reads and splits: bad data fails here
                datamodules[name] = datamodule

    classes = next(iter(datamodules.values())).classes
    seen: set[str] = set()
    for cell in cells:
        cfg = configs[(cell.index, repeats[0].tag)]
        _check_cell(cfg, cell, classes, seen)

    chosen = metric or base.checkpoint.monitor.split("/", 1)[-1]
    available = known_metrics(base.task, classes)
    if chosen not in available:
        if metric is not None:
            raise ConfigError(
                f"'{metric}' is not a metric of the {base.task} task",
                where="--metric",
                hint=unknown_name_hint(metric, sorted(available)),
            )
        chosen = DEFAULT_MONITOR[base.task][0].split("/", 1)[-1]  # e.g. monitor val/loss

    has_test = _has_test(next(iter(datamodules.values())))

    plan = StudyPlan(
        config_path=config_path,
        overrides=overrides,
        grid=dict(grid),
        seeds=seeds,
        folds=folds,
        folder=folder,
        base=base,
        cells=cells,
        repeats=repeats,
        configs=configs,
        split_names=split_names,
        metric=chosen,
        has_test=has_test,
        _datamodules=datamodules,
    )
    _check_folder(plan)
    return plan


def _has_test(datamodule: MediscopeDataModule) -> bool:
    """Whether the data has a test split: ``data.test_path`` (which must read) or test rows."""
    if datamodule.config.data.test_path is not None:
        datamodule.test_set()  # a bad test path fails before anything trains
        return True
    try:
        datamodule.test_set()
    except DataError:
        return False
    return True


def _cell_config(
    path: Path, overrides: list[str], cell: Cell, repeat: Repeat, folds: int | None
) -> Config:
    extra = [f"seed={repeat.seed}"] if repeat.seed is not None else []
    try:
        cfg = load_config(path, [*overrides, *cell.overrides, *extra])
    except ConfigError as exc:
        raise _grid_error(exc, cell) from None
    if folds is not None and repeat.fold is not None:
        cfg = fold_config(cfg, folds, repeat.fold)
    return cfg


def _grid_error(exc: MediscopeError, cell: Cell) -> ConfigError:
    """The error of a cell's config, naming the grid value when the grid caused it."""
    where = exc.where or ""
    place, _, dotted = where.rpartition(": ")
    for key, value in cell.values.items():
        if key == dotted or key.startswith(f"{dotted}.") or dotted.startswith(f"{key}."):
            where = f"--grid {key}={value}" + ("" if dotted == key else f": {dotted}")
            break
    else:
        if place != "--set":
            where = f"cell {cell.index} ({cell.describe()}): {where}" if where else where
    return ConfigError(exc.message, where=where or None, hint=exc.hint)


def _split_signature(cfg: Config) -> str:
    data = cfg.data.model_dump(mode="json", exclude=_NOT_SPLIT_KEYS)
    text = json.dumps({"task": cfg.task, "seed": cfg.seed, "data": data}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _check_cell(cfg: Config, cell: Cell, classes: list[str], seen: set[str]) -> None:
    """Builds the cell's model and loss and checks its monitors, as fit would."""
    check_loggers(cfg)
    key = json.dumps(
        {
            k: cfg.model_dump(mode="json")[k]
            for k in ("task", "model", "loss", "checkpoint", "scheduler", "trainer")
        },
        sort_keys=True,
    )
    if key in seen:
        return
    seen.add(key)
    try:
        task = build_task(cfg, classes, class_counts=[1] * len(classes))
        monitors = {"checkpoint.monitor": cfg.checkpoint.monitor}
        if cfg.trainer.early_stopping is not None:
            monitors["trainer.early_stopping.monitor"] = cfg.trainer.early_stopping.monitor
        if cfg.scheduler.monitor:
            monitors["scheduler.monitor"] = cfg.scheduler.monitor
        for name, value in monitors.items():
            if value not in task.metric_names:
                raise ConfigError(
                    f"'{value}' is not a metric of the {cfg.task} task",
                    where=name,
                    hint=unknown_name_hint(value, task.metric_names),
                )
    except MediscopeError as exc:
        raise _grid_error(exc, cell) from None
    except TypeError as exc:  # model.params / loss.params the builder does not take
        if "argument" not in str(exc):
            raise
        raise _grid_error(
            ConfigError(
                str(exc), where="--set: model.params", hint="check model.params and loss.params"
            ),
            cell,
        ) from None
    del task


def _study_identity(plan: StudyPlan) -> dict[str, Any]:
    return {
        "grid": plan.grid,
        "overrides": plan.overrides,
        "seeds": plan.seeds,
        "folds": plan.folds,
        "base_config": plan.base.model_dump(mode="json"),
    }


def _check_folder(plan: StudyPlan) -> None:
    """A new folder, an empty one, or one holding this very study."""
    folder = plan.folder
    if folder.exists() and not folder.is_dir():
        raise RunDirError("exists and is not a folder", where=folder, hint="choose --output DIR")
    state = folder / STUDY_FILE
    if not state.is_file():
        if folder.is_dir() and any(folder.iterdir()):
            raise RunDirError(
                "the folder is not empty and holds no study.json",
                where=folder,
                hint="choose another folder with --output DIR",
            )
        return
    try:
        stored = json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunDirError(f"cannot read the study: {exc}", where=state) from None
    differences = _differences(stored, _study_identity(plan))
    if differences:
        raise ConfigError(
            f"the folder holds a different study ({'; '.join(differences[:3])})",
            where=state,
            hint="rerun that study's own command, or start a new one with --output DIR",
        )


def _differences(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    found = []
    for key in ("grid", "overrides", "seeds", "folds"):
        if stored.get(key) != now[key]:
            found.append(f"{key}: {_short(stored.get(key))} there, {_short(now[key])} now")
    before = _flatten(stored.get("base_config") or {})
    after = _flatten(now["base_config"])
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    for key in changed[:3]:
        found.append(f"{key}: {before.get(key)!r} there, {after.get(key)!r} now")
    return found


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={','.join(map(str, v))}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


# -- running ---------------------------------------------------------------------------


class ParameterCount(L.Callback):
    """Counts the model's parameters when fitting starts."""

    def __init__(self) -> None:
        self.total: int | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = getattr(pl_module, "model", pl_module)
        self.total = int(sum(p.numel() for p in model.parameters()))


def run_folder(plan: StudyPlan, cell: Cell, repeat: Repeat) -> Path:
    """``<study>/<cell>`` or, when cells repeat, ``<study>/<cell>/<seed-s|fold-k>``."""
    return plan.folder / cell.name / repeat.tag if repeat.tag else plan.folder / cell.name


class _Reporter:
    """Sends :class:`StudyEvent` s about one run to the progress callback."""

    def __init__(
        self,
        on_event: Callable[[StudyEvent], None] | None,
        plan: StudyPlan,
        cell: Cell,
        repeat: Repeat,
        index: int,
        run_dir: Path,
    ) -> None:
        self.on_event, self.plan, self.cell = on_event, plan, cell
        self.repeat, self.index, self.run_dir = repeat, index, run_dir

    def __call__(self, kind: Any, **info: Any) -> None:
        if self.on_event is None:
            return
        value, interval = None, None
        if kind in ("done", "skip"):
            value, interval = _main_value(self.run_dir, self.plan)
        self.on_event(
            StudyEvent(
                kind=kind,
                cell=self.cell,
                cells=len(self.plan.cells),
                repeat=self.repeat,
                repeat_index=self.index,
                repeats=len(self.plan.repeats),
                metric=self.plan.metric,
                value=value,
                interval=interval,
                **info,
            )
        )


def run_study(
    plan: StudyPlan, *, on_event: Callable[[StudyEvent], None] | None = None
) -> StudyResult:
    """Runs (or continues) every cell of ``plan`` and writes the leaderboard.

    A cell whose run fails is recorded as failed (with ``error.txt`` in its folder) and
    the study goes on with the next cell; rerunning the study retries it.

    Args:
        plan: From :func:`plan_study`.
        on_event: Called before and after every run (progress display).

    Returns:
        The study folder, the leaderboard, its files and the failed cells.

    Raises:
        InterruptedRun: when training is stopped (Ctrl-C, or SIGTERM as
            TerminatedRun); rerunning continues.
    """
    folder = plan.folder
    folder.mkdir(parents=True, exist_ok=True)
    state = _initial_state(plan)
    _save_state(folder, state)
    splits = _write_splits(plan)

    ran = skipped = 0
    failed: list[str] = []
    for cell, entry in zip(plan.cells, state["cells"], strict=True):
        entry["status"] = "running"
        entry["error"] = None
        _save_state(folder, state)
        finished = 0
        for j, repeat in enumerate(plan.repeats, start=1):
            cfg = plan.configs[(cell.index, repeat.tag)]
            run_dir = run_folder(plan, cell, repeat)
            split_file = splits[plan.split_names[(cell.index, repeat.tag)]]
            report = _Reporter(on_event, plan, cell, repeat, j, run_dir)
            if _finished(run_dir, plan.has_test):
                skipped += 1
                finished += 1
                report("skip")
                continue
            report("start")
            try:
                record = run_one(cfg, run_dir, split_file, has_test=plan.has_test)
            except InterruptedRun as exc:
                entry["status"] = "interrupted"
                _save_state(folder, state)
                raise type(exc)(  # TerminatedRun (SIGTERM) keeps its exit code
                    f"the study stopped in cell {cell.index} ({cell.describe()})",
                    where=folder,
                    hint="rerun the same command to continue where it stopped",
                ) from None
            except Exception as exc:
                message = (
                    str(exc) if isinstance(exc, MediscopeError) else f"{type(exc).__name__}: {exc}"
                )
                run_dir.mkdir(parents=True, exist_ok=True)
                write_text_atomic(run_dir / ERROR_FILE, traceback.format_exc())
                entry["status"] = "failed"
                entry["error"] = message
                _save_state(folder, state)
                failed.append(cell.name)
                report("failed", error=message)
                break
            ran += 1
            finished += 1
            report("done", seconds=record.get("seconds"))
        entry["runs_done"] = finished
        if entry["status"] == "running":
            entry["status"] = "done"
        _save_state(folder, state)

    board = collect_leaderboard(plan)
    files = write_leaderboard(board, folder)
    return StudyResult(folder, board, files, failed, ran, skipped)


def run_one(cfg: Config, run_dir: Path, split_file: Path, *, has_test: bool) -> dict[str, Any]:
    """Trains (or continues) one run in ``run_dir`` on the study's split and evaluates it.

    Returns:
        The run's record (training seconds, parameters, best epoch), also written to
        ``study_run.json``.
    """
    counter = ParameterCount()
    last = run_dir / CHECKPOINTS / LAST
    best = run_dir / CHECKPOINTS / BEST
    record: dict[str, Any] = {"seconds": None, "params": None, "best_epoch": None}
    if last.is_file() and int(read_checkpoint(last).get("epoch", -1)) + 1 >= cfg.trainer.max_epochs:
        # Training ended but the evaluation did not: evaluate the best checkpoint only.
        if not best.is_file():
            raise RunDirError("training ended without a best.ckpt", where=run_dir)
        metrics, _ = validate(cfg, best)
        record["best_epoch"] = int(metrics.get("epoch", -1))
        task, _ = task_from_checkpoint(cfg, best)
        record["params"] = int(sum(p.numel() for p in task.model.parameters()))
    else:
        if last.is_file():
            result = fit(cfg, resume=last, callbacks=[counter])
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_with(run_dir / SPLIT_FILE, lambda tmp: shutil.copyfile(split_file, tmp))
            result = fit(cfg, run_dir=run_dir, callbacks=[counter])
        record.update(seconds=round(result.seconds, 2), params=counter.total)
        record["best_epoch"] = result.best_epoch
        if result.resumed_from is not None:
            record["resumed"] = True
    if has_test:
        test(cfg, best)
    write_json_atomic(run_dir / RUN_RECORD, record)
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    return record


def _finished(run_dir: Path, has_test: bool) -> bool:
    names = ["val_metrics.json", *(["test_metrics.json"] if has_test else [])]
    return all((run_dir / name).is_file() for name in names)


def _initial_state(plan: StudyPlan) -> dict[str, Any]:
    previous: dict[str, Any] = {}
    path = plan.folder / STUDY_FILE
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
    old = {c["name"]: c for c in previous.get("cells", [])}
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    cells = []
    for cell in plan.cells:
        done = sum(_finished(run_folder(plan, cell, r), plan.has_test) for r in plan.repeats)
        status = (
            "done" if done == len(plan.repeats) else old.get(cell.name, {}).get("status", "pending")
        )
        if status == "done" and done < len(plan.repeats):
            status = "pending"  # a finished cell's folder was removed
        cells.append(
            {
                "name": cell.name,
                "values": cell.values,
                "status": status,
                "runs": len(plan.repeats),
                "runs_done": done,
                "error": old.get(cell.name, {}).get("error"),
            }
        )
    return {
        "mediscope_study": STUDY_VERSION,
        "config": str(plan.config_path),
        **_study_identity(plan),
        "metric": plan.metric,
        "split": "test" if plan.has_test else "val",
        "repeats": [r.tag for r in plan.repeats if r.tag],
        "created": previous.get("created", now),
        "updated": now,
        "cells": cells,
    }


def _save_state(folder: Path, state: dict[str, Any]) -> None:
    state["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_json_atomic(folder / STUDY_FILE, state)


def _write_splits(plan: StudyPlan) -> dict[str, Path]:
    """Writes each split once into ``splits/`` (kept when the study continues)."""
    paths = {}
    for name, datamodule in plan._datamodules.items():
        path = plan.folder / "splits" / f"{name}.json"
        if not path.is_file():
            datamodule.write_split(path)
        paths[name] = path
    return paths


def _main_value(run_dir: Path, plan: StudyPlan) -> tuple[float | None, tuple[float, float] | None]:
    metrics = _read_json(run_dir / ("test_metrics.json" if plan.has_test else "val_metrics.json"))
    value = metrics.get(plan.metric)
    low, high = metrics.get(f"ci_low/{plan.metric}"), metrics.get(f"ci_high/{plan.metric}")
    interval = (float(low), float(high)) if low is not None and high is not None else None
    return (float(value) if value is not None else None), interval


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def collect_leaderboard(plan: StudyPlan) -> Leaderboard:
    """The leaderboard of the study folder's finished runs (read from their files)."""
    split = "test" if plan.has_test else "val"
    cells = []
    state = _read_json(plan.folder / STUDY_FILE)
    status = {c["name"]: c.get("status", "pending") for c in state.get("cells", [])}
    for cell in plan.cells:
        runs = []
        for repeat in plan.repeats:
            run_dir = run_folder(plan, cell, repeat)
            if not _finished(run_dir, plan.has_test):
                continue
            metrics = _read_json(run_dir / f"{split}_metrics.json")
            record = _read_json(run_dir / RUN_RECORD)
            best_epoch = record.get("best_epoch")
            if best_epoch is None and "epoch" in metrics:
                best_epoch = int(metrics["epoch"])
            cfg = plan.configs[(cell.index, repeat.tag)]
            runs.append(
                RunMetrics(
                    repeat=repeat.tag,
                    seed=cfg.seed,
                    fold=repeat.fold,
                    metrics={k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
                    params=record.get("params"),
                    seconds=record.get("seconds"),
                    best_epoch=best_epoch,
                )
            )
        cells.append(
            CellRuns(
                name=cell.name,
                values=cell.values,
                runs=runs,
                expected=len(plan.repeats),
                status=status.get(cell.name, "pending"),
            )
        )
    repeat_kind = _repeat_kind(plan)
    return build_leaderboard(
        cells,
        grid_keys=list(plan.grid),
        metric=plan.metric,
        task=plan.base.task,
        split=split,
        repeat_kind=repeat_kind,
        title=plan.folder.name,
    )


def _repeat_kind(plan: StudyPlan) -> str | None:
    if plan.seeds is not None and plan.folds is not None:
        return f"{len(plan.seeds)} seeds × {plan.folds} folds"
    if plan.seeds is not None:
        return f"{len(plan.seeds)} seeds"
    if plan.folds is not None:
        return f"{plan.folds} folds"
    return None


__all__ = [
    "Cell",
    "Repeat",
    "StudyEvent",
    "StudyPlan",
    "StudyResult",
    "parse_grid",
    "parse_seeds",
    "plan_study",
    "run_study",
]
