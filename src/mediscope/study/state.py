"""The study folder's state: ``study.json`` (read, written, compared with the plan) and
which runs are finished, so that running a study again continues it."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mediscope.errors import ConfigError, RunDirError
from mediscope.files import write_json_atomic

if TYPE_CHECKING:
    from mediscope.study.plan import Cell, Repeat, StudyPlan

STUDY_FILE = "study.json"
RUN_RECORD = "study_run.json"
STUDY_VERSION = 1


def _study_identity(plan: StudyPlan) -> dict[str, Any]:
    """What makes two studies the same: the grid, overrides, repeats and base config."""
    return {
        "grid": plan.grid,
        "overrides": plan.overrides,
        "seeds": plan.seeds,
        "folds": plan.folds,
        "base_config": plan.base.model_dump(mode="json"),
    }


def check_folder(plan: StudyPlan) -> None:
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


def run_folder(plan: StudyPlan, cell: Cell, repeat: Repeat) -> Path:
    """``<study>/<cell>`` or, when cells repeat, ``<study>/<cell>/<seed-s|fold-k>``."""
    return plan.folder / cell.name / repeat.tag if repeat.tag else plan.folder / cell.name


def run_finished(run_dir: Path, has_test: bool) -> bool:
    """Whether a run's metrics files exist (``test_metrics.json`` too if there is a test split)."""
    names = ["val_metrics.json", *(["test_metrics.json"] if has_test else [])]
    return all((run_dir / name).is_file() for name in names)


def initial_state(plan: StudyPlan) -> dict[str, Any]:
    """The ``study.json`` content at the start of a run, keeping what an earlier run stored."""
    previous: dict[str, Any] = {}
    path = plan.folder / STUDY_FILE
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
    old = {c["name"]: c for c in previous.get("cells", [])}
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    cells = []
    for cell in plan.cells:
        done = sum(run_finished(run_folder(plan, cell, r), plan.has_test) for r in plan.repeats)
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


def save_state(folder: Path, state: dict[str, Any]) -> None:
    """Writes ``study.json`` with a new ``updated`` time."""
    state["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_json_atomic(folder / STUDY_FILE, state)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file's content; ``{}`` when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
