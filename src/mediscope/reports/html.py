"""The HTML report of a run: one self-contained file (images inlined, no network).

:func:`write_report` reads a run folder (or a cross-validation folder) and writes
``report.html``: the config, environment and split sizes, the training curves, and for
each evaluated split the metrics with their bootstrap confidence intervals (overall and
per class) and the task's plots; for a cross-validation run, the per-fold table with
mean ± sd. It also draws ``plots/<split>_intervals.png`` (metrics with their intervals).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from mediscope.errors import DataError
from mediscope.files import write_text_atomic
from mediscope.metrics.bootstrap import (
    interval_of,
    is_metric,
    resampled_what,
    without_intervals,
)
from mediscope.reports.plotting import plt, save_figure
from mediscope.reports.templating import Figure, file_uri, render
from mediscope.tasks import TASKS, Summary
from mediscope.yamlsafe import read_yaml_file

#: The report's file name in the run folder.
REPORT = "report.html"

#: Keys of a metrics file that describe the evaluation, shown apart from the metrics.
SETTINGS = (
    "score_threshold_f1",
    "f1_at_threshold",
    "count_threshold",
    "nsd_tolerance",
    "pixel_spacing_um",
    "temperature",
    "op_target_sensitivity",
    "op_target_specificity",
)

#: Left out of the interval plot: metrics not on its 0..1 scale (distances, count errors)
#: and the detection error shares, which have a plot of their own.
NOT_IN_INTERVAL_PLOT = (
    "hd95",
    "assd",
    "count_mae",
    "count_mre",
    "count_bias",
    "object_count_",
    "error_",
)

#: Plots shown at full width; the others sit side by side.
WIDE_PLOTS = ("confusion_matrix.png", "gradcam.png", "best.png", "worst.png")

#: Friendlier column names of the per-class tables.
COLUMN_NAMES = {
    "recall": "sensitivity (recall)",
    "ap": "AP",
    "ap50": "AP@.5",
    "ap75": "AP@.75",
    "ar": "AR",
    "gt": "objects",
    "support": "images",
    "iou": "IoU",
    "dice": "Dice",
    "f1": "F1",
    "hd95": "HD95",
    "assd": "ASSD",
    "nsd": "NSD",
    "count_mae": "count MAE",
    "count_mre": "count rel. error",
    "object_f1": "object F1",
    "object_count_mae": "object count MAE",
    "object_count_mre": "object count rel. error",
    "op_threshold": "threshold (val)",
    "op_sensitivity": "sensitivity at threshold",
    "op_specificity": "specificity at threshold",
    "youden_threshold": "Youden threshold (val)",
    "youden_sensitivity": "sensitivity at Youden",
    "youden_specificity": "specificity at Youden",
}


def _summary(task: str) -> Summary:
    """What the report shows of a ``task`` run (nothing special for an unknown task)."""
    return TASKS.get(task).summary if task in TASKS else Summary(terminal=())


@dataclass(frozen=True)
class Value:
    """A formatted metric with its interval ``low–high``, if any."""

    text: str
    ci: str | None = None


@dataclass
class MetricsSection:
    """What the report shows of one evaluated split.

    Attributes:
        title: ``Test`` or ``Validation``.
        facts: The images, checkpoint and interval settings, in one sentence.
        cards: The task's main metrics, as (name, value).
        rest: The other overall metrics, as (name, value).
        settings: The detection thresholds, if any.
        class_columns: The per-class table's columns after the class name.
        class_rows: (class, cells) of the per-class table; None for an empty cell.
        small: Plots that sit side by side.
        wide: Plots at full width.
        galleries: Galleries side by side (segmentation's best and worst).
    """

    title: str
    facts: str
    cards: list[tuple[str, Value]]
    rest: list[tuple[str, Value]]
    settings: str | None
    class_columns: list[str]
    class_rows: list[tuple[str, list[Value | None]]]
    small: list[Figure]
    wide: list[Figure]
    galleries: list[Figure]


@dataclass
class Folds:
    """The cross-validation table: one row per fold, then mean ± sd, and fold links."""

    columns: list[str]
    rows: list[tuple[str, list[str]]]
    summary: list[str] | None
    links: list[str]


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _interval(metrics: Mapping[str, float], key: str) -> str | None:
    interval = interval_of(metrics, key)
    if interval is None or math.isnan(interval.low):
        return None
    return f"{_fmt(interval.low)}–{_fmt(interval.high)}"


def _with_ci(metrics: Mapping[str, float], key: str) -> Value:
    return Value(_fmt(metrics.get(key)), _interval(metrics, key))


def _figure(path: Path, caption: str) -> Figure | None:
    if not path.is_file():
        return None
    return Figure(file_uri(path), caption)


#: What each JSON file of a run folder is, for the errors naming it.
_JSON_FILES = {
    "split.json": "split file",
    "environment.json": "environment file",
    "val_metrics.json": "metrics file",
    "test_metrics.json": "metrics file",
}

#: The sections of a run's config that the report reads.
_CONFIG_SECTIONS = ("model", "data", "loss", "trainer")

#: Keys of a metrics file whose value is a word, not a number.
TEXT_KEYS = ("bootstrap_unit",)

_REGENERATE = "remove the file or write it again (mediscope validate / test rewrite metrics)"


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object of the run folder; None when the file is absent.

    Raises:
        DataError: naming the file when it is unreadable or not a JSON object.
    """
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path.name}: {exc}", where=path, hint=_REGENERATE) from None
    if not isinstance(data, dict):
        what = _JSON_FILES.get(path.name, "run file")
        raise DataError(
            f"not a {what}: it holds a JSON {type(data).__name__}, not an object",
            where=path,
            hint=_REGENERATE,
        )
    return data


def _read_metrics(path: Path) -> dict[str, Any] | None:
    """A metrics file: an object of numbers (null for undefined ones); None when absent.

    Raises:
        DataError: naming the file and the first key whose value is not a number.
    """
    metrics = _read_json(path)
    for key, value in (metrics or {}).items():
        if key in TEXT_KEYS and isinstance(value, str):
            continue
        if value is not None and not isinstance(value, (int, float)):
            raise DataError(
                f"the value of '{key}' is {json.dumps(value)[:40]}, not a number",
                where=path,
                hint=_REGENERATE,
            )
    return metrics


def _task(run_dir: Path) -> tuple[str, dict[str, Any]]:
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise DataError(
            "not a run folder: it has no config.yaml",
            where=run_dir,
            hint="give the folder that `mediscope fit` printed as `run: PATH`",
        )
    try:
        config = read_yaml_file(config_path, error=DataError, what="config.yaml")[0] or {}
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot read config.yaml: {' '.join(str(exc).split())}",
            where=config_path,
            hint="restore the config the run was made with",
        ) from None
    sections = [config.get(key) for key in _CONFIG_SECTIONS] if isinstance(config, dict) else []
    task = config.get("task", "classification") if isinstance(config, dict) else None
    if not isinstance(task, str) or any(not isinstance(s, dict | None) for s in sections):
        raise DataError(
            "not a run's config (a mapping with task, model, data, ...)",
            where=config_path,
            hint="restore the config the run was made with",
        )
    return task, config


def overall_keys(metrics: Mapping[str, float], task: str) -> list[str]:
    """The overall (not per-class) metrics to show, the task's main ones first."""
    first = [k for k in _summary(task).report if k in metrics]
    rest = [
        k
        for k in without_intervals(metrics)
        if "/" not in k and is_metric(k) and k not in first and k not in SETTINGS
    ]
    return first + rest


def per_class_table(metrics: Mapping[str, float]) -> tuple[list[str], list[str]]:
    """(metric prefixes, class names) of the per-class keys ``<prefix>/<class>``."""
    prefixes: list[str] = []
    classes: list[str] = []
    for key in without_intervals(metrics):
        if "/" not in key:
            continue
        prefix, name = key.split("/", 1)
        if prefix not in prefixes:
            prefixes.append(prefix)
        if name not in classes:
            classes.append(name)
    return prefixes, classes


def plot_intervals(
    metrics: Mapping[str, float], task: str, path: Path, *, title: str
) -> Path | None:
    """Overall metrics and the per-class main metric with their intervals (a forest plot)."""
    rows: list[tuple[str, float, float, float]] = []
    keys = [k for k in overall_keys(metrics, task) if k not in ("ece", "ece_uncalibrated")]
    per_class_metric = _summary(task).interval_metric
    _, classes = per_class_table(metrics)
    keys += [f"{per_class_metric}/{c}" for c in classes if f"{per_class_metric}/{c}" in metrics]
    for key in keys:
        if key.startswith(NOT_IN_INTERVAL_PLOT):
            continue
        interval = interval_of(metrics, key)
        value = metrics.get(key)
        if interval is None or value is None or math.isnan(interval.low) or math.isnan(value):
            continue
        rows.append((key, float(value), interval.low, interval.high))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 0.34 * len(rows) + 1.3), layout="constrained")
    y = np.arange(len(rows))[::-1]
    values = np.array([r[1] for r in rows])
    low = values - np.array([r[2] for r in rows])
    high = np.array([r[3] for r in rows]) - values
    colours = ["#4c72b0" if "/" not in r[0] else "#dd8452" for r in rows]
    for i, colour in enumerate(colours):
        ax.errorbar(
            values[i], y[i], xerr=[[low[i]], [high[i]]], fmt="o", ms=4, color=colour, capsize=3
        )
    # the axis starts at a round value below the lowest bound, so narrow intervals near 1
    # stay visible; the values are printed to the right
    left = max(0.0, math.floor((min(r[2] for r in rows) - 0.02) * 10) / 10)
    span = 1.0 - left
    for yi, (_, value, lo, hi) in zip(y, rows, strict=True):
        text = f"{value:.3f} ({lo:.3f}–{hi:.3f})"
        ax.text(1.0 + 0.03 * span, yi, text, va="center", fontsize=8.5, color="#333")
    ax.set_yticks(y, [r[0] for r in rows], fontsize=9)
    ax.set_xlim(left, 1.0 + 0.45 * span)
    ticks = np.asarray(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(left, 1.0))
    ax.set_xticks(ticks[(ticks >= left - 1e-9) & (ticks <= 1.0 + 1e-9)])
    ax.set_xlim(left, 1.0 + 0.45 * span)
    ax.axvline(1.0, color="grey", lw=0.6)
    ax.grid(axis="x", alpha=0.3)
    level = metrics.get("confidence", 0.95)
    resamples = int(metrics.get("bootstrap_resamples", 0))
    ax.set_title(
        f"{title}\n{level:.0%} bootstrap intervals, {resamples} resamples of the images",
        fontsize=10,
    )
    return save_figure(fig, path)


def _metrics_section(
    run_dir: Path, split: str, metrics: dict[str, Any], task: str, title: str
) -> MetricsSection:
    n = metrics.get("n_samples", metrics.get("n_images"))
    resamples = int(metrics.get("bootstrap_resamples", 0))
    level = float(metrics.get("confidence", 0.95))
    facts = [
        f"{int(n)} images" if n is not None else "",
        f"best.ckpt of epoch {int(metrics['epoch'])}"
        if "epoch" in metrics and metrics["epoch"] >= 0
        else "",
    ]
    if resamples:
        facts.append(
            f"in brackets the {level:.0%} bootstrap confidence interval "
            f"({resampled_what(metrics)}, percentile method, seeded)"
        )
    else:
        facts.append("no confidence intervals (report.bootstrap is 0)")
    keys = overall_keys(metrics, task)
    main = _summary(task).report
    settings = [k for k in SETTINGS if k in metrics]
    prefixes, classes = per_class_table(metrics)
    class_rows: list[tuple[str, list[Value | None]]] = []
    for name in classes:
        cells: list[Value | None] = []
        for prefix in prefixes:
            key = f"{prefix}/{name}"
            if key not in metrics:
                cells.append(None)
            elif prefix in ("support", "gt"):
                cells.append(Value(str(int(metrics[key]))))
            else:
                cells.append(_with_ci(metrics, key))
        class_rows.append((name, cells))
    plots = run_dir / "plots"
    small: list[Figure | None] = []
    intervals = plot_intervals(
        metrics, task, plots / f"{split}_intervals.png", title=f"{split}: metrics"
    )
    if intervals is not None:
        small.append(_figure(intervals, "The metrics with their confidence intervals."))
    wide: list[tuple[str, Figure | None]] = []
    for name, caption in _summary(task).plots:
        figure = _figure(plots / f"{split}_{name}", caption)
        if name in WIDE_PLOTS:
            wide.append((name, figure))
        else:
            small.append(figure)
    side_by_side = task == "segmentation"  # three narrow panels a row; detection's are wide
    pair = ("best.png", "worst.png") if side_by_side else ()
    return MetricsSection(
        title=title,
        facts="; ".join(f for f in facts if f),
        cards=[(k, _with_ci(metrics, k)) for k in keys if k in main],
        rest=[(k, _with_ci(metrics, k)) for k in keys if k not in main],
        settings=_settings(metrics, settings),
        class_columns=[COLUMN_NAMES.get(p, p) for p in prefixes],
        class_rows=class_rows,
        small=[f for f in small if f is not None],
        wide=[f for name, f in wide if name not in pair and f is not None],
        galleries=[f for name, f in wide if name in pair and f is not None],
    )


def _settings(metrics: Mapping[str, float], keys: Sequence[str]) -> str | None:
    """The evaluation's settings in one sentence, with what they mean."""
    if not keys:
        return None
    text = ", ".join(f"{k} {_fmt(metrics[k])}" for k in keys)
    notes = []
    if "count_threshold" in keys:
        notes.append(
            "counts, errors and galleries use count_threshold: the score with the best F1 "
            "at IoU 0.5 on validation"
        )
    if "nsd_tolerance" in keys:
        unit = "µm" if "pixel_spacing_um" in keys else "pixels"
        notes.append(f"HD95, ASSD and the NSD tolerance are in {unit}")
    return f"{text} ({'; '.join(notes)})" if notes else text


def _split_sizes(run_dir: Path) -> dict[str, int]:
    split = _read_json(run_dir / "split.json") or {}
    return {k: len(v) for k, v in split.items() if isinstance(v, list)}


def _environment(run_dir: Path) -> list[tuple[str, str]]:
    env = _read_json(run_dir / "environment.json")
    if not env:
        return []
    rows = [("mediscope", env.get("mediscope")), ("python", env.get("python"))]
    rows += list((env.get("packages") or {}).items())
    git = env.get("project_git") or env.get("mediscope_git")
    if git:
        rows.append(("git commit", f"{git['commit'][:12]}{' (dirty)' if git['dirty'] else ''}"))
    rows += [
        ("seed", env.get("seed")),
        ("platform", env.get("platform")),
        ("CPU cores", env.get("cpu_count")),
        ("GPUs", ", ".join(map(str, env.get("gpus") or [])) or "none"),
    ]
    return [(str(k), str(v)) for k, v in rows if v is not None]


def _facts(run_dir: Path, task: str, config: Mapping[str, Any]) -> list[tuple[str, str]]:
    model = config.get("model", {}) or {}
    data = config.get("data", {}) or {}
    loss = (config.get("loss", {}) or {}).get("name")
    trainer = config.get("trainer", {}) or {}
    sizes = _split_sizes(run_dir)
    split_text = ", ".join(f"{k} {v}" for k, v in sizes.items()) or "no split.json"
    facts = [
        ("task", task),
        ("model", f"{model.get('name')} (pretrained: {model.get('pretrained', False)})"),
        ("loss", loss),
        ("data", f"{data.get('format')}: {data.get('path')}"),
        ("split", f"{split_text} images ({(data.get('split') or {}).get('method', 'auto')})"),
        ("epochs", trainer.get("max_epochs")),
        ("seed", config.get("seed")),
    ]
    return [(k, str(v)) for k, v in facts]


def _folds(run_dir: Path) -> Folds | None:
    summary = run_dir / "cv_summary.csv"
    if not summary.is_file():
        return None
    table = pd.read_csv(summary)
    folds = table[~table.iloc[:, 0].astype(str).isin(["mean", "sd"])]
    mean = table[table.iloc[:, 0].astype(str) == "mean"]
    sd = table[table.iloc[:, 0].astype(str) == "sd"]
    columns = list(table.columns[1:])
    rows = [
        (str(row.iloc[0]), [_fmt(float(row[c])) for c in columns]) for _, row in folds.iterrows()
    ]
    mean_sd = None
    if len(mean) and len(sd):
        mean_sd = [
            f"{_fmt(float(mean[c].iloc[0]))} ± {_fmt(float(sd[c].iloc[0]))}" for c in columns
        ]
    links = [p.name for p in sorted(run_dir.glob("fold-*")) if (p / REPORT).is_file()]
    return Folds([str(c) for c in columns], rows, mean_sd, links)


def build_report(run_dir: Path) -> str:
    """The HTML text of the report of ``run_dir`` (a run or cross-validation folder)."""
    run_dir = Path(run_dir)
    task, config = _task(run_dir)
    facts = _facts(run_dir, task, config)
    folds = _folds(run_dir)
    curves = run_dir / "plots" / "training_curves.png"
    test = _read_metrics(run_dir / "test_metrics.json")
    val = _read_metrics(run_dir / "val_metrics.json")
    return render(
        "report.html.j2",
        name=run_dir.name,
        parent=run_dir.parent.name,
        path=str(run_dir),
        written=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        report=REPORT,
        facts=facts,
        folds=folds,
        curves=_figure(curves, "Loss and the monitored metric per epoch."),
        test=_metrics_section(run_dir, "test", test, task, "Test") if test else None,
        val=_metrics_section(run_dir, "val", val, task, "Validation") if val else None,
        environment=_environment(run_dir),
        config=(run_dir / "config.yaml").read_text(),
    )


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Writes the report of ``run_dir`` to ``out`` (default ``run_dir/report.html``)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError("no such run folder", where=run_dir, hint="check the path")
    path = out or run_dir / REPORT
    return write_text_atomic(path, build_report(run_dir))


def summary_lines(metrics: Mapping[str, float], keys: Sequence[str]) -> list[str]:
    """``key value (low–high)`` for the keys present, for terminal output."""
    lines = []
    for key in keys:
        if key not in metrics:
            continue
        text = f"{key} {_fmt(metrics[key])}"
        interval = _interval(metrics, key)
        if interval is not None:
            text += f" ({interval})"
        lines.append(text)
    return lines
