"""Planning a study: its cells, repeats, configs and shared splits; validates everything
and writes nothing."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mediscope.api.folds import fold_config
from mediscope.config.schema import Config
from mediscope.data.datamodule import MediscopeDataModule
from mediscope.engine.loggers import check_loggers
from mediscope.errors import ConfigError, DataError, MediscopeError
from mediscope.registry import unknown_name_hint
from mediscope.reports.leaderboard import known_metrics, value_label
from mediscope.study.grid import same_values_error
from mediscope.study.state import check_folder
from mediscope.tasks import build_task, data_module, task_spec
from mediscope.tasks.validate import load_config

# Data keys that do not change which samples go to train and validation.
_NOT_SPLIT_KEYS = {
    "image_size",
    "channels",
    "normalize",
    "dicom_window",
    "intensity",
    "max_pixels",
    "sampler",
    "batch_size",
    "num_workers",
    "persistent_workers",
    "pin_memory",
    "prefetch_factor",
    "crop_size",
    "crop_object_prob",
    "test_path",
}


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
    """One combination of grid values.

    ``notes`` say what the plan changed in the cell's config beyond its grid values
    (base ``model.params`` that the cell's model does not take, left out).
    """

    index: int
    name: str
    values: dict[str, str]
    notes: list[str] = field(default_factory=list)

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


def cell_name(index: int, values: Sequence[str], width: int) -> str:
    """A folder name for a cell: ``03-unet-DiceLoss`` (unsafe characters become ``_``)."""
    labels = [value_label(v) for v in values]
    slug = "-".join(re.sub(r"[^A-Za-z0-9._+]+", "_", v).strip("_") or "_" for v in labels)
    return f"{index:0{width}d}-{slug[:80]}"


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

    _refuse_equal_cells(cells, [configs[(c.index, repeats[0].tag)] for c in cells])

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
                datamodule = data_module(configs[key])
                datamodule.prepare_samples()  # reads and splits: bad data fails here
                datamodules[name] = datamodule

    classes = next(iter(datamodules.values())).classes
    seen: dict[str, list[str]] = {}
    for cell in cells:
        cfg = configs[(cell.index, repeats[0].tag)]
        dropped = _check_cell(cfg, cell, classes, seen)
        if dropped:
            for repeat in repeats:
                key = (cell.index, repeat.tag)
                configs[key] = _without_model_params(configs[key], dropped)
            names = ", ".join(f"model.params.{k}" for k in dropped)
            cell.notes.append(
                f"base {names} left out: {cfg.model.name} does not take "
                f"{'it' if len(dropped) == 1 else 'them'}"
            )

    chosen = metric or base.checkpoint.monitor.split("/", 1)[-1]
    available = known_metrics(base.task, classes)
    if chosen not in available:
        if metric is not None:
            raise ConfigError(
                f"'{metric}' is not a metric of the {base.task} task",
                where="--metric",
                hint=unknown_name_hint(metric, sorted(available)),
            )
        chosen = task_spec(base).default_monitor.split("/", 1)[-1]  # e.g. monitor val/loss

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
    check_folder(plan)
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


def _refuse_equal_cells(cells: Sequence[Cell], configs: Sequence[Config]) -> None:
    """Refuses two cells whose configs are equal once validated (``--grid
    optimizer.lr=0.001,1e-3``: YAML reads ``1e-3`` as text, the schema as 0.001).

    Raises:
        ConfigError: naming the grid key and the two values.
    """
    seen: dict[str, Cell] = {}
    for cell, cfg in zip(cells, configs, strict=True):
        text = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, default=str)
        first = seen.setdefault(text, cell)
        if first is cell:
            continue
        key = next(k for k in cell.values if cell.values[k] != first.values[k])
        raise same_values_error(key, first.values[key], cell.values[key])


def _split_signature(cfg: Config) -> str:
    data = cfg.data.model_dump(mode="json", exclude=_NOT_SPLIT_KEYS)
    text = json.dumps({"task": cfg.task, "seed": cfg.seed, "data": data}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _check_cell(
    cfg: Config, cell: Cell, classes: list[str], seen: dict[str, list[str]]
) -> list[str]:
    """Builds the cell's model and loss, as fit would (its monitors were checked when
    its config was validated).

    When the grid changes the model (``model.name`` or ``model``), base
    ``model.params`` that the cell's model does not take are left out rather than
    refused (``--grid model.name=simple_cnn,mobilenetv3_small`` with a base
    ``model.params.width`` that only ``simple_cnn`` takes).

    Returns:
        The keys of ``model.params`` to leave out of the cell's configs.

    Raises:
        ConfigError: naming the cell or its grid value, when the model or loss does not
            build (a grid value's own params included).
    """
    check_loggers(cfg)
    key = json.dumps(
        {
            k: cfg.model_dump(mode="json")[k]
            for k in ("task", "model", "loss", "checkpoint", "scheduler", "trainer")
        },
        sort_keys=True,
    )
    if key in seen:
        return seen[key]
    dropped: list[str] = []
    while True:
        try:
            task = build_task(cfg, classes, class_counts=[1] * len(classes))
        except MediscopeError as exc:
            name = _refused_model_param(exc)
            if name is None or name not in cfg.model.params or not _droppable(cell, name):
                raise _grid_error(exc, cell) from None
            dropped.append(name)
            cfg = _without_model_params(cfg, [name])
            continue
        del task
        seen[key] = dropped
        return dropped


def _refused_model_param(exc: MediscopeError) -> str | None:
    """The ``model.params`` key a model builder refused, if that is what ``exc`` says."""
    where = exc.where or ""
    found = re.search(r"model\.params\.([A-Za-z_][A-Za-z0-9_]*)$", where)
    if found is not None:
        return found.group(1)
    if where.endswith("model.params"):
        found = re.search(r"unexpected keyword argument '([A-Za-z_][A-Za-z0-9_]*)'", exc.message)
        if found is not None:
            return found.group(1)
    return None


def _droppable(cell: Cell, name: str) -> bool:
    """Whether ``model.params.<name>`` comes from the base config (not the grid) while
    the grid changes the model: the base's params were written for another model."""
    keys = set(cell.values)
    changes_model = bool(keys & {"model", "model.name"})
    from_grid = bool(keys & {"model", "model.params", f"model.params.{name}"})
    return changes_model and not from_grid


def _without_model_params(cfg: Config, names: Sequence[str]) -> Config:
    """``cfg`` without the ``model.params`` keys ``names``."""
    params = {k: v for k, v in cfg.model.params.items() if k not in names}
    model = cfg.model.model_copy(update={"params": params})
    return cfg.model_copy(update={"model": model})
