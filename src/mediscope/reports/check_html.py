"""``check.html``: the dataset doctor's report as one self-contained HTML file.

The findings by kind first (each kind linked to its rows in the full list, which comes
last), then statistics tables, class-balance bar charts, image-size and box-size plots, the
duplicate pairs side by side, a gallery of a few samples per class drawn with their
labels (classification: the images; segmentation: mask colours and contours;
detection: the boxes), and the table of findings. Plots and pictures are PNGs inlined
as base64 ``data:`` URIs: the file opens offline, alone, and can be mailed.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from PIL import Image

from mediscope.data.doctor.duplicates import MIN_CORRELATION
from mediscope.data.doctor.findings import meaning
from mediscope.data.doctor.run import CheckReport, mask_reader
from mediscope.data.doctor.scan import Item
from mediscope.data.doctor.stats import split_names
from mediscope.data.images import read_image
from mediscope.errors import MediscopeError
from mediscope.files import refuse_overlap, write_text_atomic
from mediscope.inference.pictures import (
    DENSE,
    class_colors,
    class_tags,
    draw_detections,
    overlay,
    tag_regions,
)
from mediscope.reports.plotting import plt
from mediscope.reports.templating import Figure, data_uri, render

#: Rows of the findings table (check.json holds every finding).
MAX_ROWS = 2000
#: Duplicate pairs shown side by side.
MAX_PAIRS = 8
#: Longer side of a gallery picture, in pixels.
TILE = 256
SPLIT_COLOURS = {"train": "#0072B2", "trainval": "#0072B2", "val": "#E69F00", "test": "#CC79A7"}


def write_check_html(
    report: CheckReport, path: Path, *, samples: int = 4, option: str = "--output"
) -> Path:
    """Writes ``check.html`` atomically.

    Args:
        report: The doctor's report.
        path: The HTML file to write.
        samples: Gallery images per class.
        option: How the command line names the output (for the error below).

    Returns:
        ``path``.

    Raises:
        ConfigError: when ``path`` is a file the check read, or inside or above one.
    """
    refuse_overlap(path, report.inputs(), option=option)
    return write_text_atomic(path, render_check_html(report, samples=samples))


def render_check_html(report: CheckReport, *, samples: int = 4) -> str:
    """The report as the text of one self-contained HTML page."""
    summary = report.stats.summary
    classes = summary["classes"]
    boxes = summary.get("boxes")  # detection: the boxes' statistics
    pairs, more_pairs = _pairs(report)
    findings, more_findings = _findings(report)
    return render(
        "check.html.j2",
        title=f"mediscope check: {report.config.data.path}",
        dataset=_dataset_rows(report),
        counts=report.counts,
        kinds=_kind_rows(report),
        images=_images_rows(summary["images"]),
        image_sizes=_uri(plot_image_sizes(report)),
        balance=_balance_tables(report),
        negatives=_joined(classes["negatives"]) if "negatives" in classes else None,
        pixel_share=", ".join(f"{c} {100 * v:.2f} %" for c, v in classes["pixel_share"].items())
        if "pixel_share" in classes
        else None,
        class_balance=_uri(plot_class_balance(report)),
        boxes=_spread_rows(boxes) if boxes is not None else None,
        box_sizes=_uri(plot_boxes(report)) if boxes is not None else None,
        pairs=pairs,
        more_pairs=more_pairs,
        samples=samples,
        legend=_legend(report),
        gallery=list(_gallery(report, samples).items()) if samples > 0 else None,
        findings=findings,
        more_findings=more_findings,
        stamp=datetime.now().strftime("%Y-%m-%d %H:%M"),
    )


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def _uri(png: bytes | None) -> str | None:
    return None if png is None else data_uri(png)


def _figure_png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _joined(counts: Mapping[Any, Any], unit: str = "") -> str:
    """``a 3, b 4``: names with their counts."""
    return ", ".join(f"{k}{unit} {n}" for k, n in counts.items())


# -- tables --------------------------------------------------------------------------------

#: A table row: its cells, text or numbers (numbers are right-aligned).
Row = Sequence[str | int | float]


def _dataset_rows(report: CheckReport) -> list[Row]:
    data = report.config.data
    rows: list[Row] = [
        ("task", report.config.task),
        ("format", data.format),
        ("data.path", str(data.path)),
    ]
    if data.test_path is not None:
        rows.append(("data.test_path", str(data.test_path)))
    if data.exclude is not None:
        rows.append(("data.exclude", f"{data.exclude} ({report.excluded} samples left out)"))
    rows += [
        ("classes", ", ".join(report.classes)),
        ("samples", _joined(report.stats.summary["images"]["per_split"])),
        ("splits", str(report.split_source)),
        (
            "near duplicates",
            f"perceptual hash within {report.near_threshold} bits and thumbnail "
            f"correlation at least {MIN_CORRELATION}",
        ),
    ]
    return rows


def _kind_rows(report: CheckReport) -> list[tuple[str, str, int, str]]:
    """(severity, kind, count, meaning) of the findings by kind."""
    return [
        (severity, kind, count, meaning(kind, severity))
        for kind, severities in report.by_kind().items()
        for severity, count in severities.items()
    ]


def _images_rows(images: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [
        ("images", images["count"]),
        ("readable", images["readable"]),
        ("per split", _joined(images["per_split"])),
        ("modes", _joined(images["modes"])),
        ("bit depths", _joined(images["bit_depths"], "-bit")),
    ]
    for key in ("width", "height"):
        spread = images[key]
        rows.append((key, f"min {spread['min']}, median {spread['median']}, max {spread['max']}"))
    sizes = images["sizes"]
    if len(sizes) == 1:
        ((size, count),) = sizes.items()
        rows.append(("size", f"all {count} readable images are {size}"))
    else:
        rows.append(("commonest sizes", ", ".join(f"{s} ({n})" for s, n in sizes.items())))
    return rows


def _balance_tables(report: CheckReport) -> list[dict[str, Any]]:
    """Per table of the class balance: its title, splits and rows (class, counts)."""
    tables = report.stats.summary["classes"]
    titles = {
        "images": "images per class"
        if report.config.task == "classification"
        else "images containing the class",
        "objects": "objects per class",
        "pixels": "pixels per class",
    }
    out = []
    for key in ("images", "objects", "pixels"):
        if key not in tables:
            continue
        table = tables[key]
        splits = list(table)
        rows = [[c, *(table[s][c] for s in splits)] for c in report.classes]
        out.append({"title": titles[key], "splits": splits, "rows": rows})
    return out


def _spread_rows(boxes: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [("boxes", boxes["count"])]
    for key in ("per_image", "width", "height", "area", "aspect", "relative_size"):
        spread = boxes[key]
        text = ", ".join(f"{k} {spread[k]}" for k in ("min", "median", "mean", "max"))
        rows.append((key.replace("_", " "), text))
    rows += [("zero size", boxes["zero_size"]), ("outside the image", boxes["outside_image"])]
    return rows


def _findings(report: CheckReport) -> tuple[list[dict[str, Any]], int]:
    """The rows of the findings table (at most :data:`MAX_ROWS`) and how many more."""
    rows = []
    seen: set[tuple[str, str]] = set()
    for finding in report.findings[:MAX_ROWS]:
        first = (finding.severity, finding.kind) not in seen  # the summary links to it
        seen.add((finding.severity, finding.kind))
        other = finding.other_file or ""
        if other and finding.other_split:
            other = f"{other} ({finding.other_split})"
        rows.append(
            {
                "severity": finding.severity,
                "kind": finding.kind,
                "file": finding.place(),
                "split": finding.split or "",
                "message": finding.message,
                "hint": finding.hint or "",
                "other": other,
                "first": first,
            }
        )
    return rows, len(report.findings) - MAX_ROWS


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
    growing with the number of images of that size; None when all images have one size
    (the images table says which)."""
    sizes = report.stats.image_sizes
    if len(np.unique(sizes, axis=0)) < 2:
        return None  # one size (or none): the table says it, a lone marker would not
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
    with its mask's colours, contours and class tags (segmentation) or its boxes
    (detection: with their class names; above :data:`DENSE` boxes, the boxes alone
    under a band of counts per class).

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
        colours = class_colors(len(report.classes))
        drawn = overlay(resized, mask, colours)
        return tag_regions(drawn, mask, colours, class_tags(report.classes))
    if report.config.task == "detection":
        boxes, labels = item.boxes()
        if len(boxes) > DENSE:  # a crowd of tags hides the image: boxes, and counts above
            return draw_detections(
                resized, boxes * scale, labels, None, report.classes, tags="none", legend=True
            )
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


def _legend(report: CheckReport) -> list[tuple[str, tuple[int, int, int]]]:
    """The class colours of masks and boxes, as (name, RGB); none for classification."""
    task = report.config.task
    if task == "classification":
        return []
    colours = class_colors(len(report.classes) + (1 if task == "detection" else 0))
    if task == "detection":
        colours = colours[1:]  # boxes take the colours after the background's
    if task == "segmentation":  # the objects carry their class tags too
        names = [
            f"{n} ({t})" if t != n else n
            for n, t in zip(report.classes, class_tags(report.classes), strict=True)
        ]
    else:
        names = list(report.classes)
    named = list(zip(names, colours, strict=True))[1 if task == "segmentation" else 0 :]
    return [(name, (int(r), int(g), int(b))) for name, (r, g, b) in named]


def _gallery(report: CheckReport, samples: int) -> dict[str, list[Figure]]:
    return {
        name: [_figure(report, item) for item in items]
        for name, items in gallery_items(report, samples).items()
    }


def _figure(report: CheckReport, item: Item, note: str = "") -> Figure:
    try:
        picture = data_uri(_png(sample_picture(report, item)))
    except (MediscopeError, ValueError, OSError) as exc:
        return Figure(None, f"{item.image}: {exc}")
    caption = f"{Path(item.image).name} · {item.split}"
    if "boxes" in report.stats.summary:  # detection: the objects of the image
        caption += f" · {len(item.boxes()[0])} objects"
    if note:
        caption += f" · {note}"
    return Figure(picture, caption, alt=item.image, title=item.image)


def _pairs(report: CheckReport) -> tuple[list[tuple[Figure, Figure]], int]:
    """The duplicate pairs shown (at most :data:`MAX_PAIRS`), and how many more there are."""
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
        kept = _figure(report, earlier, "kept")
        out.append((kept, _figure(report, later, f"{note} ({finding.severity})")))
    total = sum(f.kind in ("exact_duplicate", "near_duplicate") for f in report.findings)
    return out, total - len(out)
