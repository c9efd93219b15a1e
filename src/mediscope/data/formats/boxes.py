"""What the detection formats (YOLO, Pascal VOC, COCO boxes) share.

- :class:`LabelProblems`: what happens to a malformed label line or box. With
  ``on_bad_label: error`` the first one raises a :class:`~mediscope.errors.DataError`
  naming ``file:line`` and the fix; with ``skip`` the line or box is dropped, counted,
  and one warning at the end gives the count and the first place.
- checks of label fields: class ids, numbers, NaN / infinity, normalised coordinates
  (YOLO), boxes inside the image, zero-size and inverted boxes;
- image headers (:func:`image_size`), box arrays, boxes of class-index masks, copying
  images into an output layout and file names for writers.

Conventions (fixed for every detection sample): ``boxes`` is a float32 ``(N, 4)`` array
of ``x1, y1, x2, y2`` in pixels of the stored image, where ``(0, 0)`` is the top-left
corner of the first pixel and ``(W, H)`` the bottom-right corner of the last (a box
covering pixel columns ``a..b`` runs from ``a`` to ``b + 1``); ``box_labels`` is int64
``(N,)`` of class ids ``0..C-1`` (no background class). An image without objects has
``(0, 4)`` and ``(0,)`` arrays: it is a valid negative. EXIF orientation is not applied,
as :func:`~mediscope.data.images.read_image` does not apply it either.

Tolerances. Normalised coordinates may leave ``[0, 1]`` by ``1e-6`` (rounding in the
writing tool) and are clipped; pixel coordinates may leave the image by up to one pixel
(annotation tools round to whole pixels; VOC files written 0-based put ``xmin`` 0 where
1 is the first pixel) and are clipped. Anything further out is a bad label.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import unicodedata
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from mediscope.data.images import image_header as read_header
from mediscope.data.samples import Sample
from mediscope.errors import DataError

log = logging.getLogger(__name__)

ON_BAD_LABEL = ("error", "skip")
#: How far normalised coordinates may leave [0, 1] before they are a bad label.
NORMALISED_EPS = 1e-6
#: How far (pixels) pixel coordinates may leave the image before they are a bad label.
PIXEL_TOLERANCE = 1.0
SKIP_TAIL = "set data.on_bad_label: skip (--on-bad-label skip) to drop it"
SKIP_HINT = f"fix the label, or {SKIP_TAIL}"


class LabelProblems:
    """Collects malformed label lines and boxes of one read.

    Args:
        on_bad_label: ``error`` raises at the first problem; ``skip`` drops it and
            counts it.
        what: What is read, for the warning (``YOLO labels``, ``VOC annotations``, ...).

    Example:
        >>> problems = LabelProblems("skip", what="YOLO labels")
        >>> problems.report("class id 7 is not in 0..2", where="a.txt:3")
        >>> problems.count
        1
    """

    def __init__(self, on_bad_label: str = "error", *, what: str = "labels") -> None:
        if on_bad_label not in ON_BAD_LABEL:
            raise DataError(
                f"unknown on_bad_label '{on_bad_label}'",
                where="data.on_bad_label",
                hint="error or skip",
            )
        self.skip = on_bad_label == "skip"
        self.what = what
        self.count = 0
        self.first: str | None = None

    def report(self, message: str, *, where: str | Path, hint: str | None = None) -> None:
        """Raises (``error``) or counts (``skip``) one problem at ``where`` (``file:line``).

        Raises:
            DataError: with ``on_bad_label: error``.
        """
        if not self.skip:
            fix = f"{hint}; or {SKIP_TAIL}" if hint else SKIP_HINT
            raise DataError(message, where=where, hint=fix)
        self.count += 1
        if self.first is None:
            self.first = f"{where}: {message}"

    def finish(self) -> int:
        """Logs one warning with the number of skipped lines and the first; returns it."""
        if self.count:
            log.warning(
                "%s: %d bad label %s skipped (on_bad_label: skip); first: %s",
                self.what,
                self.count,
                "entry" if self.count == 1 else "entries",
                self.first,
            )
        return self.count


# -- fields --------------------------------------------------------------------------------


def parse_class_id(
    text: str, num_classes: int, *, where: str, problems: LabelProblems
) -> int | None:
    """The class id written as ``text`` (``3``; ``3.0`` as some tools write), or None.

    Reports non-integer ids and ids outside ``0..num_classes-1``.
    """
    try:
        value = float(text)
    except ValueError:
        problems.report(f"class id '{text}' is not an integer", where=where)
        return None
    if not math.isfinite(value) or value != int(value):
        problems.report(f"class id '{text}' is not an integer", where=where)
        return None
    class_id = int(value)
    if not 0 <= class_id < num_classes:
        problems.report(
            f"class id {class_id} is not in 0..{num_classes - 1}",
            where=where,
            hint=f"the dataset has {num_classes} classes (ids from 0)",
        )
        return None
    return class_id


def parse_numbers(
    fields: Sequence[str], *, names: Sequence[str], where: str, problems: LabelProblems
) -> list[float] | None:
    """``fields`` as finite floats, or None after reporting the first bad one."""
    values: list[float] = []
    for name, text in zip(names, fields, strict=True):
        try:
            value = float(text)
        except (TypeError, ValueError):
            problems.report(f"{name} '{text}' is not a number", where=where)
            return None
        if not math.isfinite(value):
            problems.report(f"{name} is {text} (not finite)", where=where)
            return None
        values.append(value)
    return values


def check_normalised(
    values: Sequence[float], *, names: Sequence[str], where: str, problems: LabelProblems
) -> list[float] | None:
    """Normalised coordinates clipped to ``[0, 1]`` when within ``1e-6`` of it, else None."""
    for name, value in zip(names, values, strict=True):
        if not -NORMALISED_EPS <= value <= 1 + NORMALISED_EPS:
            problems.report(
                f"{name} {value:g} is outside [0, 1]",
                where=where,
                hint="YOLO coordinates are fractions of the image size (cx cy w h)",
            )
            return None
    return [min(max(v, 0.0), 1.0) for v in values]


def check_box(
    box: Sequence[float],
    width: float,
    height: float,
    *,
    where: str,
    problems: LabelProblems,
    tolerance: float = PIXEL_TOLERANCE,
) -> list[float] | None:
    """A pixel box ``x1 y1 x2 y2`` clipped to the image, or None after reporting it.

    Reports boxes more than ``tolerance`` pixels outside the ``width x height`` image and
    boxes of zero or negative width or height (after clipping).
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        size = f"{x2 - x1:g} x {y2 - y1:g}"
        problems.report(
            f"box of zero or negative size ({size} pixels)",
            where=where,
            hint="a box needs x2 > x1 and y2 > y1",
        )
        return None
    if x1 < -tolerance or y1 < -tolerance or x2 > width + tolerance or y2 > height + tolerance:
        problems.report(
            f"box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] is outside the {width:g} x {height:g} image",
            where=where,
            hint="check the image the label belongs to",
        )
        return None
    clipped = [min(max(x1, 0.0), width), min(max(y1, 0.0), height)]
    clipped += [min(max(x2, 0.0), width), min(max(y2, 0.0), height)]
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        problems.report("box lies on the image border (zero size inside)", where=where)
        return None
    return clipped


def check_class_names(classes: Sequence[str], *, target: str, where: str | Path) -> None:
    """Refuses class names that a text format (``classes.txt``, XML, YAML) would not
    read back as written: empty names, names with spaces around them, line breaks or
    other control characters.

    Raises:
        DataError: naming the first such class.
    """
    for name in classes:
        odd = [c for c in name if unicodedata.category(c) in ("Cc", "Cs", "Cn", "Zl", "Zp")]
        if name and name == name.strip() and not odd:
            continue
        raise DataError(
            f"class name {name!r} cannot be written to {target} and read back as it is "
            "(it is empty, has spaces around it, a line break or a control character)",
            where=where,
            hint="rename that class in the source",
        )


# -- arrays --------------------------------------------------------------------------------


def box_arrays(
    boxes: Sequence[Sequence[float]], labels: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 4)`` float32 boxes and ``(N,)`` int64 labels; ``(0, 4)`` / ``(0,)`` for none."""
    array = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return array, np.asarray(labels, dtype=np.int64).reshape(-1)


def sample_boxes(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """The boxes and labels of a sample (empty arrays when it has none).

    Raises:
        DataError: when their shapes do not fit each other.
    """
    boxes = np.zeros((0, 4), np.float32) if sample.boxes is None else sample.boxes
    labels = np.zeros((0,), np.int64) if sample.box_labels is None else sample.box_labels
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(boxes) != len(labels):
        raise DataError(f"{len(boxes)} boxes but {len(labels)} labels", where=sample.image)
    return boxes, labels


def writable_boxes(
    sample: Sample, width: int, height: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """A sample's boxes checked for writing: finite, positive size, inside the image
    (within one pixel, then clipped), labels in ``0..num_classes-1``; float64.

    Raises:
        DataError: naming the image, for the first box that fails.
    """
    boxes, labels = sample_boxes(sample)
    problems = LabelProblems("error", what="boxes")
    out = np.zeros_like(boxes)
    for i, (box, label) in enumerate(zip(boxes, labels, strict=True)):
        where = f"{sample.image} (box {i})"
        if not np.isfinite(box).all():
            raise DataError("box coordinates are not finite", where=where)
        if not 0 <= label < num_classes:
            raise DataError(f"class id {label} is not in 0..{num_classes - 1}", where=where)
        try:
            checked = check_box(box, width, height, where=where, problems=problems)
        except DataError as exc:
            raise DataError(exc.message, where=where, hint="fix the boxes before writing") from None
        out[i] = checked
    return out, labels


def mask_boxes(
    mask: np.ndarray, num_classes: int, *, ignore_index: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of the 8-connected regions of each class ``1..num_classes-1`` of a mask.

    The mask's class ``k`` becomes the detection class ``k - 1``: class 0 is the
    background and not a detection class. ``ignore_index`` pixels make no box. A region
    covering pixel columns ``a..b`` gives ``x1 = a``, ``x2 = b + 1``.

    Returns:
        float32 ``(N, 4)`` xyxy boxes and int64 ``(N,)`` labels, by class then region.

    Example:
        >>> boxes, labels = mask_boxes(np.array([[0, 1], [0, 1]], np.uint8), 2)
        >>> boxes.tolist(), labels.tolist()
        ([[1.0, 0.0, 2.0, 2.0]], [0])
    """
    boxes: list[list[float]] = []
    labels: list[int] = []
    present = np.flatnonzero(np.bincount(mask.ravel(), minlength=num_classes)[:num_classes])
    for class_index in present[present > 0].tolist():
        if class_index == ignore_index:
            continue
        binary = (mask == class_index).astype(np.uint8)
        count, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        for k in range(1, count):
            x, y, w, h = (int(v) for v in stats[k][:4])
            boxes.append([x, y, x + w, y + h])
            labels.append(class_index - 1)
    return box_arrays(boxes, labels)


# -- images --------------------------------------------------------------------------------


def image_header(path: str | Path) -> tuple[int, int, int]:
    """``(width, height, channels)`` from the image header, without decoding pixels
    (:func:`mediscope.data.images.image_header`).

    Raises:
        DataError: naming the file when it is missing or not an image.
    """
    return read_header(path)


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image, read from its header only.

    Raises:
        DataError: naming the file when it is missing or not an image.

    Example:
        >>> image_size("photo.jpg")  # doctest: +SKIP
        (640, 480)
    """
    width, height, _ = image_header(path)
    return width, height


def place_image(src: str | Path, dst: Path, *, link: bool = False) -> None:
    """Copies ``src`` to ``dst`` (folders created); a hard link when ``link`` and possible.

    Raises:
        DataError: naming ``src`` when it cannot be read.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # another file system, or no hard links there: copy
    try:
        shutil.copyfile(src, dst)
    except FileNotFoundError:
        raise DataError("image not found", where=src) from None
    except OSError as exc:
        raise DataError(f"cannot copy the image ({exc})", where=src) from None


def relative_names(samples: Sequence[Sample]) -> list[PurePosixPath]:
    """Each image's path relative to the deepest folder holding all of ``samples``.

    Writers place images under their split folder by these names, which keeps the
    sub-folders of the source and never collides.
    """
    if not samples:
        return []
    parents = [os.path.abspath(Path(s.image).parent) for s in samples]
    common = os.path.commonpath(parents)
    return [
        PurePosixPath(Path(os.path.relpath(os.path.abspath(s.image), common)).as_posix())
        for s in samples
    ]


def split_order(split: str | None) -> tuple[int, str]:
    """A sort key putting train, val, test, then other splits and None last."""
    order = {"train": 0, "val": 1, "test": 2}
    return (order.get(split, 3) if split is not None else 4, split or "")
