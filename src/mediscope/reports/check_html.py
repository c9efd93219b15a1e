"""``check.html``: the dataset doctor's report as one self-contained HTML file.

Statistics tables, class-balance bar charts, image-size and box-size plots, the
duplicate pairs side by side, a gallery of a few samples per class drawn with their
labels (classification: the images; segmentation: mask colours and contours;
detection: the boxes), and the table of findings. Plots and pictures are PNGs inlined
as base64 ``data:`` URIs: the file opens offline, alone, and can be mailed.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from PIL import Image

from mediscope.data.doctor.duplicates import MIN_CORRELATION
from mediscope.data.doctor.findings import KINDS
from mediscope.data.doctor.run import CheckReport, mask_reader
from mediscope.data.doctor.scan import Item
from mediscope.data.doctor.stats import split_names
from mediscope.data.images import read_image
from mediscope.errors import MediscopeError
from mediscope.files import write_text_atomic
from mediscope.reports.plotting import plt
from mediscope.reports.segmentation import class_colors, overlay

#: Rows of the findings table (check.json holds every finding).
MAX_ROWS = 2000
#: Duplicate pairs shown side by side.
MAX_PAIRS = 8
#: Longer side of a gallery picture, in pixels.
TILE = 256
SPLIT_COLOURS = {"train": "#0072B2", "trainval": "#0072B2", "val": "#E69F00", "test": "#CC79A7"}


def write_check_html(report: CheckReport, path: Path, *, samples: int = 4) -> Path:
    """Writes ``check.html`` atomically.

    Args:
        report: The doctor's report.
        path: The HTML file to write.
        samples: Gallery images per class.

    Returns:
        ``path``.
    """
    return write_text_atomic(path, render_check_html(report, samples=samples))


def render_check_html(report: CheckReport, *, samples: int = 4) -> str:
    """The report as the text of one self-contained HTML page."""
    data = report.config.data
    title = f"mediscope check: {data.path}"
    counts = report.counts
    parts = [
        f"<h1>{_e(title)}</h1>",
        _dataset_table(report),
        '<div class="cards">'
        + "".join(
            f'<div class="card {s}"><b>{counts[s]}</b> {label if counts[s] == 1 else plural}</div>'
            for s, label, plural in (
                ("error", "error", "errors"),
                ("warning", "warning", "warnings"),
                ("info", "info", "info"),
            )
        )
        + "</div>",
        "<h2>Findings by kind</h2>",
        _kinds_table(report),
        "<h2>Images</h2>",
        _images_table(report.stats.summary["images"]),
        _img(plot_image_sizes(report), "image sizes"),
        "<h2>Class balance</h2>",
        _balance_tables(report),
        _img(plot_class_balance(report), "class balance"),
    ]
    if report.config.task == "detection":
        parts += [
            "<h2>Boxes</h2>",
            _spread_table(report.stats.summary["boxes"]),
            _img(plot_boxes(report), "box sizes and aspect ratios"),
        ]
    pairs = _pairs_section(report)
    if pairs:
        parts += ["<h2>Duplicates</h2>", pairs]
    if samples > 0:
        parts += [f"<h2>Gallery: {samples} samples per class</h2>", _gallery(report, samples)]
    parts += ["<h2>Findings</h2>", _findings_table(report)]
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
    parts.append(
        f"<footer>Written by mediscope check on {stamp}; check.json holds every "
        "finding and number.</footer>"
    )
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n"
        "</body>\n</html>\n"
    )


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#222}
h1{font-size:1.5em;word-break:break-all}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:1em;margin:1em 0}.card{padding:.6em 1.2em;border-radius:6px;
background:#eee}.card b{font-size:1.5em}.card.error{background:#fbe3e3}
.card.warning{background:#fff3d6}.card.info{background:#e6f0fb}
.sev-error{color:#b00020;font-weight:600}.sev-warning{color:#9a6200;font-weight:600}
.sev-info{color:#2b5d9b}img.plot{max-width:100%;display:block;margin:.6em 0}
.grid{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;font-size:.75em;width:260px}
figure img{max-width:256px;max-height:256px;display:block;border:1px solid #ccc}
figcaption{word-break:break-all}.pair{display:flex;gap:8px;margin-bottom:10px}
td.file{word-break:break-all;max-width:420px}footer{margin-top:2em;color:#777;font-size:.8em}
.swatch{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 .8em;vertical-align:-.1em;
border:1px solid #888}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    return f'<img class="plot" alt="{_e(alt)}" src="{_uri(png)}">'


def _figure_png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


# -- tables --------------------------------------------------------------------------------


def _rows(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = ""
    for row in rows:
        cells = []
        for value in row:
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            cells.append(f'<td class="n">{_e(value)}</td>' if numeric else f"<td>{value}</td>")
        body += "<tr>" + "".join(cells) + "</tr>"
    return f"<table>{head}{body}</table>"


def _dataset_table(report: CheckReport) -> str:
    data = report.config.data
    splits = report.stats.summary["images"]["per_split"]
    rows = [
        ("task", _e(report.config.task)),
        ("format", _e(data.format)),
        ("data.path", _e(data.path)),
    ]
    if data.test_path is not None:
        rows.append(("data.test_path", _e(data.test_path)))
    if data.exclude is not None:
        rows.append(("data.exclude", _e(f"{data.exclude} ({report.excluded} samples left out)")))
    rows += [
        ("classes", _e(", ".join(report.classes))),
        ("samples", _e(", ".join(f"{s} {n}" for s, n in splits.items()))),
        ("splits", _e(report.split_source)),
        (
            "near duplicates",
            _e(
                f"perceptual hash within {report.near_threshold} bits and thumbnail "
                f"correlation at least {MIN_CORRELATION}"
            ),
        ),
    ]
    return _rows([(_e(k), v) for k, v in rows])


def _kinds_table(report: CheckReport) -> str:
    table = report.by_kind()
    if not table:
        return "<p>Nothing found.</p>"
    rows = []
    for kind, severities in table.items():
        for severity, count in severities.items():
            rows.append(
                (
                    f'<span class="sev-{severity}">{severity}</span>',
                    _e(kind),
                    count,
                    _e(KINDS.get(kind, "")),
                )
            )
    return _rows(rows, ("severity", "kind", "count", "meaning"))


def _images_table(images: dict[str, Any]) -> str:
    rows: list[tuple[Any, ...]] = [
        ("images", images["count"]),
        ("readable", images["readable"]),
        ("per split", _e(", ".join(f"{s} {n}" for s, n in images["per_split"].items()))),
        ("modes", _e(", ".join(f"{m} {n}" for m, n in images["modes"].items()))),
        ("bit depths", _e(", ".join(f"{b}-bit {n}" for b, n in images["bit_depths"].items()))),
    ]
    for key in ("width", "height"):
        spread = images[key]
        rows.append(
            (key, _e(f"min {spread['min']}, median {spread['median']}, max {spread['max']}"))
        )
    rows.append(
        ("commonest sizes", _e(", ".join(f"{s} ({n})" for s, n in images["sizes"].items())))
    )
    return _rows([(_e(k), v) for k, v in rows])


def _balance_tables(report: CheckReport) -> str:
    tables = report.stats.summary["classes"]
    out = []
    titles = {
        "images": "images per class"
        if report.config.task == "classification"
        else "images containing the class",
        "objects": "objects per class",
        "pixels": "pixels per class",
    }
    for key in ("images", "objects", "pixels"):
        if key not in tables:
            continue
        table = tables[key]
        splits = list(table)
        rows = [[_e(c), *(table[s][c] for s in splits)] for c in report.classes]
        out.append(f"<h3>{_e(titles[key])}</h3>" + _rows(rows, ["class", *splits]))
    if "negatives" in tables:
        negatives = ", ".join(f"{s} {n}" for s, n in tables["negatives"].items())
        out.append(f"<p>Images without objects (negatives): {_e(negatives)}</p>")
    if "pixel_share" in tables:
        share = ", ".join(f"{c} {100 * v:.2f} %" for c, v in tables["pixel_share"].items())
        out.append(f"<p>Pixel share: {_e(share)}</p>")
    return "\n".join(out)


def _spread_table(boxes: dict[str, Any]) -> str:
    rows: list[tuple[Any, ...]] = [("boxes", boxes["count"])]
    for key in ("per_image", "width", "height", "area", "aspect", "relative_size"):
        spread = boxes[key]
        text = ", ".join(f"{k} {spread[k]}" for k in ("min", "median", "mean", "max"))
        rows.append((key.replace("_", " "), _e(text)))
    rows += [("zero size", boxes["zero_size"]), ("outside the image", boxes["outside_image"])]
    return _rows([(_e(k), v) for k, v in rows])


def _findings_table(report: CheckReport) -> str:
    if not report.findings:
        return "<p>Nothing found.</p>"
    header = ("severity", "kind", "file", "split", "message", "other file")
    rows = []
    for finding in report.findings[:MAX_ROWS]:
        other = finding.other_file or ""
        if other and finding.other_split:
            other = f"{other} ({finding.other_split})"
        message = _e(finding.message) + (f"<br><i>{_e(finding.hint)}</i>" if finding.hint else "")
        rows.append(
            f'<tr><td class="sev-{finding.severity}">{finding.severity}</td>'
            f'<td>{_e(finding.kind)}</td><td class="file">{_e(finding.place())}</td>'
            f"<td>{_e(finding.split or '')}</td><td>{message}</td>"
            f'<td class="file">{_e(other)}</td></tr>'
        )
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>"
    table = f"<table>{head}{''.join(rows)}</table>"
    more = len(report.findings) - MAX_ROWS
    if more > 0:
        table += f"<p>{more} more findings in check.json.</p>"
    return table


# -- plots ---------------------------------------------------------------------------------


def plot_class_balance(report: CheckReport) -> bytes | None:
    """Bars per class and split: images (classification), objects and images
    (detection), pixel share and images (segmentation)."""
    tables = report.stats.summary["classes"]
    task = report.config.task
    panels: list[tuple[str, dict[str, dict[str, float]], str]] = []
    if task == "classification":
        panels.append(("images per class", tables["images"], "images"))
    elif task == "detection":
        panels.append(("objects per class", tables["objects"], "objects"))
        panels.append(("images containing the class", tables["images"], "images"))
    else:
        pixels = tables["pixels"]
        share = {
            s: {c: 100 * n / max(1, sum(row.values())) for c, n in row.items()}
            for s, row in pixels.items()
        }
        panels.append(("pixel share per class", share, "% of pixels"))
        panels.append(("images containing the class", tables["images"], "images"))
    classes = report.classes
    width = max(5.0, 0.9 * len(classes) + 2)
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 3.6), squeeze=False)
    for ax, (title, table, unit) in zip(axes[0], panels, strict=True):
        splits = [s for s in table if s != "total"]
        step = 0.8 / max(1, len(splits))
        x = np.arange(len(classes))
        for k, split in enumerate(splits):
            values = [table[split][c] for c in classes]
            bars = ax.bar(
                x + (k - (len(splits) - 1) / 2) * step,
                values,
                step,
                label=split,
                color=SPLIT_COLOURS.get(split, f"C{k}"),
            )
            if len(classes) * len(splits) <= 24:
                labels = [f"{v:.1f}" if unit.startswith("%") else f"{int(v)}" for v in values]
                ax.bar_label(bars, labels=labels, fontsize=7, padding=1)
        ax.set_xticks(
            x,
            [_short(c, 18) for c in classes],
            rotation=30 if len(classes) > 4 else 0,
            ha="right" if len(classes) > 4 else "center",
        )
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.margins(y=0.15)
        ax.spines[["top", "right"]].set_visible(False)
        if not unit.startswith("%"):
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if len(splits) > 1:
            ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return _figure_png(fig)


def plot_image_sizes(report: CheckReport) -> bytes | None:
    """Image width against height, one marker per distinct size and split, its area
    growing with the number of images of that size."""
    sizes = report.stats.image_sizes
    if not len(sizes):
        return None
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    splits = split_names(report.items)
    labels: dict[tuple[float, float], list[str]] = {}
    for k, split in enumerate(splits):
        chosen = np.array([s == split for s in report.stats.image_splits])
        if not chosen.any():
            continue
        unique, counts = np.unique(sizes[chosen], axis=0, return_counts=True)
        colour = SPLIT_COLOURS.get(split, f"C{k}")
        ax.scatter(
            unique[:, 0],
            unique[:, 1],
            s=np.minimum(400, 20 + 25 * np.sqrt(counts)),
            marker="osD^v"[k % 5],
            facecolors=colour if k == 0 else "none",
            edgecolors=colour,
            linewidths=1.5,
            alpha=0.7,
            label=f"{split} ({int(chosen.sum())} images)",
        )
        for (w, h), n in zip(unique.tolist(), counts.tolist(), strict=True):
            labels.setdefault((w, h), []).append(f"{split} {n}")
    if len(labels) <= 8:
        for (w, h), parts in labels.items():
            text = f"{int(w)} x {int(h)}: {', '.join(parts)}"
            ax.annotate(text, (w, h), fontsize=7, xytext=(10, 8), textcoords="offset points")
    low, high = float(sizes.min()), float(sizes.max())
    pad = max(8.0, 0.15 * (high - low), 0.1 * high)
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(low - pad, high + pad)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], color="#ccc", lw=0.8, zorder=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("width (pixels)")
    ax.set_ylabel("height (pixels)")
    ax.set_title("image sizes (marker area: number of images)")
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _figure_png(fig)


def plot_boxes(report: CheckReport) -> bytes | None:
    """Box width against height per class (log scales for a wide range of sizes), and
    the distributions of aspect ratio and of size relative to the image."""
    sizes, labels = report.stats.box_sizes, report.stats.box_labels
    if not len(sizes):
        return None
    palette = class_colors(len(report.classes) + 1)[1:] / 255.0
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
    ax = axes[0]
    for index, name in enumerate(report.classes):
        chosen = labels == index
        if chosen.any():
            ax.scatter(
                sizes[chosen, 0],
                sizes[chosen, 1],
                s=9,
                alpha=0.6,
                color=palette[index],
                label=f"{name} ({int(chosen.sum())})",
                edgecolors="none",
            )
    positive = sizes[(sizes > 0).all(axis=1)]
    if len(positive) and positive.max() > 20 * positive.min():  # wide ranges: log scales
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("box width (pixels)")
    ax.set_ylabel("box height (pixels)")
    ax.set_title("box sizes")
    ax.legend(frameon=False, fontsize=7, markerscale=2)
    aspect = np.log2(np.maximum(sizes[:, 0], 1e-6) / np.maximum(sizes[:, 1], 1e-6))
    axes[1].hist(aspect, bins=30, color="#0072B2")
    top = max(1.0, float(np.abs(aspect).max()))
    ticks = np.arange(-np.ceil(top), np.ceil(top) + 1)
    axes[1].set_xticks(ticks, [_ratio(t) for t in ticks])
    axes[1].set_xlabel("aspect ratio width : height")
    axes[1].set_ylabel("boxes")
    axes[1].set_title("box aspect ratios")
    relative = report.stats.box_relative
    if len(relative):
        axes[2].hist(100 * relative, bins=30, color="#009E73")
    axes[2].set_xlabel("√(box area / image area), %")
    axes[2].set_ylabel("boxes")
    axes[2].set_title("box size relative to the image")
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _figure_png(fig)


def _ratio(log2: float) -> str:
    value = 2.0 ** abs(log2)
    text = f"{value:g}"
    return f"{text}:1" if log2 >= 0 else f"1:{text}"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- pictures ------------------------------------------------------------------------------


def sample_picture(report: CheckReport, item: Item) -> np.ndarray:
    """An item drawn for visual checking, longer side :data:`TILE` pixels: the image,
    with its mask's colours and contours (segmentation) or its boxes (detection).

    Raises:
        MediscopeError: when the image or its mask does not read.
    """
    image = read_image(item.image, channels=3)
    height, width = image.shape[:2]
    scale = TILE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small_pixels = cv2.INTER_NEAREST if scale >= 2 else cv2.INTER_AREA
    resized = cv2.resize(image, size, interpolation=small_pixels)
    if report.config.task == "segmentation" and item.sample.mask is not None:
        mask = mask_reader(report.config, report.classes)(item.sample.mask)
        if mask.shape[:2] != image.shape[:2]:
            return resized  # reported as mask_size; the image alone
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        return overlay(resized, mask, class_colors(len(report.classes)))
    if report.config.task == "detection":
        from mediscope.reports.detection import draw_detections

        boxes, labels = item.boxes()
        return draw_detections(resized, boxes * scale, labels, None, report.classes)
    return resized


def gallery_items(report: CheckReport, samples: int) -> dict[str, list[Item]]:
    """Up to ``samples`` readable items per class, spread evenly over the dataset (for
    segmentation, the object classes; detection and segmentation: images holding it)."""
    task = report.config.task
    readable = [
        (item, pixels)
        for item, info, pixels in zip(report.items, report.infos, report.pixels, strict=True)
        if info is not None
    ]
    chosen: dict[str, list[Item]] = {}
    start = 1 if task == "segmentation" and len(report.classes) > 1 else 0
    for index in range(start, len(report.classes)):
        if task == "classification":
            members = [item for item, _ in readable if item.sample.label == index]
        elif task == "detection":
            members = [item for item, _ in readable if (item.boxes()[1] == index).any()]
        else:
            members = [item for item, px in readable if px is not None and px[index] > 0]
        if members and samples > 0:
            picks = np.unique(np.linspace(0, len(members) - 1, min(samples, len(members))))
            chosen[report.classes[index]] = [members[int(i)] for i in picks.round()]
        else:
            chosen[report.classes[index]] = []
    return chosen


def _legend(report: CheckReport) -> str:
    """The class colours of masks and boxes, as coloured squares with the names."""
    task = report.config.task
    if task == "classification":
        return ""
    colours = class_colors(len(report.classes) + (1 if task == "detection" else 0))
    if task == "detection":
        colours = colours[1:]  # boxes take the colours after the background's
    named = list(zip(report.classes, colours, strict=True))[1 if task == "segmentation" else 0 :]
    swatches = "".join(
        f'<span class="swatch" style="background:rgb({r},{g},{b})"></span>{_e(name)} '
        for name, (r, g, b) in named
    )
    return f"<p>Colours: {swatches}</p>"


def _gallery(report: CheckReport, samples: int) -> str:
    out = [_legend(report)]
    for name, items in gallery_items(report, samples).items():
        figures = [_figure(report, item) for item in items]
        tiles = "".join(figures) or "<p>No readable sample.</p>"
        out.append(f'<h3>{_e(name)}</h3><div class="grid">{tiles}</div>')
    return "\n".join(out)


def _figure(report: CheckReport, item: Item, note: str = "") -> str:
    try:
        picture = _uri(_png(sample_picture(report, item)))
    except (MediscopeError, ValueError, OSError) as exc:
        return f"<figure><figcaption>{_e(item.image)}: {_e(exc)}</figcaption></figure>"
    caption = f"{Path(item.image).name} · {item.split}"
    if report.config.task == "detection":
        caption += f" · {len(item.boxes()[0])} objects"
    if note:
        caption += f" · {note}"
    return (
        f'<figure><img alt="{_e(item.image)}" src="{picture}">'
        f'<figcaption title="{_e(item.image)}">{_e(caption)}</figcaption></figure>'
    )


def _pairs_section(report: CheckReport) -> str:
    by_image = {item.image: item for item in report.items}
    pairs = [
        f
        for f in report.findings
        if f.kind in ("exact_duplicate", "near_duplicate") and f.other_file in by_image
    ][:MAX_PAIRS]
    out = []
    for finding in pairs:
        assert finding.file is not None and finding.other_file is not None
        later, earlier = by_image.get(finding.file), by_image[finding.other_file]
        if later is None:
            continue
        note = finding.kind.replace("_", " ")
        if "distance" in finding.details:
            note += f", hash distance {finding.details['distance']}"
        out.append(
            '<div class="pair">'
            + _figure(report, earlier, "kept")
            + _figure(report, later, f"{note} ({finding.severity})")
            + "</div>"
        )
    total = sum(f.kind in ("exact_duplicate", "near_duplicate") for f in report.findings)
    if out and total > len(out):
        out.append(f"<p>{total - len(out)} more pairs in the findings.</p>")
    return "\n".join(out)
