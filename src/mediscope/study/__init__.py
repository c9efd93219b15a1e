"""Comparative studies: every combination of a grid of config values, under identical
conditions, each evaluated and all ranked in one leaderboard.

A study folder holds ``study.json`` (the grid, the base overrides, the resolved base
config and each cell's status), ``splits/`` (the train / validation split of every
repeat, computed once and given to every cell), one folder per cell and the
leaderboard files. A cell is one combination of grid values; with ``seeds`` or
``folds`` a cell runs once per seed and / or fold, each in a sub-folder (``seed-0``,
``fold-2``, ``seed-0-fold-2``). Running the same study again skips finished runs (their
metrics files exist), continues interrupted ones from ``last.ckpt`` and reruns the rest.
:func:`run_study` runs one run after another in this process; :func:`run_study_on_ray`
runs them as tasks on a Ray cluster (:mod:`mediscope.study.cluster`).
"""

from __future__ import annotations

from mediscope.study.cluster import RayOptions, run_study_on_ray
from mediscope.study.grid import parse_grid, parse_seeds, split_values
from mediscope.study.leaderboard import collect_leaderboard
from mediscope.study.plan import Cell, Repeat, StudyPlan, plan_study
from mediscope.study.run import CellsFailed, StudyEvent, StudyResult, run_one, run_study
from mediscope.study.state import run_folder

__all__ = [
    "Cell",
    "CellsFailed",
    "RayOptions",
    "Repeat",
    "StudyEvent",
    "StudyPlan",
    "StudyResult",
    "collect_leaderboard",
    "parse_grid",
    "parse_seeds",
    "plan_study",
    "run_folder",
    "run_one",
    "run_study",
    "run_study_on_ray",
    "split_values",
]
