"""Detection outputs: boxes drawn on images, precision-recall curves, and prediction files
(CSV, COCO JSON, YOLO text, per-image counts) with their readers.

Files written by :func:`write_detection_predictions` into one folder:

* ``predictions.csv``: ``path,width,height,class,score,x1,y1,x2,y2``, one row per box
  (class name, pixel corners). An image without boxes gets one row with only its path
  and size, so every image is listed.
* ``predictions.json``: self-contained COCO: ``images`` (``id``, ``file_name``,
  ``width``, ``height``), ``categories`` (``id`` = class index + 1, ``name``) and
  ``annotations``, a COCO results list (``image_id``, ``category_id``, ``bbox`` as
  ``[x, y, w, h]`` pixels, ``score``; plus ``id`` and ``area``), which pycocotools'
  ``loadRes`` accepts as it is.
* ``labels/<name>.txt``: YOLO lines ``class cx cy w h score`` (class index, centre and
  size as fractions of the image width and height), best score first; an empty file
  for an image without boxes. ``<name>`` is the image's file stem (see
  :func:`label_names`).
* ``counts.csv``: ``path,<class 1>,...,<class C>,total``: boxes per class and image,
  what a reader of a smear counts.

Numbers are written in the shortest form that reads back as the same double. Every file
is written atomically (the ``labels`` folder as a whole).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from mediscope.data.formats.yolo import label_lines
from mediscope.errors import DataError
from mediscope.files import staged_dir, write_json_atomic, write_text_atomic
from mediscope.metrics.detection import DetectionReport
from mediscope.reports.plotting import plt, save_figure
from mediscope.reports.segmentation import class_colors

#: Columns of ``predictions.csv``.
CSV_COLUMNS = ("path", "width", "height", "class", "score", "x1", "y1", "x2", "y2")


def _array(values: Any, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype).reshape(shape)


@dataclass
class DetectionRecord:
    """The detections of one image.

    Attributes:
        path: The image's path (or id), as the user gave it.
        width: Image width in pixels.
        height: Image height in pixels.
        boxes: ``(N, 4)`` xyxy pixels (NumPy arrays or tensors are converted).
        scores: ``(N,)`` scores.
        labels: ``(N,)`` class indices ``0..C-1``.
    """

    path: str
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        self.path = str(self.path)
        self.width, self.height = int(self.width), int(self.height)
        self.boxes = _array(self.boxes, np.float64, (-1, 4))
        self.scores = _array(self.scores, np.float64, (-1,))
        self.labels = _array(self.labels, np.int64, (-1,))
        if not len(self.boxes) == len(self.scores) == len(self.labels):
            raise ValueError(
                f"{self.path}: {len(self.boxes)} boxes, {len(self.scores)} scores, "
                f"{len(self.labels)} labels"
            )


# -- pictures ---------------------------------------------------------------------------


#: Above this many boxes, tags show scores only and a colour legend names the classes.
DENSE = 40


def line_width(height: int, width: int) -> int:
    """Box outline width that stays visible when a large image is shown whole."""
    return max(2, round(max(height, width) / 300))


def font_size(height: int, width: int) -> int:
    """Label text height in pixels: about 1/50 of the longer side, at least 12."""
    return max(12, round(max(height, width) / 50))


def _text_colour(colour: Sequence[int]) -> tuple[int, int, int]:
    """Black on light colours, white on dark ones (relative luminance)."""
    luminance = 0.2126 * colour[0] + 0.7152 * colour[1] + 0.0722 * colour[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def draw_detections(
    image: np.ndarray,
    boxes: Any,
    labels: Any,
    scores: Any | None,
    classes: Sequence[str],
    *,
    colors: np.ndarray | None = None,
    thickness: int | None = None,
    text_size: int | None = None,
) -> np.ndarray:
    """The image with class-coloured boxes, each labelled with its class and score.

    Outline width and text size grow with the image (:func:`line_width`,
    :func:`font_size`), so that boxes and labels stay readable when a 4000 px smear is
    shown whole, but never much beyond the objects' own size: on a smear of many small
    bacteria the tags stay small. Labels sit on a filled tag of the class colour above
    the box (inside it at the image's top edge); with more than :data:`DENSE` boxes a
    tag shows the score only and a legend of the class colours is drawn in the corner.
    The best-scored boxes are drawn last, on top.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (grey ``(H, W)`` also works).
        boxes: ``(N, 4)`` xyxy pixels.
        labels: ``(N,)`` class indices.
        scores: ``(N,)`` scores, or None (ground truth: class names only).
        classes: Class names (no background).
        colors: ``(C, 3)`` uint8 class colours; default: the segmentation class colours
            without the background's (Okabe-Ito first).
        thickness: Outline width in pixels; default :func:`line_width`.
        text_size: Label text height in pixels; default :func:`font_size`.

    Returns:
        A new ``(H, W, 3)`` uint8 RGB image.
    """
    rgb = np.asarray(image)
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {rgb.dtype}")
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got {rgb.shape}")
    rgb = np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb[:, :, :3]
    height, width = rgb.shape[:2]
    box_array = _array(boxes, np.float64, (-1, 4))
    label_array = _array(labels, np.int64, (-1,))
    score_array = None if scores is None else _array(scores, np.float64, (-1,))
    if len(label_array) != len(box_array) or (
        score_array is not None and len(score_array) != len(box_array)
    ):
        raise ValueError("boxes, labels and scores differ in length")
    if label_array.size and (label_array.min() < 0 or label_array.max() >= len(classes)):
        raise ValueError(f"labels outside 0..{len(classes) - 1}")
    palette = class_colors(len(classes) + 1)[1:] if colors is None else np.asarray(colors)
    sides = np.maximum(box_array[:, 2] - box_array[:, 0], box_array[:, 3] - box_array[:, 1])
    typical = float(np.median(sides)) if len(sides) else float(max(height, width))
    line = thickness or min(line_width(height, width), max(1, round(typical / 12)))
    size = text_size or min(font_size(height, width), max(10, round(typical * 0.6)))
    font = ImageFont.load_default(size=size)
    dense = len(box_array) > DENSE
    picture = Image.fromarray(np.ascontiguousarray(rgb))
    draw = ImageDraw.Draw(picture)
    order = np.argsort(score_array, kind="stable") if score_array is not None else None
    for i in order if order is not None else range(len(box_array)):
        colour = tuple(int(c) for c in palette[label_array[i]])
        x1, y1, x2, y2 = (float(v) for v in box_array[i])
        draw.rectangle((x1, y1, max(x1, x2), max(y1, y2)), outline=colour, width=line)
        text = "" if dense and score_array is not None else classes[label_array[i]]
        if score_array is not None:
            text = f"{text} {score_array[i]:.2f}".strip()
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        pad = max(1, line // 2)
        tag_w, tag_h = right - left + 2 * pad, bottom - top + 2 * pad
        tag_x = min(max(0.0, x1), max(0.0, width - tag_w))
        tag_y = y1 - tag_h if y1 - tag_h >= 0 else max(0.0, y1)
        draw.rectangle((tag_x, tag_y, tag_x + tag_w, tag_y + tag_h), fill=colour)
        draw.text(
            (tag_x + pad - left, tag_y + pad - top), text, font=font, fill=_text_colour(colour)
        )
    if dense:
        _legend(draw, classes, palette, ImageFont.load_default(size=font_size(height, width)))
    return np.asarray(picture)


def _legend(
    draw: ImageDraw.ImageDraw, classes: Sequence[str], palette: np.ndarray, font: Any
) -> None:
    """Class names on their colours, stacked in the top-left corner."""
    y = 4.0
    for name, colour in zip(classes, palette, strict=False):
        fill = tuple(int(c) for c in colour)
        left, top, right, bottom = draw.textbbox((0, 0), name, font=font)
        draw.rectangle((4, y, 12 + right - left, y + 4 + bottom - top), fill=fill)
        draw.text((8 - left, y + 2 - top), name, font=font, fill=_text_colour(fill))
        y += bottom - top + 8


def plot_pr_curves(report: DetectionReport, path: str | Path, *, title: str | None = None) -> Path:
    """Precision-recall curves at IoU 0.5, one per class with its AP in the legend.

    Each curve is the interpolated precision (the envelope whose 101-point mean is the
    AP50) against recall, over the detections sorted by score; the legend gives AP at
    IoU 0.5 and COCO's AP (0.5:0.95) and the number of true boxes. Classes without
    ground truth are listed as such.

    Args:
        report: The evaluation (:func:`mediscope.metrics.detection.evaluate_detections`).
        path: The PNG to write.
        title: The figure's title; default: the mAP values.

    Returns:
        ``path``.
    """
    metrics = report.metrics
    colours = class_colors(len(report.classes) + 1)[1:] / 255.0
    fig, ax = plt.subplots(figsize=(6.4, 5.2), layout="constrained")
    for k, name in enumerate(report.classes):
        curve = report.curves.get(name)
        if curve is None:
            ax.plot([], [], color="0.6", ls=":", label=f"{name}: no ground truth")
            continue
        # dark-outlined lines, so that light class colours (yellow) stay visible on white
        recall = np.concatenate([[0.0], curve.recall])
        precision = np.concatenate(
            [[curve.precision[0] if len(curve.precision) else 0.0], curve.precision]
        )
        label = (
            f"{name}: AP50 {metrics[f'ap50/{name}']:.3f}, AP {metrics[f'ap/{name}']:.3f} "
            f"(n={int(metrics[f'gt/{name}'])})"
        )
        ax.step(recall, precision, where="post", color="0.15", lw=3.2)
        ax.step(recall, precision, where="post", color=colours[k], lw=2.0, label=label)
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.03)
    ax.set_xlabel("recall (share of true boxes found)")
    ax.set_ylabel("precision (share of boxes that are right)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    if title is None:
        title = (
            f"precision-recall at IoU 0.5: mAP50 {_fmt(metrics.get('map_50'))}, "
            f"mAP {_fmt(metrics.get('map'))}"
        )
    ax.set_title(title, fontsize=10)
    return save_figure(fig, Path(path))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


# -- prediction files -------------------------------------------------------------------


def _number(value: float) -> str:
    """The shortest text that reads back as the same double."""
    return repr(float(value))


def label_names(paths: Sequence[str]) -> list[str]:
    """File names (without ``.txt``) of the YOLO label files of ``paths``, in order.

    The image's stem; for an array-file item such as ``batch.npz::images::3`` the whole
    name with ``::`` as ``__``. Characters not allowed in file names become ``_``, and a
    name met again gets ``_2``, ``_3``, ... in the order of ``paths``.
    """
    names: list[str] = []
    seen: set[str] = set()
    for path in paths:
        last = re.split(r"[\\/]", str(path))[-1]
        base = last.replace("::", "__") if "::" in last else Path(last).stem or last
        base = re.sub(r'[<>:"/\\|?*\x00-\x1f]', "_", base) or "image"
        name, n = base, 1
        while name.lower() in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name.lower())
        names.append(name)
    return names


def _check_records(records: Sequence[DetectionRecord], classes: Sequence[str]) -> None:
    for record in records:
        labels = record.labels
        if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ValueError(f"{record.path}: labels outside 0..{len(classes) - 1}")
        if record.width < 1 or record.height < 1:
            raise ValueError(f"{record.path}: image size {record.width} x {record.height}")


def _order(record: DetectionRecord) -> np.ndarray:
    return np.argsort(-record.scores, kind="stable")


def _csv_text(rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def predictions_csv(records: Sequence[DetectionRecord], classes: Sequence[str]) -> str:
    """The text of ``predictions.csv``."""
    rows: list[Sequence[Any]] = [CSV_COLUMNS]
    for record in records:
        head = [record.path, record.width, record.height]
        if not len(record.boxes):
            rows.append([*head, "", "", "", "", "", ""])
        for i in _order(record):
            corners = [_number(v) for v in record.boxes[i]]
            name = classes[record.labels[i]]
            rows.append([*head, name, _number(record.scores[i]), *corners])
    return _csv_text(rows)


def predictions_coco(records: Sequence[DetectionRecord], classes: Sequence[str]) -> dict[str, Any]:
    """The content of ``predictions.json``."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, record in enumerate(records, start=1):
        images.append(
            {
                "id": image_id,
                "file_name": record.path,
                "width": record.width,
                "height": record.height,
            }
        )
        for i in _order(record):
            x1, y1, x2, y2 = (float(v) for v in record.boxes[i])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(record.labels[i]) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(record.scores[i]),
                    "area": (x2 - x1) * (y2 - y1),
                }
            )
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(classes)]
    return {"images": images, "categories": categories, "annotations": annotations}


def yolo_lines(record: DetectionRecord) -> str:
    """The text of one image's YOLO label file: ``class cx cy w h score`` lines."""
    order = _order(record)
    return label_lines(
        record.boxes[order],
        record.labels[order],
        record.width,
        record.height,
        scores=record.scores[order],
        number=_number,
    )


def counts_table(records: Sequence[DetectionRecord], classes: Sequence[str]) -> np.ndarray:
    """``(images, C)`` number of boxes per image and class."""
    counts = np.zeros((len(records), len(classes)), dtype=np.int64)
    for row, record in enumerate(records):
        counts[row] = np.bincount(record.labels, minlength=len(classes))[: len(classes)]
    return counts


def write_detection_predictions(
    out_dir: str | Path, records: Sequence[DetectionRecord], classes: Sequence[str]
) -> dict[str, Path]:
    """Writes ``predictions.csv``, ``predictions.json``, ``labels/`` and ``counts.csv``.

    See the module's description for the formats. Boxes are written as they are (no
    score threshold here: apply it when predicting); counts count every box.

    Args:
        out_dir: The folder (created if needed; other files in it are left alone, the
            ``labels`` folder is replaced).
        records: One :class:`DetectionRecord` per image, in the order to write.
        classes: The C class names.

    Returns:
        ``csv``, ``json``, ``labels`` and ``counts`` to their paths.

    Raises:
        ValueError: Labels outside ``0..C-1`` or an image without size.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError("exists and is not a folder", where=out, hint="choose another path")
    classes = list(classes)
    _check_records(records, classes)
    paths = {
        "csv": out / "predictions.csv",
        "json": out / "predictions.json",
        "labels": out / "labels",
        "counts": out / "counts.csv",
    }
    write_text_atomic(paths["csv"], predictions_csv(records, classes))
    write_json_atomic(paths["json"], predictions_coco(records, classes))
    with staged_dir(paths["labels"], overwrite=True) as folder:
        for name, record in zip(label_names([r.path for r in records]), records, strict=True):
            (folder / f"{name}.txt").write_text(yolo_lines(record), encoding="utf-8")
    counts = counts_table(records, classes)
    rows: list[Sequence[Any]] = [["path", *classes, "total"]]
    rows += [
        [record.path, *row.tolist(), int(row.sum())]
        for record, row in zip(records, counts, strict=True)
    ]
    write_text_atomic(paths["counts"], _csv_text(rows))
    return paths


def read_detection_predictions(path: str | Path) -> tuple[list[DetectionRecord], list[str]]:
    """Reads ``predictions.json`` or ``predictions.csv`` back.

    Args:
        path: The JSON or CSV file, or a folder holding one (the JSON is preferred).

    Returns:
        The records, in the file's order, and the class names. The JSON lists its
        classes; for a CSV they are the header of ``counts.csv`` beside it when there is
        one, else the names met, in order of first appearance.

    Raises:
        DataError: A missing or malformed file, naming the line or entry.
    """
    path = Path(path)
    if path.is_dir():
        for name in ("predictions.json", "predictions.csv"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise DataError(
                "no predictions.json or predictions.csv in this folder",
                where=path,
                hint="give the folder written by a detection predict or ensemble",
            )
    if not path.is_file():
        raise DataError("no such file", where=path, hint="check the path")
    if path.suffix.lower() == ".json":
        return _read_json(path)
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    raise DataError(
        "not a detection prediction file", where=path, hint="give predictions.csv or .json"
    )


def _read_json(path: Path) -> tuple[list[DetectionRecord], list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"cannot read the predictions: {exc}", where=path) from None
    if not isinstance(data, dict) or not {"images", "categories", "annotations"} <= set(data):
        raise DataError(
            "not a detection prediction file (needs images, categories and annotations)",
            where=path,
            hint="use the predictions.json written by mediscope",
        )
    try:
        categories = sorted(data["categories"], key=lambda c: int(c["id"]))
        classes = [str(c["name"]) for c in categories]
        label_of = {int(c["id"]): k for k, c in enumerate(categories)}
        images: dict[int, dict[str, Any]] = {}
        for entry in data["images"]:
            images[int(entry["id"])] = {
                "path": str(entry["file_name"]),
                "width": int(entry["width"]),
                "height": int(entry["height"]),
                "boxes": [],
                "scores": [],
                "labels": [],
            }
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"bad image or category entry: {exc!r}", where=path) from None
    for index, entry in enumerate(data["annotations"]):
        where = f"{path}: annotations[{index}]"
        try:
            x, y, w, h = (float(v) for v in entry["bbox"])
            image = images[int(entry["image_id"])]
            label = label_of[int(entry["category_id"])]
            score = float(entry["score"])
        except KeyError as exc:
            raise DataError(f"unknown or missing {exc}", where=where) from None
        except (TypeError, ValueError) as exc:
            raise DataError(f"bad entry: {exc}", where=where) from None
        if not all(math.isfinite(v) for v in (x, y, w, h, score)) or w < 0 or h < 0:
            raise DataError(f"bad box {entry['bbox']} or score {score}", where=where)
        image["boxes"].append([x, y, x + w, y + h])
        image["scores"].append(score)
        image["labels"].append(label)
    return [DetectionRecord(**image) for image in images.values()], classes


def _read_csv(path: Path) -> tuple[list[DetectionRecord], list[str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read the predictions: {exc}", where=path) from None
    if not rows or tuple(rows[0]) != CSV_COLUMNS:
        raise DataError(
            f"not a detection prediction file (needs the columns {','.join(CSV_COLUMNS)})",
            where=path,
            hint="use the predictions.csv written by mediscope (classification predictions: "
            "--method vote or mean)",
        )
    classes = _counts_classes(path.parent / "counts.csv")
    index = {name: k for k, name in enumerate(classes)}
    images: dict[str, dict[str, Any]] = {}
    for line, row in enumerate(rows[1:], start=2):
        where = f"{path}:{line}"
        if len(row) != len(CSV_COLUMNS):
            raise DataError(f"{len(row)} fields, expected {len(CSV_COLUMNS)}", where=where)
        name, width, height, label, *numbers = row
        try:
            size = (int(width), int(height))
        except ValueError:
            raise DataError(f"bad image size {width!r} x {height!r}", where=where) from None
        image = images.setdefault(
            name,
            {
                "path": name,
                "width": size[0],
                "height": size[1],
                "boxes": [],
                "scores": [],
                "labels": [],
            },
        )
        if (image["width"], image["height"]) != size:
            raise DataError(f"image size differs from an earlier row of {name}", where=where)
        if label == "" and not any(numbers):
            continue  # an image without boxes
        try:
            score, *corners = (float(v) for v in numbers)
        except ValueError:
            raise DataError(f"bad number in {numbers}", where=where) from None
        if not all(math.isfinite(v) for v in (score, *corners)):
            raise DataError(f"bad number in {numbers}", where=where)
        if label not in index:
            index[label] = len(classes)
            classes.append(label)
        image["boxes"].append(corners)
        image["scores"].append(score)
        image["labels"].append(index[label])
    return [DetectionRecord(**image) for image in images.values()], classes


def _counts_classes(path: Path) -> list[str]:
    """The class columns of a ``counts.csv``, or none when there is no such file."""
    if not path.is_file():
        return []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    if len(header) < 2 or header[0] != "path" or header[-1] != "total":
        return []
    return header[1:-1]


@dataclass
class DetectionGalleryItem:
    """One gallery panel: the image drawn with its boxes, and what to say about it."""

    picture: np.ndarray  # H x W x 3 uint8, ground truth and detections drawn
    title: str
    score: float  # F1 of the image's detections at the counting threshold
    found: int
    labelled: int


def write_detection_gallery(
    path: str | Path,
    items: Sequence[DetectionGalleryItem],
    *,
    title: str,
    columns: int = 4,
    panel: float = 3.6,
) -> Path:
    """A PNG grid of drawn images, each titled with its id, F1 and counts."""
    n = max(1, len(items))
    columns = min(columns, n)
    rows = (n + columns - 1) // columns
    fig, axes = plt.subplots(
        rows, columns, figsize=(panel * columns, panel * rows + 0.6), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, item in zip(axes.flat, items, strict=False):
        ax.imshow(_thumbnail(item.picture, 900))
        name = item.title if len(item.title) <= 40 else "…" + item.title[-39:]
        ax.set_title(
            f"{name}\nF1 {item.score:.2f}: {item.found} found, {item.labelled} labelled",
            fontsize=10,
        )
    if not items:
        axes[0, 0].text(0.5, 0.5, "no images", ha="center", va="center")
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return save_figure(fig, Path(path))


def _thumbnail(image: np.ndarray, longest: int) -> np.ndarray:
    """``image`` shrunk (area averaging) so its longer side is at most ``longest``."""
    import cv2

    height, width = image.shape[:2]
    scale = longest / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
