"""What a model says about one image: :class:`ClassificationResult`,
:class:`DetectionResult` and :class:`SegmentationResult`.

Each result holds plain NumPy arrays and Python values, knows its class names, draws
itself on the image (:mod:`mediscope.runtime.drawing`: no torch, no matplotlib) and
turns into JSON-ready dictionaries (:meth:`~DetectionResult.to_dict`,
:meth:`~DetectionResult.to_json`).

Segmentation masks go into JSON as COCO-style uncompressed run-length encodings, one per
class (:func:`rle_encode`); :func:`mask_from_rle` turns them back into the index mask.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from mediscope.runtime.drawing import (
    as_array,
    class_colors,
    draw_detections,
    heatmap_overlay,
    overlay,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ClassificationResult",
    "DetectionResult",
    "Result",
    "SegmentationResult",
    "mask_from_rle",
    "rle_decode",
    "rle_encode",
]


def _path_text(path: str | None) -> str:
    return "" if path is None else f"path={path!r}"


# -- run-length encoding ------------------------------------------------------------------


def rle_encode(binary: np.ndarray) -> dict[str, list[int]]:
    """A binary mask as a COCO uncompressed run-length encoding.

    ``{"size": [H, W], "counts": [...]}``: the lengths of alternating runs of 0 and 1
    over the pixels in column-major (Fortran) order, starting with a run of 0 (of length
    0 when the first pixel is set). ``pycocotools.mask.frPyObjects`` reads it as it is.

    Args:
        binary: ``(H, W)`` mask; any non-zero value counts as set.

    Returns:
        The encoding, plain ints only (JSON-ready).

    Example:
        >>> rle_encode(np.array([[0, 1], [0, 1]]))
        {'size': [2, 2], 'counts': [2, 2]}
    """
    array = np.asarray(binary)
    if array.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got {array.shape}")
    flat = array.ravel(order="F") != 0
    if flat.size == 0:
        counts: list[int] = []
    else:
        changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        bounds = np.concatenate([[0], changes, [flat.size]])
        counts = np.diff(bounds).tolist()
        if flat[0]:
            counts.insert(0, 0)
    return {"size": [int(array.shape[0]), int(array.shape[1])], "counts": counts}


def rle_decode(rle: Mapping[str, Any]) -> np.ndarray:
    """The ``(H, W)`` bool mask of a :func:`rle_encode` encoding.

    Raises:
        ValueError: The counts do not add up to ``H * W`` pixels.

    Example:
        >>> rle_decode({"size": [2, 2], "counts": [2, 2]}).astype(int).tolist()
        [[0, 1], [0, 1]]
    """
    height, width = (int(v) for v in rle["size"])
    counts = np.asarray(rle["counts"], dtype=np.int64).reshape(-1)
    if (counts < 0).any() or int(counts.sum()) != height * width:
        raise ValueError(f"run lengths {int(counts.sum())} do not cover {height}x{width} pixels")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape((height, width), order="F")


def mask_from_rle(rles: Mapping[str, Mapping[str, Any]], classes: Sequence[str]) -> np.ndarray:
    """The class-index mask from per-class encodings (``SegmentationResult.to_dict()["rle"]``).

    Args:
        rles: Class name -> :func:`rle_encode` encoding of that class's pixels.
        classes: All class names, in index order; pixels of no listed class get 0.

    Returns:
        ``(H, W)`` int64 class indices.

    Raises:
        ValueError: ``rles`` is empty, names an unknown class, or its sizes differ.

    Example:
        >>> result = SegmentationResult(np.array([[0, 1], [2, 1]]), ["bg", "a", "b"])
        >>> mask_from_rle(result.to_dict()["rle"], result.classes).tolist()
        [[0, 1], [2, 1]]
    """
    if not rles:
        raise ValueError("no run-length encodings given")
    index = {name: i for i, name in enumerate(classes)}
    sizes = {tuple(int(v) for v in rle["size"]) for rle in rles.values()}
    if len(sizes) != 1:
        raise ValueError(f"the encodings differ in size: {sorted(sizes)}")
    height, width = sizes.pop()
    mask = np.zeros((height, width), dtype=np.int64)
    for name, rle in rles.items():
        if name not in index:
            raise ValueError(f"unknown class {name!r}; classes are {list(classes)}")
        mask[rle_decode(rle)] = index[name]
    return mask


# -- classification ------------------------------------------------------------------------


@dataclass(repr=False, eq=False)
class ClassificationResult:
    """The class of one image, with every class's probability.

    Attributes:
        label: The predicted class's name.
        index: The predicted class's index.
        probabilities: Class name -> probability, for every class in the model's order.
        path: The image's path, when it was read from a file.
        cam: Optional Grad-CAM heatmap ``(H, W)``, float in 0..1, of the predicted class.
        labels: Multi-label models: the labels present (probability at or above the
            label's threshold), in the model's order; None for single-label models
            (``label`` is then the most probable label).

    Example:
        >>> result = ClassificationResult("gram_positive", 0,
        ...     {"gram_positive": 0.93, "gram_negative": 0.07}, path="a.png")
        >>> result
        ClassificationResult(label='gram_positive', p=0.93, path='a.png')
        >>> result.top(1)
        [('gram_positive', 0.93)]
    """

    label: str
    index: int
    probabilities: dict[str, float]
    path: str | None = None
    cam: np.ndarray | None = None
    labels: list[str] | None = None

    def __post_init__(self) -> None:
        self.index = int(self.index)
        self.probabilities = {str(k): float(v) for k, v in self.probabilities.items()}
        if self.path is not None:
            self.path = str(self.path)
        if self.cam is not None:
            self.cam = np.asarray(self.cam, dtype=np.float32)
            if self.cam.ndim != 2:
                raise ValueError(f"expected an (H, W) cam, got {self.cam.shape}")

    @property
    def probability(self) -> float:
        """The predicted class's probability."""
        return self.probabilities.get(self.label, float("nan"))

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable classes as ``(name, probability)``, best first.

        Ties keep the model's class order.
        """
        ranked = sorted(self.probabilities.items(), key=lambda item: -item[1])
        return ranked[: max(k, 0)]

    def overlay(self, image: np.ndarray, *, image_weight: float = 0.55) -> np.ndarray:
        """The Grad-CAM heatmap (jet colours) blended over the image.

        Args:
            image: ``(H, W, 3)`` uint8 RGB (grey also works); the heatmap is resized to it.
            image_weight: Share of the image in the blend.

        Returns:
            ``(H, W, 3)`` uint8 RGB.

        Raises:
            ValueError: The result holds no heatmap (predict with Grad-CAM on).
        """
        if self.cam is None:
            raise ValueError("this result has no Grad-CAM heatmap (cam is None)")
        return heatmap_overlay(image, self.cam, image_weight=image_weight)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields: task, path, label, index, probabilities, and the heatmap's
        shape (``cam_shape``, None without one; the heatmap's values are left out)."""
        out: dict[str, Any] = {
            "task": "classification" if self.labels is None else "multilabel",
            "path": self.path,
            "label": self.label,
            "index": self.index,
            "probabilities": dict(self.probabilities),
            "cam_shape": None if self.cam is None else list(self.cam.shape),
        }
        if self.labels is not None:
            out["labels"] = list(self.labels)
        return out

    def to_json(self, indent: int | None = None) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    def __repr__(self) -> str:
        parts = [f"label={self.label!r}", f"p={self.probability:.2f}"]
        if self.path is not None:
            parts.append(_path_text(self.path))
        return f"ClassificationResult({', '.join(parts)})"


# -- detection -----------------------------------------------------------------------------


@dataclass(repr=False, eq=False)
class DetectionResult:
    """The objects found in one image: boxes, scores and classes.

    Attributes:
        boxes: ``(N, 4)`` float64 corners ``x1, y1, x2, y2`` in the image's pixels.
        scores: ``(N,)`` float64 scores.
        class_indices: ``(N,)`` int64 indices into ``classes``.
        classes: The model's class names (no background).
        image_size: ``(height, width)`` of the image the boxes refer to.
        path: The image's path, when it was read from a file.

    Example:
        >>> result = DetectionResult(
        ...     boxes=np.array([[1.0, 2.0, 5.0, 6.0], [3.0, 3.0, 9.0, 8.0]]),
        ...     scores=np.array([0.9, 0.4]), class_indices=np.array([1, 1]),
        ...     classes=["cocci", "bacilli"], image_size=(10, 12))
        >>> result
        DetectionResult(2 objects: bacilli 2)
        >>> result.counts()
        {'cocci': 0, 'bacilli': 2}
        >>> len(result.filter(0.5))
        1
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_indices: np.ndarray
    classes: list[str]
    image_size: tuple[int, int]
    path: str | None = None

    def __post_init__(self) -> None:
        self.boxes = as_array(self.boxes, np.float64, (-1, 4))
        self.scores = as_array(self.scores, np.float64, (-1,))
        self.class_indices = as_array(self.class_indices, np.int64, (-1,))
        self.classes = [str(name) for name in self.classes]
        height, width = self.image_size
        self.image_size = (int(height), int(width))
        if self.path is not None:
            self.path = str(self.path)
        if not len(self.boxes) == len(self.scores) == len(self.class_indices):
            raise ValueError(
                f"{len(self.boxes)} boxes, {len(self.scores)} scores and "
                f"{len(self.class_indices)} class indices differ in number"
            )
        indices = self.class_indices
        if indices.size and (indices.min() < 0 or indices.max() >= len(self.classes)):
            raise ValueError(f"class indices outside 0..{len(self.classes) - 1}")

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def class_names(self) -> list[str]:
        """The class name of each box."""
        return [self.classes[i] for i in self.class_indices]

    def counts(self) -> dict[str, int]:
        """Boxes per class, for every class (zeros included), in the model's order."""
        numbers = np.bincount(self.class_indices, minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, numbers, strict=False)}

    def filter(self, score_threshold: float) -> DetectionResult:
        """A new result with the boxes scored at least ``score_threshold``."""
        keep = self.scores >= score_threshold
        return DetectionResult(
            boxes=self.boxes[keep],
            scores=self.scores[keep],
            class_indices=self.class_indices[keep],
            classes=list(self.classes),
            image_size=self.image_size,
            path=self.path,
        )

    def to_dataframe(self) -> pd.DataFrame:
        """One row per box: ``x1, y1, x2, y2, score, class_index, class_name, path``.

        Needs pandas (imported here, not with the module).
        """
        import pandas as pd

        return pd.DataFrame(
            {
                "x1": self.boxes[:, 0],
                "y1": self.boxes[:, 1],
                "x2": self.boxes[:, 2],
                "y2": self.boxes[:, 3],
                "score": self.scores,
                "class_index": self.class_indices,
                "class_name": pd.Series(self.class_names, dtype=object),
                "path": pd.Series([self.path] * len(self), dtype=object),
            }
        )

    def draw(self, image: np.ndarray, *, scores: bool = True, legend: bool = False) -> np.ndarray:
        """The image with class-coloured boxes labelled with class and score.

        See :func:`mediscope.runtime.drawing.draw_detections`.

        Args:
            image: The ``(H, W, 3)`` uint8 RGB image (grey also works) of ``image_size``.
            scores: Show each box's score beside its class name.
            legend: Add a band above the image naming each class with its colour and
                number of boxes (as ``mediscope predict``'s overlays).

        Returns:
            A new uint8 RGB image: ``(H, W, 3)``, taller with the legend.

        Raises:
            ValueError: The image's size is not ``image_size``.
        """
        size = tuple(np.asarray(image).shape[:2])
        if size != self.image_size:
            raise ValueError(f"image {size} is not the result's image size {self.image_size}")
        return draw_detections(
            image,
            self.boxes,
            self.class_indices,
            self.scores if scores else None,
            self.classes,
            legend=legend,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields: task, path, image_size, classes, counts, and per box
        ``boxes`` (``[x1, y1, x2, y2]``), ``scores``, ``class_indices``, ``class_names``."""
        return {
            "task": "detection",
            "path": self.path,
            "image_size": list(self.image_size),
            "classes": list(self.classes),
            "counts": self.counts(),
            "boxes": self.boxes.tolist(),
            "scores": self.scores.tolist(),
            "class_indices": self.class_indices.tolist(),
            "class_names": self.class_names,
        }

    def to_json(self, indent: int | None = None) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    def __repr__(self) -> str:
        number = len(self)
        text = f"{number} object{'' if number == 1 else 's'}"
        found = [f"{name} {n}" for name, n in self.counts().items() if n]
        if found:
            text += ": " + ", ".join(found)
        if self.path is not None:
            text += "; " + _path_text(self.path)
        return f"DetectionResult({text})"


# -- segmentation --------------------------------------------------------------------------


@dataclass(repr=False, eq=False)
class SegmentationResult:
    """The class of every pixel of one image.

    Attributes:
        mask: ``(H, W)`` integer class indices into ``classes``.
        classes: The model's class names, the background (index 0) included.
        probabilities: Optional ``(K, H, W)`` float32 per-class probabilities.
        path: The image's path, when it was read from a file.

    Example:
        >>> mask = np.zeros((4, 5), dtype=np.int64)
        >>> mask[1:3, 1:4] = 1
        >>> result = SegmentationResult(mask, ["background", "lesion"])
        >>> result
        SegmentationResult(4x5; lesion 30.0 %, background 70.0 %)
        >>> result.areas()
        {'background': 14, 'lesion': 6}
    """

    mask: np.ndarray
    classes: list[str]
    probabilities: np.ndarray | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask)
        if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
            raise ValueError(f"expected an (H, W) integer mask, got {mask.dtype} {mask.shape}")
        self.mask = mask
        self.classes = [str(name) for name in self.classes]
        if mask.size and (mask.min() < 0 or mask.max() >= len(self.classes)):
            raise ValueError(f"mask values outside 0..{len(self.classes) - 1}")
        if self.probabilities is not None:
            self.probabilities = np.asarray(self.probabilities, dtype=np.float32)
            expected = (len(self.classes), *mask.shape)
            if self.probabilities.shape != expected:
                raise ValueError(
                    f"probabilities {self.probabilities.shape} do not match {expected}"
                )
        if self.path is not None:
            self.path = str(self.path)

    def _pixels(self) -> np.ndarray:
        return np.bincount(self.mask.ravel(), minlength=len(self.classes))

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the mask."""
        height, width = self.mask.shape
        return int(height), int(width)

    def areas(self) -> dict[str, int]:
        """Pixels per class, for every class (zeros included), in the model's order."""
        return {name: int(n) for name, n in zip(self.classes, self._pixels(), strict=False)}

    def fractions(self) -> dict[str, float]:
        """Share of the image's pixels per class (0..1), for every class."""
        total = max(self.mask.size, 1)
        pixels = self._pixels()
        return {name: int(n) / total for name, n in zip(self.classes, pixels, strict=False)}

    def overlay(
        self, image: np.ndarray, *, alpha: float = 0.45, contours: bool = True
    ) -> np.ndarray:
        """The classes blended over the image in their colours, with outlines.

        The background (class 0) is left as it is. See
        :func:`mediscope.runtime.drawing.overlay`.

        Args:
            image: The ``(H, W, 3)`` uint8 RGB image (grey also works) of the mask's size.
            alpha: Opacity of the class colours.
            contours: Outline each object in its full class colour.

        Returns:
            A new ``(H, W, 3)`` uint8 RGB image.
        """
        colors = class_colors(len(self.classes))
        return overlay(image, self.mask, colors, alpha=alpha, contours=contours)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields: task, path, classes, ``shape`` ``[H, W]``, areas, fractions,
        and ``rle``: class name -> :func:`rle_encode` of that class's pixels, for every
        class, so each encoding stands alone (:func:`mask_from_rle` restores the mask).

        The probabilities are left out (they are large); save them with NumPy instead.
        """
        return {
            "task": "segmentation",
            "path": self.path,
            "classes": list(self.classes),
            "shape": list(self.shape),
            "areas": self.areas(),
            "fractions": self.fractions(),
            "rle": {
                name: rle_encode(self.mask == index) for index, name in enumerate(self.classes)
            },
        }

    def to_json(self, indent: int | None = None) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    def __repr__(self) -> str:
        height, width = self.shape
        fractions = self.fractions()
        order = [*self.classes[1:], *self.classes[:1]]  # objects first, background last
        shares = [f"{name} {100 * fractions[name]:.1f} %" for name in order if fractions[name]]
        text = f"{height}x{width}"
        if shares:
            text += "; " + ", ".join(shares)
        if self.path is not None:
            text += "; " + _path_text(self.path)
        return f"SegmentationResult({text})"


#: Any of the three results (what a predictor returns for one image).
Result: TypeAlias = ClassificationResult | DetectionResult | SegmentationResult
