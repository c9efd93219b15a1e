"""Recent results and their files: a bounded in-memory store and the files made from it.

A result is kept under a random id (:func:`secrets.token_urlsafe`) with the image the
model saw (8-bit, as the browser shows it), for the newest :data:`STORE_SIZE` results
and at most :data:`STORE_BYTES` bytes of images, masks and made files; older ones are
forgotten (their files answer 404). Files are made on request from a fixed set of
names (:data:`FILES`), never from a path, with the writers ``mediscope predict`` uses
(:mod:`mediscope.runtime.outputs`, :mod:`mediscope.runtime.detection_files`,
:mod:`mediscope.runtime.drawing`).
"""

from __future__ import annotations

import io
import json
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from mediscope.runtime.detection_files import (
    DetectionRecord,
    predictions_coco,
    predictions_csv,
    yolo_lines,
)
from mediscope.runtime.drawing import (
    class_colors,
    draw_detections,
    heatmap_overlay,
    overlay,
    to_rgb,
)
from mediscope.runtime.outputs import (
    classification_row,
    csv_text,
    detection_row,
    mask_image,
    segmentation_row,
    table_columns,
    unique_stems,
)
from mediscope.runtime.results import (
    ClassificationResult,
    DetectionResult,
    Result,
    SegmentationResult,
)
from mediscope.serve.limits import MB, ApiError

#: Results kept (the newest).
STORE_SIZE = 64
#: Bytes of images, masks, heatmaps and made files kept at most.
STORE_BYTES = 512 * MB
#: The files of a result, and their media types.
FILES = {
    "image.png": "image/png",
    "overlay.png": "image/png",
    "mask.png": "image/png",
    "cam.png": "image/png",
    "result.csv": "text/csv; charset=utf-8",
    "result.json": "application/json",
    "labels.txt": "text/plain; charset=utf-8",
}
#: Which files each task has (``cam.png``: classification with Grad-CAM only).
TASK_FILES = {
    "classification": ("image.png", "overlay.png", "cam.png", "result.csv", "result.json"),
    "multilabel": ("image.png", "overlay.png", "cam.png", "result.csv", "result.json"),
    "segmentation": ("image.png", "overlay.png", "mask.png", "result.csv", "result.json"),
    "detection": ("image.png", "overlay.png", "result.csv", "result.json", "labels.txt"),
}
#: The URL key of each file in the predict response.
URL_KEYS = {
    "image.png": "image",
    "overlay.png": "overlay",
    "mask.png": "mask",
    "cam.png": "cam",
    "result.csv": "csv",
    "result.json": "json",
    "labels.txt": "yolo",
}
#: What a result id looks like (``secrets.token_urlsafe(18)`` gives 24 characters).
RESULT_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
#: Files that depend on the detection threshold (made again for another one).
THRESHOLD_FILES = frozenset({"overlay.png", "result.csv", "result.json", "labels.txt"})


@dataclass(eq=False)
class StoredResult:
    """One prediction: the image the model saw, its result and the files made so far.

    Attributes:
        id: The random result id.
        model: The model's id.
        task: The model's task.
        name: The uploaded file's name (cleaned; for the files and CSV rows).
        image: ``H x W x C`` uint8, as the model saw it.
        result: The model's result (detection: every box above the low floor).
        threshold: Detection: the score threshold the files use by default.
    """

    id: str
    model: str
    task: str
    name: str
    image: np.ndarray
    result: Result
    threshold: float | None = None
    made: dict[tuple[str, float | None], bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def files(self) -> tuple[str, ...]:
        """The file names this result has."""
        names: tuple[str, ...] = TASK_FILES[self.task]
        if isinstance(self.result, ClassificationResult) and self.result.cam is None:
            names = tuple(n for n in names if n != "cam.png")
        return names

    @property
    def nbytes(self) -> int:
        """Bytes held: the image, mask or heatmap, and the files made."""
        held = self.image.nbytes + sum(len(v) for v in self.made.values())
        if isinstance(self.result, SegmentationResult):
            held += self.result.mask.nbytes
        if isinstance(self.result, ClassificationResult) and self.result.cam is not None:
            held += self.result.cam.nbytes
        return held


class ResultStore:
    """The newest results, at most ``size`` of them and ``max_bytes`` bytes, by id.

    Thread-safe; the oldest results are forgotten first.
    """

    def __init__(self, size: int = STORE_SIZE, max_bytes: int = STORE_BYTES) -> None:
        self.size = max(1, int(size))
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, StoredResult] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def add(
        self,
        *,
        model: str,
        task: str,
        name: str,
        image: np.ndarray,
        result: Result,
        threshold: float | None,
    ) -> StoredResult:
        """Stores a new result under a fresh random id."""
        entry = StoredResult(secrets.token_urlsafe(18), model, task, name, image, result, threshold)
        with self._lock:
            self._items[entry.id] = entry
            self._trim(keep=entry.id)
        return entry

    def get(self, rid: str) -> StoredResult:
        """The result of ``rid``.

        Raises:
            ApiError: 404 for an id that is malformed, unknown or forgotten.
        """
        entry = self._items.get(rid) if RESULT_ID.fullmatch(rid) else None
        if entry is None:
            raise ApiError(
                404,
                "no such result (results are kept for the newest predictions only)",
                hint="predict the image again",
            )
        return entry

    def remember(self, entry: StoredResult, key: tuple[str, float | None], data: bytes) -> None:
        """Keeps a made file with its result (counted against the byte limit)."""
        with self._lock:
            if entry.id in self._items:
                entry.made[key] = data
                self._trim(keep=entry.id)

    def _trim(self, keep: str) -> None:
        total = sum(item.nbytes for item in self._items.values())
        while len(self._items) > 1 and (len(self._items) > self.size or total > self.max_bytes):
            oldest = next(iter(self._items))
            if oldest == keep:
                break
            total -= self._items.pop(oldest).nbytes


# -- the files -----------------------------------------------------------------------------


def png_bytes(picture: Image.Image | np.ndarray) -> bytes:
    """A PNG, quickly compressed (level 1)."""
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def shown_image(image: np.ndarray) -> np.ndarray:
    """The image as the browser shows it: ``H x W`` grey or ``H x W x 3`` RGB uint8."""
    return image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else to_rgb(image)


def classes_of(result: Result) -> list[str]:
    """A result's class names, in the model's order."""
    if isinstance(result, ClassificationResult):
        return list(result.probabilities)
    return list(result.classes)


def record_of(entry: StoredResult, threshold: float) -> DetectionRecord:
    """A detection result's boxes scoring ``threshold`` or more, as the record the
    detection files are written from."""
    result = entry.result
    assert isinstance(result, DetectionResult)
    kept = result.filter(threshold)
    height, width = result.image_size
    return DetectionRecord(entry.name, width, height, kept.boxes, kept.scores, kept.class_indices)


def make_file(entry: StoredResult, name: str, threshold: float | None = None) -> bytes:
    """The bytes of one of the result's files.

    Args:
        entry: The result.
        name: A name of :data:`FILES` that the result has.
        threshold: Detection: the score threshold (default: the result's).
    """
    result = entry.result
    level = entry.threshold if threshold is None else threshold
    if name == "image.png":
        return png_bytes(shown_image(entry.image))
    if name == "cam.png" or (name == "overlay.png" and isinstance(result, ClassificationResult)):
        assert isinstance(result, ClassificationResult)
        if result.cam is None:
            return png_bytes(shown_image(entry.image))
        return png_bytes(heatmap_overlay(entry.image, result.cam))
    if isinstance(result, SegmentationResult):
        colors = class_colors(len(result.classes))
        if name == "mask.png":
            return png_bytes(mask_image(result.mask, colors))
        if name == "overlay.png":
            return png_bytes(overlay(entry.image, result.mask, colors))
    if isinstance(result, DetectionResult):
        record = record_of(entry, float(level or 0.0))
        if name == "overlay.png":
            drawn = draw_detections(
                entry.image, record.boxes, record.labels, record.scores, result.classes
            )
            return png_bytes(drawn)
        if name == "result.csv":
            return predictions_csv([record], result.classes).encode()
        if name == "result.json":
            return json.dumps(predictions_coco([record], result.classes)).encode()
        if name == "labels.txt":
            return yolo_lines(record).encode()
    if name == "result.csv":
        return table_text([entry], None).encode()
    if name == "result.json":
        data = result.to_dict()
        data["path"] = entry.name
        return json.dumps(data).encode()
    raise ApiError(404, f"a {entry.task} result has no {name}")


def table_text(entries: Sequence[StoredResult], threshold: float | None) -> str:
    """The table ``mediscope predict`` writes for these images, as CSV text: one row per
    image. Classification and segmentation: ``predictions.csv``'s columns; detection:
    ``counts.csv``'s (boxes scoring ``threshold`` or more, default each result's own).

    Raises:
        ApiError: 400 when the results come from different models.
    """
    models = {entry.model for entry in entries}
    if len(models) > 1:
        raise ApiError(
            400,
            f"the results come from {len(models)} models ({', '.join(sorted(models))}); "
            "one table holds one model's results",
            hint="ask for each model's ids separately",
        )
    first = entries[0]
    classes = classes_of(first.result)
    rows: list[dict[str, Any]] = []
    masks = unique_stems([entry.name for entry in entries])
    for entry, mask in zip(entries, masks, strict=True):
        result = entry.result
        if isinstance(result, ClassificationResult):
            rows.append(classification_row(entry.name, result))
        elif isinstance(result, SegmentationResult):
            rows.append(segmentation_row(entry.name, f"masks/{mask}.png", result))
        else:
            level = entry.threshold if threshold is None else threshold
            record = record_of(entry, float(level or 0.0))
            rows.append(detection_row(entry.name, record.labels, classes))
    return csv_text(table_columns(first.task, classes), rows)
