"""The HTML report of a run: one self-contained file (images inlined, no network).

:func:`write_report` reads a run folder (or a cross-validation folder) and writes
``report.html``: the config, environment and split sizes, the training curves, and for
each evaluated split the metrics with their bootstrap confidence intervals (overall and
per class) and the task's plots; for a cross-validation run, the per-fold table with
mean ± sd. It also draws ``plots/<split>_intervals.png`` (metrics with their intervals).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.ticker import MaxNLocator

from mediscope.errors import DataError
from mediscope.files import write_text_atomic
from mediscope.metrics.bootstrap import interval_of, is_metric, without_intervals
from mediscope.reports.plotting import plt, save_figure

#: The report's file name in the run folder.
REPORT = "report.html"

#: Keys of a metrics file that describe the evaluation, shown apart from the metrics.
SETTINGS = ("score_threshold_f1", "f1_at_threshold", "count_threshold")

#: Per task: overall metrics in the order shown (others follow), and the per-class
#: metric of the interval plot.
TASK_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    "classification": (
        ("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "auroc_macro", "ece"),
        "f1",
    ),
    "segmentation": (("dice_mean", "iou_mean", "pixel_accuracy"), "dice"),
    "detection": (("map", "map_50", "map_75"), "ap50"),
}

#: Per task: the plots of a split, as (file name after ``<split>_``, caption).
TASK_PLOTS: dict[str, tuple[tuple[str, str], ...]] = {
    "classification": (
        ("confusion_matrix.png", "Confusion matrix: counts and rows normalised to 1."),
        ("roc.png", "ROC curves, one class against the rest."),
        ("pr.png", "Precision-recall curves, one class against the rest."),
        (
            "reliability.png",
            "Reliability diagram: accuracy against the top-1 probability; the expected "
            "calibration error (ECE) is the gap weighted by the share of images.",
        ),
        (
            "gradcam.png",
            "Grad-CAM heatmaps of the predicted class on a sample of images, mistakes "
            "first: where the model looked.",
        ),
    ),
    "segmentation": (
        ("best.png", "The images with the best Dice: image, ground truth, prediction."),
        ("worst.png", "The images with the worst Dice: image, ground truth, prediction."),
    ),
    "detection": (
        ("pr_curves.png", "Precision-recall curves per class at IoU 0.5."),
        ("best.png", "The images with the best F1 at the counting threshold."),
        ("worst.png", "The images with the worst F1 at the counting threshold."),
    ),
}

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
}

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
  color: #1f2328; background: #f6f8fa; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin-top: 36px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
h3 { font-size: 1.05em; margin-top: 24px; }
.sub { color: #59636e; margin: 0 0 16px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.92em; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: right; }
th { background: #f6f8fa; }
td:first-child, th:first-child { text-align: left; }
.ci { color: #59636e; font-size: 0.88em; white-space: nowrap; }
figure { margin: 12px 0 24px; }
figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { color: #59636e; font-size: 0.9em; margin-top: 4px; }
pre { background: #f6f8fa; padding: 12px; overflow-x: auto; font-size: 0.85em; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.card { border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 14px; min-width: 150px; }
.card .v { font-size: 1.5em; font-weight: 600; }
.card .k { color: #59636e; font-size: 0.85em; }
.note { color: #59636e; font-size: 0.9em; }
table.facts td { text-align: left; }
.row { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.row figure { flex: 1 1 440px; max-width: 520px; margin: 4px 0 16px; }
.galleries figure { flex: 1 1 45%; max-width: 49%; }
details.split > summary { font-size: 1.25em; font-weight: 600; margin-top: 36px;
  cursor: pointer; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
"""


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _with_ci(metrics: Mapping[str, float], key: str) -> str:
    value = metrics.get(key)
    text = html.escape(_fmt(value))
    interval = interval_of(metrics, key)
    if interval is not None and not math.isnan(interval.low):
        text += f' <span class="ci">({_fmt(interval.low)}–{_fmt(interval.high)})</span>'
    return text


def image_tag(path: Path, alt: str) -> str:
    """An ``<img>`` with the PNG or JPEG inlined as base64 (no file beside the report)."""
    mime = "image/jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "image/png"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:{mime};base64,{data}" alt="{html.escape(alt)}">'


def _figure(path: Path, caption: str) -> str:
    if not path.is_file():
        return ""
    return (
        f"<figure>{image_tag(path, caption)}<figcaption>{html.escape(caption)}"
        "</figcaption></figure>"
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path.name}: {exc}", where=path) from exc
    return data if isinstance(data, dict) else None


def _task(run_dir: Path) -> tuple[str, dict[str, Any]]:
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise DataError(
            "not a run folder: it has no config.yaml",
            where=run_dir,
            hint="give the folder that `mediscope fit` printed as `run: PATH`",
        )
    try:
        config = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"cannot read config.yaml: {exc}", where=config_path) from exc
    return str(config.get("task", "classification")), config


def overall_keys(metrics: Mapping[str, float], task: str) -> list[str]:
    """The overall (not per-class) metrics to show, the task's main ones first."""
    first = [k for k in TASK_KEYS.get(task, ((), ""))[0] if k in metrics]
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
    keys = [k for k in overall_keys(metrics, task) if k != "ece"]
    per_class_metric = TASK_KEYS.get(task, ((), ""))[1]
    _, classes = per_class_table(metrics)
    keys += [f"{per_class_metric}/{c}" for c in classes if f"{per_class_metric}/{c}" in metrics]
    for key in keys:
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
) -> str:
    parts = [f"<h2>{html.escape(title)}</h2>"]
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
            f"in brackets the {level:.0%} bootstrap confidence interval ({resamples} "
            "resamples of the images, percentile method, seeded)"
        )
    else:
        facts.append("no confidence intervals (report.bootstrap is 0)")
    parts.append(f'<p class="sub">{html.escape("; ".join(f for f in facts if f))}.</p>')
    keys = overall_keys(metrics, task)
    main = TASK_KEYS.get(task, ((), ""))[0]
    parts.append('<div class="cards">')
    for key in [k for k in keys if k in main]:
        parts.append(
            f'<div class="card"><div class="v">{html.escape(_fmt(metrics.get(key)))}</div>'
            f'<div class="k">{html.escape(key)} {_ci_only(metrics, key)}</div></div>'
        )
    parts.append("</div>")
    rest = [k for k in keys if k not in main]
    if rest:
        parts.append("<table><tr><th>metric</th><th>value (interval)</th></tr>")
        for key in rest:
            parts.append(f"<tr><td>{html.escape(key)}</td><td>{_with_ci(metrics, key)}</td></tr>")
        parts.append("</table>")
    settings = [k for k in SETTINGS if k in metrics]
    if settings:
        parts.append(
            '<p class="note">'
            + html.escape(", ".join(f"{k} {_fmt(metrics[k])}" for k in settings))
            + " (counts and galleries use count_threshold: the score with the best F1 at "
            "IoU 0.5 on validation)</p>"
        )
    prefixes, classes = per_class_table(metrics)
    if classes:
        parts.append("<h3>Per class</h3><table><tr><th>class</th>")
        parts += [f"<th>{html.escape(COLUMN_NAMES.get(p, p))}</th>" for p in prefixes]
        parts.append("</tr>")
        for name in classes:
            cells = []
            for prefix in prefixes:
                key = f"{prefix}/{name}"
                if key not in metrics:
                    cells.append("<td></td>")
                elif prefix in ("support", "gt"):
                    cells.append(f"<td>{int(metrics[key])}</td>")
                else:
                    cells.append(f"<td>{_with_ci(metrics, key)}</td>")
            parts.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}</tr>")
        parts.append("</table>")
    plots = run_dir / "plots"
    small: list[str] = []
    intervals = plot_intervals(
        metrics, task, plots / f"{split}_intervals.png", title=f"{split}: metrics"
    )
    if intervals is not None:
        small.append(_figure(intervals, "The metrics with their confidence intervals."))
    wide: list[tuple[str, str]] = []
    for name, caption in TASK_PLOTS.get(task, ()):
        figure = _figure(plots / f"{split}_{name}", caption)
        if name in WIDE_PLOTS:
            wide.append((name, figure))
        else:
            small.append(figure)
    parts.append('<div class="row">' + "".join(small) + "</div>")
    side_by_side = task == "segmentation"  # three narrow panels a row; detection's are wide
    pair = ("best.png", "worst.png") if side_by_side else ()
    galleries = [f for name, f in wide if name in pair and f]
    parts += [f for name, f in wide if name not in pair]
    if galleries:
        parts.append('<div class="row galleries">' + "".join(galleries) + "</div>")
    return "\n".join(parts)


def _ci_only(metrics: Mapping[str, float], key: str) -> str:
    interval = interval_of(metrics, key)
    if interval is None or math.isnan(interval.low):
        return ""
    return f'<span class="ci">({_fmt(interval.low)}–{_fmt(interval.high)})</span>'


def _split_sizes(run_dir: Path) -> dict[str, int]:
    split = _read_json(run_dir / "split.json") or {}
    return {k: len(v) for k, v in split.items() if isinstance(v, list)}


def _environment(run_dir: Path) -> str:
    env = _read_json(run_dir / "environment.json")
    if not env:
        return ""
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
    body = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in rows
        if v is not None
    )
    return f'<h2>Environment</h2><table class="facts">{body}</table>'


def _header(run_dir: Path, task: str, config: Mapping[str, Any]) -> str:
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
    body = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in facts
    )
    when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        f"<h1>mediscope report: {html.escape(run_dir.parent.name)}/"
        f"{html.escape(run_dir.name)}</h1>"
        f'<p class="sub">{html.escape(str(run_dir))}, written {when}</p>'
        f'<table class="facts">{body}</table>'
    )


def _config(run_dir: Path) -> str:
    text = (run_dir / "config.yaml").read_text()
    return (
        "<h2>Config</h2><details><summary>the resolved config.yaml</summary>"
        f"<pre>{html.escape(text)}</pre></details>"
    )


def _folds(run_dir: Path) -> str:
    summary = run_dir / "cv_summary.csv"
    if not summary.is_file():
        return ""
    table = pd.read_csv(summary)
    folds = table[~table.iloc[:, 0].astype(str).isin(["mean", "sd"])]
    mean = table[table.iloc[:, 0].astype(str) == "mean"]
    sd = table[table.iloc[:, 0].astype(str) == "sd"]
    columns = list(table.columns[1:])
    parts = [
        f"<h2>Cross-validation: {len(folds)} folds</h2>",
        '<p class="sub">Validation metrics of each fold\'s best checkpoint, their mean and '
        "sample standard deviation.</p>",
        "<table><tr><th>fold</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns),
        "</tr>",
    ]
    for _, row in folds.iterrows():
        cells = "".join(f"<td>{_fmt(float(row[c]))}</td>" for c in columns)
        parts.append(f"<tr><td>{html.escape(str(row.iloc[0]))}</td>{cells}</tr>")
    if len(mean) and len(sd):
        cells = "".join(
            f"<td><b>{_fmt(float(mean[c].iloc[0]))} ± {_fmt(float(sd[c].iloc[0]))}</b></td>"
            for c in columns
        )
        parts.append(f"<tr><td><b>mean ± sd</b></td>{cells}</tr>")
    parts.append("</table>")
    links = [
        f'<a href="{html.escape(p.name)}/{REPORT}">{html.escape(p.name)}</a>'
        for p in sorted(run_dir.glob("fold-*"))
        if (p / REPORT).is_file()
    ]
    if links:
        parts.append(f"<p>The report of each fold: {', '.join(links)}.</p>")
    return "\n".join(parts)


def build_report(run_dir: Path) -> str:
    """The HTML text of the report of ``run_dir`` (a run or cross-validation folder)."""
    run_dir = Path(run_dir)
    task, config = _task(run_dir)
    parts = [_header(run_dir, task, config), _folds(run_dir)]
    curves = run_dir / "plots" / "training_curves.png"
    if curves.is_file():
        parts.append("<h2>Training</h2>")
        parts.append(_figure(curves, "Loss and the monitored metric per epoch."))
    test = _read_json(run_dir / "test_metrics.json")
    val = _read_json(run_dir / "val_metrics.json")
    if test:
        parts.append(_metrics_section(run_dir, "test", test, task, "Test"))
    if val and test:  # the test comes first; validation is there for who wants it
        section = _metrics_section(run_dir, "val", val, task, "Validation")
        section = section.replace("<h2>Validation</h2>", "", 1)
        parts.append(
            '<details class="split"><summary>Validation (the split that chose the '
            f"checkpoint)</summary>{section}</details>"
        )
    elif val:
        parts.append(_metrics_section(run_dir, "val", val, task, "Validation"))
    evaluated = bool(test or val)
    if not evaluated and not (run_dir / "cv_summary.csv").is_file():
        parts.append('<p class="note">No evaluation yet: this run has no metrics files.</p>')
    parts.append(_environment(run_dir))
    parts.append(_config(run_dir))
    body = "\n".join(p for p in parts if p)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>mediscope report: {html.escape(run_dir.name)}</title>"
        f"<style>{STYLE}</style></head><body><main>\n{body}\n</main></body></html>\n"
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
        interval = interval_of(metrics, key)
        text = f"{key} {_fmt(metrics[key])}"
        if interval is not None and not math.isnan(interval.low):
            text += f" ({_fmt(interval.low)}–{_fmt(interval.high)})"
        lines.append(text)
    return lines
