"""Running a study's runs as tasks on a Ray cluster (``compare --backend ray``).

Every run (one cell, or one seed / fold of a cell) is one Ray Core task that calls
:func:`~mediscope.study.run.run_one`, the function the local backend calls, in the
study folder's run folder; the driver writes ``study.json``, the shared splits and the
leaderboard, exactly as :func:`~mediscope.study.run.run_study` does.

Why Ray Core tasks and not Ray Tune's trial runner: a study is a fixed grid whose state
lives in its folder (finished runs are skipped, interrupted ones continue from their
``last.ckpt``), and its leaderboard is computed from the runs' metrics files. Tune
brings its own experiment folder, trial checkpoints, resume logic and result store,
which would duplicate (and could disagree with) the study folder, and its search
algorithms and trial schedulers have nothing to do in a fixed grid. A task per run
gives what a study needs from a cluster: placement by resources (``num_cpus``,
``num_gpus`` per run) and retries when a worker or node dies (``max_retries``); a
retried run continues from its ``last.ckpt`` like a rerun of the local study.

The study folder and the data must be on a file system every node sees (one machine,
or NFS and the like), and every node needs the same mediscope installation.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediscope.config.schema import Config
from mediscope.errors import ConfigError, InterruptedRun, Terminated, TerminatedRun
from mediscope.files import write_text_atomic
from mediscope.study.plan import Cell, Repeat, StudyPlan
from mediscope.study.run import (
    ERROR_FILE,
    StudyEvent,
    StudyResult,
    _Reporter,
    finish_study,
    record_failure,
    run_one,
    start_study,
)
from mediscope.study.state import run_finished, run_folder, save_state

INSTALL_HINT = "pip install 'mediscope[ray]'"


@dataclass(frozen=True)
class RayOptions:
    """Where and how the runs of a study go on Ray.

    Attributes:
        address: The cluster (``ray.init(address=...)``: ``auto``, ``HOST:PORT``,
            ``ray://HOST:10001``); ``None`` joins the cluster this process is connected
            to, else the one ``RAY_ADDRESS`` names, else starts one on this machine.
        cpus_per_cell: CPUs Ray reserves for each run (fractions allowed).
        gpus_per_cell: GPUs Ray reserves for each run (fractions allowed); Ray sets
            ``CUDA_VISIBLE_DEVICES`` so that the run sees only those.
        max_retries: How often a run whose worker process or node died is started
            again; it continues from its ``last.ckpt``.
    """

    address: str | None = None
    cpus_per_cell: float = 1.0
    gpus_per_cell: float = 0.0
    max_retries: int = 3

    def check(self) -> None:
        """Refuses resources Ray cannot reserve.

        Raises:
            ConfigError: a non-positive ``cpus_per_cell``, a negative ``gpus_per_cell``
                or ``max_retries``.
        """
        if not self.cpus_per_cell > 0:
            raise ConfigError(
                f"{self.cpus_per_cell:g}: give a positive number of CPUs",
                where="--cpus-per-cell",
            )
        if not self.gpus_per_cell >= 0:
            raise ConfigError(
                f"{self.gpus_per_cell:g}: give 0 or more GPUs", where="--gpus-per-cell"
            )
        if self.max_retries < 0:
            raise ConfigError(f"{self.max_retries}: give 0 or more", where="max_retries")


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        ConfigError: Ray is not installed (naming the extra that installs it).
    """
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "the ray backend needs Ray, which is not installed",
            where="--backend ray",
            hint=INSTALL_HINT,
        ) from None
    return ray


def task_name(cell: Cell, repeat: Repeat) -> str:
    """The Ray task's name (its worker's process title is ``ray::<name>``).

    >>> task_name(Cell(1, "01-unet", {"model.name": "unet"}), Repeat(seed=2))
    'mediscope:01-unet/seed-2'
    """
    return f"mediscope:{cell.name}" + (f"/{repeat.tag}" if repeat.tag else "")


def run_task(cfg: Config, run_dir: Path, split_file: Path, has_test: bool) -> dict[str, Any]:
    """One run, on a Ray worker: :func:`~mediscope.study.run.run_one` with its outcome
    returned rather than raised (a failure's traceback goes to the run's ``error.txt``).

    Returns:
        ``{"status": "done" | "failed" | "interrupted", "seconds", "error", "node"}``.
    """
    node = socket.gethostname()
    outcome: dict[str, Any] = {"status": "done", "seconds": None, "error": None, "node": node}
    if not split_file.is_file():
        outcome.update(
            status="failed",
            error=f"{split_file} cannot be read on node {node}: a study on Ray needs its "
            "folder and data on a file system every node sees",
        )
        return outcome
    try:
        record = run_one(cfg, run_dir, split_file, has_test=has_test)
    except InterruptedRun as exc:
        outcome.update(status="interrupted", error=str(exc))
    except Exception as exc:
        outcome.update(status="failed", error=record_failure(run_dir, exc))
    else:
        outcome["seconds"] = record.get("seconds")
    return outcome


@dataclass
class _Pending:
    cell: Cell
    entry: dict[str, Any]
    repeat: Repeat
    report: _Reporter


def run_study_on_ray(
    plan: StudyPlan,
    options: RayOptions,
    *,
    on_event: Callable[[StudyEvent], None] | None = None,
) -> StudyResult:
    """Runs (or continues) every run of ``plan`` as a Ray task; writes the leaderboard.

    Finished runs are skipped, the others are submitted at once and Ray starts them as
    the cluster's resources allow. A run that fails is recorded (``error.txt``, the
    cell's status) and the others go on; a run whose worker dies is retried by Ray
    (``options.max_retries``) and continues from its ``last.ckpt``.

    Args:
        plan: From :func:`~mediscope.study.plan.plan_study`.
        options: The cluster and each run's resources.
        on_event: Called when a run is queued, skipped, done or failed.

    Returns:
        The study folder, the leaderboard, its files and the failed cells.

    Raises:
        ConfigError: Ray is not installed, or the cluster cannot be reached.
        InterruptedRun: Ctrl-C (``TerminatedRun``: SIGTERM) stopped the study; its
            runs are cancelled and rerunning the study continues them.
    """
    options.check()
    ray = import_ray()
    started_here = _connect(ray, options.address)
    try:
        return _run(ray, plan, options, on_event)
    finally:
        if started_here:
            ray.shutdown()


def _connect(ray: Any, address: str | None) -> bool:
    """Connects to the cluster (or starts a local one); whether this call did."""
    if ray.is_initialized():
        return False
    local = address is None and not _env_address()
    _probe(address or _env_address())
    try:
        ray.init(
            address=address,
            include_dashboard=False if local else None,
            log_to_driver=False,
            logging_level="ERROR",
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(
            f"cannot connect to the Ray cluster: {message}",
            where=f"--address {address}" if address else "--backend ray",
            hint="start it with `ray start --head` and give its address",
        ) from None
    return True


def _probe(address: str | None, seconds: float = 5.0) -> None:
    """Fails at once when nothing listens at a ``HOST:PORT`` address (``ray.init`` would
    retry for minutes); ``auto`` and ``ray://`` addresses are left to Ray."""
    if not address or address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as exc:
        raise ConfigError(
            f"no Ray cluster answers at {address} ({exc.strerror or type(exc).__name__})",
            where=f"--address {address}",
            hint="start the head with `ray start --head --port 6379` and give HOST:6379",
        ) from None


def _env_address() -> str | None:
    return os.environ.get("RAY_ADDRESS") or None


def _run(
    ray: Any,
    plan: StudyPlan,
    options: RayOptions,
    on_event: Callable[[StudyEvent], None] | None,
) -> StudyResult:
    state, splits = start_study(plan)
    remote = ray.remote(max_retries=options.max_retries, retry_exceptions=False)(run_task)
    pending: dict[Any, _Pending] = {}
    ran = skipped = 0
    for cell, entry in zip(plan.cells, state["cells"], strict=True):
        entry["error"] = None
        for j, repeat in enumerate(plan.repeats, start=1):
            run_dir = run_folder(plan, cell, repeat)
            report = _Reporter(on_event, plan, cell, repeat, j, run_dir)
            if run_finished(run_dir, plan.has_test):
                skipped += 1
                report("skip")
                continue
            key = (cell.index, repeat.tag)
            ref = remote.options(
                name=task_name(cell, repeat),
                num_cpus=options.cpus_per_cell,
                num_gpus=options.gpus_per_cell,
            ).remote(plan.configs[key], run_dir, splits[plan.split_names[key]], plan.has_test)
            pending[ref] = _Pending(cell, entry, repeat, report)
            report("queued")
        entry["status"] = "running" if any(p.entry is entry for p in pending.values()) else "done"
        entry["runs_done"] = len(plan.repeats) - sum(p.entry is entry for p in pending.values())
    save_state(plan.folder, state)

    failed: list[str] = []
    try:
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            run = pending.pop(ref)
            outcome = _outcome(ray, ref, run_folder(plan, run.cell, run.repeat))
            entry = run.entry
            if outcome["status"] == "done":
                ran += 1
                entry["runs_done"] += 1
                if entry["status"] == "running" and entry["runs_done"] == len(plan.repeats):
                    entry["status"] = "done"
                run.report("done", seconds=outcome["seconds"])
            else:  # failed, or stopped on its node (SIGTERM there): rerunning continues it
                entry["status"] = outcome["status"]
                entry["error"] = outcome["error"]
                if run.cell.name not in failed:
                    failed.append(run.cell.name)
                run.report("failed", error=outcome["error"])
            save_state(plan.folder, state)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated) on the driver
        _cancel(ray, pending)
        for run in pending.values():
            run.entry["status"] = "interrupted"
        save_state(plan.folder, state)
        stopped = next(iter(pending.values()), None)
        where = f" in cell {stopped.cell.index} ({stopped.cell.describe()})" if stopped else ""
        kind = TerminatedRun if isinstance(exc, Terminated) else InterruptedRun
        raise kind(
            f"the study stopped{where}; its unfinished runs were cancelled",
            where=plan.folder,
            hint="rerun the same command to continue where it stopped",
        ) from None
    failed.sort(key=lambda name: next(c.index for c in plan.cells if c.name == name))
    return finish_study(plan, failed, ran, skipped)


def _outcome(ray: Any, ref: Any, run_dir: Path) -> dict[str, Any]:
    """The task's outcome; a task Ray gave up on (its worker or node died more often
    than ``max_retries``, or it was cancelled) counts as failed."""
    try:
        outcome: dict[str, Any] = ray.get(ref)
    except ray.exceptions.RayError as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), "")
        message = f"Ray gave up on the run: {type(exc).__name__}: {first.strip()}"
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / ERROR_FILE, f"{exc}\n")
        return {"status": "failed", "seconds": None, "error": message}
    return outcome


def _cancel(ray: Any, pending: dict[Any, _Pending]) -> None:
    """Cancels the unfinished tasks (a KeyboardInterrupt in each, so that training
    stops as on Ctrl-C) and gives them a few seconds to stop."""
    refs = list(pending)
    for ref in refs:
        ray.cancel(ref)
    if refs:
        ray.wait(refs, num_returns=len(refs), timeout=15)
