"""A study's leaderboard, collected from the metrics files of its finished runs."""

from __future__ import annotations

from mediscope.reports.leaderboard import (
    CellRuns,
    Leaderboard,
    RunMetrics,
    build_leaderboard,
)
from mediscope.study.plan import StudyPlan
from mediscope.study.state import RUN_RECORD, STUDY_FILE, read_json, run_finished, run_folder


def collect_leaderboard(plan: StudyPlan) -> Leaderboard:
    """The leaderboard of the study folder's finished runs (read from their files)."""
    split = "test" if plan.has_test else "val"
    cells = []
    state = read_json(plan.folder / STUDY_FILE)
    status = {c["name"]: c.get("status", "pending") for c in state.get("cells", [])}
    for cell in plan.cells:
        runs = []
        for repeat in plan.repeats:
            run_dir = run_folder(plan, cell, repeat)
            if not run_finished(run_dir, plan.has_test):
                continue
            metrics = read_json(run_dir / f"{split}_metrics.json")
            record = read_json(run_dir / RUN_RECORD)
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
                    cpu_seconds=record.get("cpu_seconds"),
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
