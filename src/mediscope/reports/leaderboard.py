"""A study's leaderboard: one row per cell, ranked by the main metric.

With one run per cell the main metric comes with its bootstrap confidence interval
(``ci_low/<metric>``, ``ci_high/<metric>`` in the metrics file, "n/a" without them);
with repeated runs (seeds, folds) every metric is the mean ± sample standard deviation
over the repeats. Files: ``leaderboard.csv`` (numbers), ``leaderboard_runs.csv`` (one
row per run), ``leaderboard.md`` (the table as it prints) and ``leaderboard.png``
(the main metric per cell with its interval or sd as error bars).

With single runs evaluated on the same images, each cell is also compared with the
best one in pairs (:func:`mediscope.evaluation.paired.compare_to_best`): the table
gains the difference to the best with its interval (``vs_best``, ``vs_best_ci_low``,
``vs_best_ci_high``), the p-values (``vs_best_p`` of the deciding test, ``vs_best_p_holm``
Holm-corrected; ``mcnemar_p``, ``delong_p`` in classification) and ``not_worse``: the
cells not significantly worse than the best, marked "≈ best" in the Markdown and
terminal tables and as filled points (the others hollow) in the plot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mediscope.config.schema import metric_mode
from mediscope.files import write_text_atomic
from mediscope.tasks import TASKS
from mediscope.yamlsafe import load_yaml

#: Metrics where lower is better besides losses and errors (per-class ones by their kind).
_LOWER_IS_BETTER = {
    "ece",
    "hd95_mean",
    "assd_mean",
    "hd95",
    "assd",
    "count_mae",
    "count_mre",
    "object_count_mae",
    "object_count_mre",
    "ece_uncalibrated",
}


def lower_is_better(metric: str) -> bool:
    """Losses, errors, distances and calibration error go down; other metrics go up."""
    kind = metric.split("/", 1)[0]
    return kind in _LOWER_IS_BETTER or metric_mode(metric) == "min"


def known_metrics(task: str, classes: list[str]) -> set[str]:
    """Every metric name of the task's metrics files that a leaderboard can rank by."""
    return TASKS.get(task).summary.rankable(classes)


def value_label(text: str) -> str:
    """A grid value as shown: a section such as ``{name: ComboLoss, params: {focal: 1,
    dice: 1}}`` becomes ``ComboLoss(focal=1, dice=1)``; anything else stays as written."""
    try:
        value = load_yaml(text)
    except yaml.YAMLError:  # not YAML, or over the limits (such as an alias bomb)
        return text
    if not isinstance(value, dict) or "name" not in value:
        return text
    parts = []
    for key, item in value.items():
        if key == "name":
            continue
        if isinstance(item, dict):
            parts += [f"{k}={v}" for k, v in item.items()]
        elif item is not None:
            parts.append(f"{key}={item}")
    return f"{value['name']}({', '.join(parts)})" if parts else str(value["name"])


def secondary_metrics(task: str, metric: str) -> list[str]:
    """The other summary metrics shown beside the main one."""
    return [m for m in TASKS.get(task).summary.ranked if m != metric]


@dataclass
class RunMetrics:
    """One finished run of a cell."""

    repeat: str
    seed: int
    fold: int | None
    metrics: dict[str, float]
    params: int | None = None
    seconds: float | None = None
    best_epoch: int | None = None
    cpu_seconds: float | None = None


@dataclass
class CellRuns:
    """A cell of the grid and its finished runs."""

    name: str
    values: dict[str, str]
    runs: list[RunMetrics]
    expected: int = 1
    status: str = "done"


@dataclass
class Leaderboard:
    """The ranked table (``table``), the per-run table (``runs``) and how to read them."""

    table: pd.DataFrame
    runs: pd.DataFrame
    metric: str
    secondary: list[str]
    grid_keys: list[str]
    split: str
    repeat_kind: str | None
    confidence: float | None
    title: str = "study"
    paired: dict[str, Any] | None = None  # how the cells were compared with the best

    @property
    def repeated(self) -> bool:
        """Whether cells ran more than once (mean ± sd instead of intervals)."""
        return self.repeat_kind is not None


def _mean_sd(values: list[float]) -> tuple[float, float]:
    array = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if not len(array):
        return math.nan, math.nan
    sd = float(np.std(array, ddof=1)) if len(array) > 1 else math.nan
    return float(np.mean(array)), sd


def build_leaderboard(
    cells: list[CellRuns],
    *,
    grid_keys: list[str],
    metric: str,
    task: str,
    split: str,
    repeat_kind: str | None = None,
    title: str = "study",
) -> Leaderboard:
    """Ranks the cells by ``metric`` (best first; cells without results last).

    Args:
        cells: The grid's cells and their finished runs.
        grid_keys: The grid's keys (the leading columns).
        metric: The main metric, a key of the metrics files.
        task: The task (which secondary metrics to show).
        split: ``test`` or ``val``: where the metrics come from.
        repeat_kind: ``"3 seeds"``, ``"5 folds"``... when cells ran more than once.
        title: The study's name (plot title).

    Returns:
        The leaderboard; ``table`` has per cell the metric (mean when repeated), its
        sd (repeats) or interval (single runs), the secondary metrics, parameters,
        training seconds (wall and CPU) and best epoch.
    """
    secondary = [
        m
        for m in secondary_metrics(task, metric)
        if any(m in r.metrics for c in cells for r in c.runs)
    ]
    confidences = {
        r.metrics["confidence"] for c in cells for r in c.runs if "confidence" in r.metrics
    }
    confidence = float(next(iter(confidences))) if len(confidences) == 1 else None

    run_rows: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for cell in cells:
        for run in cell.runs:
            row: dict[str, Any] = {"cell": cell.name, **cell.values}
            row.update(repeat=run.repeat, seed=run.seed, fold=run.fold, split=split)
            row[metric] = run.metrics.get(metric, math.nan)
            row[f"{metric}_ci_low"] = run.metrics.get(f"ci_low/{metric}", math.nan)
            row[f"{metric}_ci_high"] = run.metrics.get(f"ci_high/{metric}", math.nan)
            for name in secondary:
                row[name] = run.metrics.get(name, math.nan)
            row.update(params=run.params, train_seconds=run.seconds, best_epoch=run.best_epoch)
            row["train_cpu_seconds"] = run.cpu_seconds
            run_rows.append(row)

        values = [r.metrics.get(metric, math.nan) for r in cell.runs]
        mean, sd = _mean_sd(values)
        single = cell.runs[0].metrics if len(cell.runs) == 1 and repeat_kind is None else {}
        row = {"cell": cell.name, **cell.values, "status": _status(cell)}
        row.update(runs=len(cell.runs), split=split, metric=metric)
        row[metric] = mean
        row[f"{metric}_sd"] = sd
        row[f"{metric}_ci_low"] = single.get(f"ci_low/{metric}", math.nan)
        row[f"{metric}_ci_high"] = single.get(f"ci_high/{metric}", math.nan)
        for name in secondary:
            row[name], row[f"{name}_sd"] = _mean_sd(
                [r.metrics.get(name, math.nan) for r in cell.runs]
            )
        params = [r.params for r in cell.runs if r.params is not None]
        row["params"] = params[0] if params else None
        seconds = [r.seconds for r in cell.runs if r.seconds is not None]
        row["train_seconds"] = float(np.mean(seconds)) if seconds else math.nan
        cpu = [r.cpu_seconds for r in cell.runs if r.cpu_seconds is not None]
        row["train_cpu_seconds"] = float(np.mean(cpu)) if cpu else math.nan
        epochs = [r.best_epoch for r in cell.runs if r.best_epoch is not None]
        row["best_epoch"] = ",".join(str(e) for e in epochs) if epochs else ""
        rows.append(row)

    table = pd.DataFrame(rows)
    if not table.empty:
        ascending = lower_is_better(metric)
        table = table.sort_values(
            metric, ascending=ascending, na_position="last", kind="stable"
        ).reset_index(drop=True)
        ranked = table[metric].notna()
        table.insert(0, "rank", [str(i + 1) if ok else "" for i, ok in enumerate(ranked)])
    return Leaderboard(
        table=table,
        runs=pd.DataFrame(run_rows),
        metric=metric,
        secondary=secondary,
        grid_keys=list(grid_keys),
        split=split,
        repeat_kind=repeat_kind,
        confidence=confidence,
        title=title,
    )


def _status(cell: CellRuns) -> str:
    if len(cell.runs) >= cell.expected:
        return "done"
    if cell.status == "failed":
        return "failed"
    return "incomplete" if cell.runs else "not run"


# -- formatting ------------------------------------------------------------------------


def fmt_value(value: Any, digits: int = 4) -> str:
    """A metric with ``digits`` decimals, or ``n/a``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def fmt_interval(low: Any, high: Any, digits: int = 4) -> str:
    """``[0.7950, 0.8301]``, or ``n/a`` without both bounds."""
    if fmt_value(low) == "n/a" or fmt_value(high) == "n/a":
        return "n/a"
    return f"[{float(low):.{digits}f}, {float(high):.{digits}f}]"


def fmt_mean_sd(mean: Any, sd: Any, digits: int = 4) -> str:
    """``0.8123 ± 0.0123`` (``± n/a`` with one value)."""
    if fmt_value(mean) == "n/a":
        return "n/a"
    return f"{float(mean):.{digits}f} ± {fmt_value(sd, digits)}"


def fmt_params(value: Any) -> str:
    """``23.5 M``, ``812.3 k``, ``950``, or ``n/a``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    n = int(value)
    if n >= 1_000_000:
        return f"{n / 1e6:.2f} M"
    if n >= 1_000:
        return f"{n / 1e3:.1f} k"
    return str(n)


def interval_label(board: Leaderboard) -> str:
    """``95 % CI`` (the level of the metrics files' intervals)."""
    level = board.confidence if board.confidence is not None else 0.95
    return f"{level * 100:g} % CI"


def display_table(board: Leaderboard) -> tuple[list[str], list[list[str]]]:
    """Headers and text rows of the leaderboard as printed and in ``leaderboard.md``."""
    metric = board.metric
    headers = ["rank", *board.grid_keys]
    if board.repeated:
        headers.append(f"{metric} (mean ± sd)")
    else:
        headers += [metric, interval_label(board)]
    paired = board.paired is not None
    if paired:
        headers += ["Δ vs best [CI]", "p (Holm)", "≈ best"]
    headers += [*board.secondary, "params", "train s", "CPU s", "best epoch"]
    rows = []
    for _, row in board.table.iterrows():
        status = row["status"]
        cells = [row["rank"] or "–", *(value_label(str(row[k])) for k in board.grid_keys)]
        if status in ("failed", "not run") or row["runs"] == 0:
            cells.append(status)
            if not board.repeated:
                cells.append("")
            cells += [""] * (len(board.secondary) + 4 + (3 if paired else 0))
            rows.append(cells)
            continue
        if board.repeated:
            main = fmt_mean_sd(row[metric], row[f"{metric}_sd"])
            if status != "done":
                main += f" ({int(row['runs'])} runs)"
            cells.append(main)
        else:
            cells += [
                fmt_value(row[metric]),
                fmt_interval(row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]),
            ]
        if paired:
            cells += _paired_cells(row, board)
        for name in board.secondary:
            if board.repeated:
                cells.append(fmt_mean_sd(row[name], row[f"{name}_sd"]))
            else:
                cells.append(fmt_value(row[name]))
        cells += [
            fmt_params(row["params"]),
            _seconds(row["train_seconds"]),
            _seconds(row.get("train_cpu_seconds")),
            str(row["best_epoch"]) or "n/a",
        ]
        rows.append(cells)
    return headers, rows


def _paired_cells(row: Any, board: Leaderboard) -> list[str]:
    """``Δ vs best [CI]``, ``p (Holm)`` and ``≈ best`` of a row."""
    assert board.paired is not None
    if row["cell"] == board.paired["best"]:
        return ["best", "", "best"]
    value = row.get("vs_best")
    if fmt_value(value) == "n/a":
        return ["n/a", "n/a", ""]
    interval = fmt_interval(row["vs_best_ci_low"], row["vs_best_ci_high"])
    not_worse = flag(row.get("not_worse"))
    mark = "yes" if not_worse is True else "no" if not_worse is False else ""
    return [f"{float(value):+.4f} {interval}", fmt_p(row["vs_best_p_holm"]), mark]


def flag(value: Any) -> bool | None:
    """A yes/no cell of the table (``not_worse``) as a bool; None when empty or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(value)


def fmt_p(value: Any) -> str:
    """A p-value: ``0.0123``, ``< 0.0001`` or ``n/a``."""
    if fmt_value(value) == "n/a":
        return "n/a"
    return "< 0.0001" if float(value) < 1e-4 else f"{float(value):.4f}"


#: How the deciding test of each comparison is named.
TEST_NAMES = {
    "bootstrap": "paired bootstrap",
    "mcnemar": "exact McNemar test",
    "delong": "DeLong's test",
}


def paired_note(board: Leaderboard) -> str:
    """What the paired columns mean, in one paragraph (empty without them)."""
    if board.paired is None:
        return ""
    info = board.paired
    unit = f"{info['groups']} patients" if info["unit"] == "patient" else f"{info['images']} images"
    return (
        f"Δ vs best: the cell's {board.metric} minus the best cell's on the "
        f"{info['images']} images all cells share, with its "
        f"{interval_label(board)} (paired bootstrap, {info['resamples']} resamples of the "
        f"{unit}); p (Holm): the two-sided p-value of the "
        f"{TEST_NAMES.get(info['test'], info['test'])}, Holm-corrected for the "
        f"{_compared(board)} comparisons; ≈ best: yes when not significantly worse at "
        f"level {info['alpha']:.2g}, no when significantly worse. The other tests' p-values "
        "are in leaderboard.csv."
    )


def _compared(board: Leaderboard) -> int:
    if "vs_best_p" not in board.table:
        return 0
    return int(board.table["vs_best_p"].notna().sum())


def _seconds(value: Any) -> str:
    return "n/a" if fmt_value(value) == "n/a" else f"{float(value):.1f}"


def markdown(board: Leaderboard) -> str:
    """The leaderboard as a Markdown document."""
    headers, rows = display_table(board)
    source = f"{board.split} split" + (f", {board.repeat_kind}" if board.repeat_kind else "")
    lines = [
        f"# Leaderboard: {board.title}",
        "",
        f"Ranked by `{board.metric}` on the {source}; "
        f"{'lower' if lower_is_better(board.metric) else 'higher'} is better.",
        "",
        "| " + " | ".join(headers) + " |",
        "|"
        + "|".join("---" if i < 1 + len(board.grid_keys) else "---:" for i in range(len(headers)))
        + "|",
    ]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    lines.append("")
    if board.repeated:
        lines.append(
            f"Mean ± sample standard deviation over {board.repeat_kind}; per-run values "
            "in leaderboard_runs.csv."
        )
    else:
        lines.append(
            f"{interval_label(board)}: bootstrap interval over the evaluated images (n/a: "
            "the metrics file has none)."
        )
    if board.paired is not None:
        lines.append("")
        lines.append(paired_note(board))
        lines.append("")
    lines.append(
        "train s: training time in seconds (wall clock, mean per run); CPU s: the CPU "
        "seconds training used (all cores, data-loader workers included), which other "
        "programs on the machine do not lengthen; best epoch: of best.ckpt."
    )
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


# -- files -----------------------------------------------------------------------------


def write_leaderboard(board: Leaderboard, folder: Path) -> dict[str, Path]:
    """Writes ``leaderboard.csv``, ``leaderboard_runs.csv``, ``.md`` and ``.png``."""
    files = {
        "csv": write_text_atomic(folder / "leaderboard.csv", board.table.to_csv(index=False)),
        "runs": write_text_atomic(folder / "leaderboard_runs.csv", board.runs.to_csv(index=False)),
        "md": write_text_atomic(folder / "leaderboard.md", markdown(board)),
    }
    plot = plot_leaderboard(board, folder / "leaderboard.png")
    if plot is not None:
        files["png"] = plot
    return files


def plot_leaderboard(board: Leaderboard, out: Path) -> Path | None:
    """The main metric per cell, best at the top, with its interval (or ± sd) as error bars.

    Points are coloured by the first grid key's value.
    """
    from matplotlib.transforms import blended_transform_factory

    from mediscope.reports.plotting import plt, save_figure

    table = board.table[board.table[board.metric].notna()] if not board.table.empty else board.table
    if table.empty:
        return None
    metric = board.metric
    n = len(table)
    labels = [
        " · ".join(value_label(str(row[k])) for k in board.grid_keys) or row["cell"]
        for _, row in table.iterrows()
    ]
    values = table[metric].to_numpy(dtype=float)
    if board.repeated:
        sd = table[f"{metric}_sd"].to_numpy(dtype=float)
        low, high = np.nan_to_num(sd), np.nan_to_num(sd)
        bar_name = "± sd"
    else:
        lows = table[f"{metric}_ci_low"].to_numpy(dtype=float)
        highs = table[f"{metric}_ci_high"].to_numpy(dtype=float)
        low = np.where(np.isnan(lows), 0.0, values - lows)
        high = np.where(np.isnan(highs), 0.0, highs - values)
        bar_name = interval_label(board)

    # With two or more grid keys, colours tell the first key's values apart (grid order;
    # cell names start with their index); with one, the labels already do.
    first = board.grid_keys[0] if len(board.grid_keys) > 1 else None
    groups = (
        list(dict.fromkeys(value_label(str(v)) for v in table.sort_values("cell")[first]))
        if first
        else ["all"]
    )
    cmap = plt.get_cmap("tab10")
    colors = {g: cmap(i % 10) for i, g in enumerate(groups)}

    fig, ax = plt.subplots(figsize=(8.5, 1.2 + 0.42 * n), layout="constrained")
    y = np.arange(n)[::-1]  # rank 1 at the top
    for i, (_, row) in enumerate(table.iterrows()):
        group = value_label(str(row[first])) if first else "all"
        worse = board.paired is not None and flag(row.get("not_worse")) is False
        ax.errorbar(
            values[i],
            y[i],
            xerr=[[low[i]], [high[i]]],
            fmt="o",
            color=colors[group],
            ecolor=colors[group],
            mfc="white" if worse else colors[group],
            elinewidth=2,
            capsize=4,
            ms=7,
            label=group,
        )
    span_low = float(np.nanmin(values - low))
    span_high = float(np.nanmax(values + high))
    pad = max((span_high - span_low) * 0.06, 0.005)
    ax.set_xlim(span_low - pad, span_high + pad)
    # The values as a column right of the plot, in rank order.
    column = blended_transform_factory(ax.transAxes, ax.transData)
    for i in range(n):
        text = f"{values[i]:.4f}"
        if board.repeated and not np.isnan(table[f"{metric}_sd"].iloc[i]):
            text += f" ± {table[f'{metric}_sd'].iloc[i]:.4f}"
        if board.paired is not None:
            mark = flag(table["not_worse"].iloc[i])
            if table["cell"].iloc[i] == board.paired["best"]:
                text += "  best"
            else:
                text += "  ≈ best" if mark is True else "  worse" if mark is False else ""
        ax.text(1.02, y[i], text, transform=column, va="center", fontsize=9)
    ax.set_yticks(y, [f"{i + 1}. {label}" for i, label in enumerate(labels)])
    ax.set_ylim(-0.7, n - 0.3)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    better = "lower is better" if lower_is_better(metric) else "higher is better"
    if board.repeat_kind:
        ax.set_xlabel(
            f"{metric} on {board.split}, mean over {board.repeat_kind}  ({bar_name}; {better})"
        )
    else:
        ax.set_xlabel(f"{metric} on {board.split}  (error bars: {bar_name}; {better})")
    if first and len(groups) > 1:
        handles, names = ax.get_legend_handles_labels()
        by_name = dict(zip(names, handles, strict=True))
        unique = {g: by_name[g] for g in groups if g in by_name}  # grid order
        fig.legend(
            unique.values(),
            unique.keys(),
            title=first,
            loc="outside lower center",
            ncol=min(len(unique), 6),
            frameon=False,
            fontsize=9,
            title_fontsize=9,
        )
    title = f"{board.title}: {metric} per cell"
    if board.paired is not None:
        title += (
            "\nfilled: not significantly worse than the best (paired, Holm, level "
            f"{board.paired['alpha']:.2g}); hollow: significantly worse"
        )
    ax.set_title(title, fontsize=11 if board.paired is None else 9, loc="left")
    return save_figure(fig, out)


__all__ = [
    "CellRuns",
    "Leaderboard",
    "RunMetrics",
    "build_leaderboard",
    "display_table",
    "known_metrics",
    "markdown",
    "paired_note",
    "write_leaderboard",
]
