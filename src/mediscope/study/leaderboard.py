"""A study's leaderboard, collected from the metrics files of its finished runs, with
every single-run cell compared with the best on the images they share."""

from __future__ import annotations

import math
from pathlib import Path

from mediscope.evaluation.paired import Comparisons, compare_to_best
from mediscope.reports.leaderboard import (
    CellRuns,
    Leaderboard,
    RunMetrics,
    build_leaderboard,
    lower_is_better,
)
from mediscope.study.plan import StudyPlan
from mediscope.study.state import RUN_RECORD, STUDY_FILE, read_json, run_finished, run_folder


def collect_leaderboard(plan: StudyPlan) -> Leaderboard:
    """The leaderboard of the study folder's finished runs (read from their files)."""
    split = "test" if plan.has_test else "val"
    cells = []
    folders: dict[str, Path] = {}
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
            folders[cell.name] = run_dir
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
    board = build_leaderboard(
        cells,
        grid_keys=list(plan.grid),
        metric=plan.metric,
        task=plan.base.task,
        split=split,
        repeat_kind=repeat_kind,
        title=plan.folder.name,
    )
    if repeat_kind is None and not board.table.empty and board.table["rank"].iloc[0] == "1":
        report = plan.base.report
        comparisons = compare_to_best(
            folders,
            str(board.table["cell"].iloc[0]),
            split,
            plan.metric,
            lower_is_better=lower_is_better(plan.metric),
            resamples=report.bootstrap,
            confidence=report.confidence,
            seed=plan.base.seed,
        )
        if comparisons is not None:
            add_comparisons(board, comparisons)
    return board


def add_comparisons(board: Leaderboard, comparisons: Comparisons) -> None:
    """Adds the paired comparisons with the best cell to ``board`` (columns of its table:
    ``vs_best`` and its interval, the p-values raw and Holm-corrected, ``not_worse``)."""
    table = board.table
    columns: dict[str, list[object]] = {
        key: []
        for key in (
            "vs_best",
            "vs_best_ci_low",
            "vs_best_ci_high",
            "vs_best_p_bootstrap",
            "mcnemar_p",
            "mcnemar_p_holm",
            "delong_p",
            "delong_p_holm",
            "vs_best_test",
            "vs_best_p",
            "vs_best_p_holm",
            "not_worse",
        )
    }
    nan = math.nan
    for name in table["cell"]:
        found = comparisons.cells.get(name)
        if name == comparisons.best:
            values: list[object] = [0.0, 0.0, 0.0, nan, nan, nan, nan, nan, "", nan, nan, True]
        elif found is None:
            values = [nan] * 8 + ["", nan, nan, None]
        else:
            d = found.difference
            values = [
                d.value,
                d.low,
                d.high,
                d.p_value,
                found.mcnemar.p_value if found.mcnemar else nan,
                found.mcnemar_holm,
                found.delong.p_value if found.delong else nan,
                found.delong_holm,
                found.test,
                found.p_value,
                found.p_holm,
                found.not_worse,
            ]
        for key, value in zip(columns, values, strict=True):
            columns[key].append(value)
    for test in ("mcnemar", "delong"):  # only the tests that ran
        if not any(isinstance(v, float) and not math.isnan(v) for v in columns[f"{test}_p"]):
            del columns[f"{test}_p"], columns[f"{test}_p_holm"]
    for key, values in columns.items():
        table[key] = values
    board.paired = {
        "best": comparisons.best,
        "images": comparisons.images,
        "unit": comparisons.unit,
        "groups": comparisons.groups,
        "alpha": comparisons.alpha,
        "test": next((c.test for c in comparisons.cells.values()), "bootstrap"),
        "resamples": next((c.difference.resamples for c in comparisons.cells.values()), 0),
    }


def _repeat_kind(plan: StudyPlan) -> str | None:
    if plan.seeds is not None and plan.folds is not None:
        return f"{len(plan.seeds)} seeds × {plan.folds} folds"
    if plan.seeds is not None:
        return f"{len(plan.seeds)} seeds"
    if plan.folds is not None:
        return f"{plan.folds} folds"
    return None
