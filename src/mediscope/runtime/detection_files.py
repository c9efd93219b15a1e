"""Detection prediction files (CSV, COCO JSON, YOLO text, per-image counts) and their
readers.

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

from mediscope.data.label_text import label_lines
from mediscope.errors import DataError
from mediscope.files import staged_dir, write_json_atomic, write_text_atomic

#: Columns of ``predictions.csv``.
CSV_COLUMNS = ("path", "width", "height", "class", "score", "x1", "y1", "x2", "y2")


def as_array(values: Any, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``values`` (a tensor, list or array) as a NumPy array of ``dtype`` and ``shape``."""
    if hasattr(values, "detach") and hasattr(values, "numpy"):  # a torch tensor
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
        self.boxes = as_array(self.boxes, np.float64, (-1, 4))
        self.scores = as_array(self.scores, np.float64, (-1,))
        self.labels = as_array(self.labels, np.int64, (-1,))
        if not len(self.boxes) == len(self.scores) == len(self.labels):
            raise ValueError(
                f"{self.path}: {len(self.boxes)} boxes, {len(self.scores)} scores, "
                f"{len(self.labels)} labels"
            )


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
