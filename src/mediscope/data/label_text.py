"""Box coordinates as text: the numbers of label files, and YOLO label lines.

A leaf module (NumPy only), so that prediction files are written without importing the
dataset formats.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def number_text(value: float) -> str:
    """The shortest text that reads back as the same float, without an exponent.

    Example:
        >>> number_text(12.0), number_text(0.1 + 0.2), number_text(1e-7)
        ('12', '0.30000000000000004', '0.0000001')
    """
    return np.format_float_positional(float(value), unique=True, trim="-")


def label_lines(
    boxes: np.ndarray,
    labels: np.ndarray,
    width: int,
    height: int,
    *,
    scores: np.ndarray | None = None,
    number: Callable[[float], str] = number_text,
) -> str:
    """The text of a label file: ``class cx cy w h`` per box, normalised; "" for none.

    Args:
        boxes: ``(N, 4)`` xyxy pixel corners.
        labels: ``(N,)`` class indices.
        width: Image width in pixels.
        height: Image height in pixels.
        scores: ``(N,)`` scores, appended to each line (prediction files).
        number: Formats each value; by default exactly (the shortest text that reads
            back as the same float).

    Returns:
        One line per box, each ending in a newline.
    """
    corners = np.asarray(boxes, np.float64)
    extra: list[list[float]] = [[] for _ in labels]
    if scores is not None:
        extra = [[float(score)] for score in scores]
    lines = []
    for (x1, y1, x2, y2), label, more in zip(corners, labels, extra, strict=True):
        values = (
            (x1 + x2) / 2 / width,
            (y1 + y2) / 2 / height,
            (x2 - x1) / width,
            (y2 - y1) / height,
            *more,
        )
        lines.append(" ".join([str(int(label)), *(number(v) for v in values)]))
    return "".join(f"{line}\n" for line in lines)
