"""Running a study: every cell's runs (trained or continued, then evaluated), progress
events, failures recorded per cell, and the leaderboard at the end."""

from __future__ import annotations

import os
import shutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L

from mediscope.api import fit, test, validate
from mediscope.config.schema import Config
from mediscope.data.datamodule import SPLIT_FILE
from mediscope.engine.checkpoints import read_checkpoint
from mediscope.engine.restore import task_from_checkpoint
from mediscope.engine.run_dir import BEST, CHECKPOINTS, LAST
from mediscope.errors import InterruptedRun, MediscopeError, RunDirError
from mediscope.files import write_json_atomic, write_text_atomic, write_with
from mediscope.reports.leaderboard import Leaderboard, write_leaderboard
from mediscope.study.leaderboard import collect_leaderboard
from mediscope.study.plan import Cell, Repeat, StudyPlan
from mediscope.study.state import (
    RUN_RECORD,
    initial_state,
    read_json,
    run_finished,
    run_folder,
    save_state,
)

ERROR_FILE = "error.txt"


class CellsFailed(MediscopeError):
    """Some cells of a study failed (the others ran); exit code 1."""

    exit_code = 1


@dataclass
class StudyEvent:
    """A progress report of :func:`run_study` (one run of one cell)."""

    kind: Literal["queued", "start", "done", "skip", "failed"]
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


class ParameterCount(L.Callback):
    """Counts the model's parameters when fitting starts."""

    def __init__(self) -> None:
        self.total: int | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = getattr(pl_module, "model", pl_module)
        self.total = int(sum(p.numel() for p in model.parameters()))


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
    state, splits = start_study(plan)

    ran = skipped = 0
    failed: list[str] = []
    for cell, entry in zip(plan.cells, state["cells"], strict=True):
        entry["status"] = "running"
        entry["error"] = None
        save_state(folder, state)
        finished = 0
        for j, repeat in enumerate(plan.repeats, start=1):
            cfg = plan.configs[(cell.index, repeat.tag)]
            run_dir = run_folder(plan, cell, repeat)
            split_file = splits[plan.split_names[(cell.index, repeat.tag)]]
            report = _Reporter(on_event, plan, cell, repeat, j, run_dir)
            if run_finished(run_dir, plan.has_test):
                skipped += 1
                finished += 1
                report("skip")
                continue
            report("start")
            try:
                record = run_one(cfg, run_dir, split_file, has_test=plan.has_test)
            except InterruptedRun as exc:
                entry["status"] = "interrupted"
                save_state(folder, state)
                raise type(exc)(  # TerminatedRun (SIGTERM) keeps its exit code
                    f"the study stopped in cell {cell.index} ({cell.describe()})",
                    where=folder,
                    hint="rerun the same command to continue where it stopped",
                ) from None
            except Exception as exc:
                message = record_failure(run_dir, exc)
                entry["status"] = "failed"
                entry["error"] = message
                save_state(folder, state)
                failed.append(cell.name)
                report("failed", error=message)
                break
            ran += 1
            finished += 1
            report("done", seconds=record.get("seconds"))
        entry["runs_done"] = finished
        if entry["status"] == "running":
            entry["status"] = "done"
        save_state(folder, state)

    return finish_study(plan, failed, ran, skipped)


def start_study(plan: StudyPlan) -> tuple[dict[str, Any], dict[str, Path]]:
    """Creates the study folder, writes ``study.json`` and the shared splits.

    Returns:
        The study's state (``study.json``'s content) and each split's file by name.
    """
    plan.folder.mkdir(parents=True, exist_ok=True)
    state = initial_state(plan)
    save_state(plan.folder, state)
    return state, _write_splits(plan)


def finish_study(plan: StudyPlan, failed: list[str], ran: int, skipped: int) -> StudyResult:
    """Collects and writes the leaderboard of the study folder's finished runs."""
    board = collect_leaderboard(plan)
    files = write_leaderboard(board, plan.folder)
    return StudyResult(plan.folder, board, files, failed, ran, skipped)


def record_failure(run_dir: Path, exc: BaseException) -> str:
    """Writes the traceback of ``exc`` (being handled) to the run's ``error.txt``.

    Returns:
        The one-line message of the failure.
    """
    message = str(exc) if isinstance(exc, MediscopeError) else f"{type(exc).__name__}: {exc}"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / ERROR_FILE, traceback.format_exc())
    return message


def run_one(cfg: Config, run_dir: Path, split_file: Path, *, has_test: bool) -> dict[str, Any]:
    """Trains (or continues) one run in ``run_dir`` on the study's split and evaluates it.

    Returns:
        The run's record (training seconds, wall and CPU, parameters, best epoch), also
        written to ``study_run.json``.
    """
    counter = ParameterCount()
    last = run_dir / CHECKPOINTS / LAST
    best = run_dir / CHECKPOINTS / BEST
    record: dict[str, Any] = {
        "seconds": None,
        "cpu_seconds": None,
        "params": None,
        "best_epoch": None,
    }
    if last.is_file() and int(read_checkpoint(last).get("epoch", -1)) + 1 >= cfg.trainer.max_epochs:
        # Training ended but the evaluation did not: evaluate the best checkpoint only.
        if not best.is_file():
            raise RunDirError("training ended without a best.ckpt", where=run_dir)
        metrics, _ = validate(cfg, best)
        record["best_epoch"] = int(metrics.get("epoch", -1))
        task, _ = task_from_checkpoint(cfg, best)
        record["params"] = int(sum(p.numel() for p in task.model.parameters()))
    else:
        started = cpu_seconds()
        if last.is_file():
            result = fit(cfg, resume=last, callbacks=[counter], test=False)
        else:
            # Without last.ckpt nothing can be continued: what a run that failed or was
            # killed before its first epoch ended left behind goes, the run starts afresh.
            if run_dir.is_dir():
                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True)
            write_with(run_dir / SPLIT_FILE, lambda tmp: shutil.copyfile(split_file, tmp))
            result = fit(cfg, run_dir=run_dir, callbacks=[counter], test=False)
        record.update(
            seconds=round(result.seconds, 2),
            cpu_seconds=round(cpu_seconds() - started, 2),
            params=counter.total,
        )
        record["best_epoch"] = result.best_epoch
        if result.resumed_from is not None:
            record["resumed"] = True
    if has_test:  # here rather than in fit: also after a run stopped in its evaluation
        test(cfg, best)
    write_json_atomic(run_dir / RUN_RECORD, record)
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    return record


def cpu_seconds() -> float:
    """CPU seconds (user and system) used so far by this process and its finished
    children (data-loader workers): unlike wall time, not lengthened by other programs
    sharing the machine."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


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
    metrics = read_json(run_dir / ("test_metrics.json" if plan.has_test else "val_metrics.json"))
    value = metrics.get(plan.metric)
    low, high = metrics.get(f"ci_low/{plan.metric}"), metrics.get(f"ci_high/{plan.metric}")
    interval = (float(low), float(high)) if low is not None and high is not None else None
    return (float(value) if value is not None else None), interval
