"""``mediscope predict``'s files, written from a :class:`Predictor`'s results.

Whatever the model's format (eager, TorchScript, ONNX), the files are the same:

* classification: one CSV, ``path``, ``label`` and a probability column per class;
* segmentation: a folder with ``masks/<name>.png`` (class indices, palette PNG),
  ``overlays/<name>.png``, ``probabilities/<name>.npz`` (on request) and
  ``predictions.csv`` (``area_fraction/<class>``: each class's share of the pixels);
* detection: a folder with ``predictions.csv`` / ``.json``, ``labels/`` (YOLO with
  scores), ``counts.csv``, ``overlays/<name>.jpg`` and ``settings.txt`` (the score
  threshold the counts used and where it comes from, the IoU threshold, whether boxes
  were suppressed across classes).

An image that cannot be read leaves no half-written folder.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from mediscope.errors import DataError
from mediscope.files import write_text_atomic, write_with
from mediscope.runtime.detection_files import DetectionRecord, write_detection_predictions
from mediscope.runtime.drawing import (
    UNLABELLED,
    class_colors,
    draw_detections,
    labelled_overlay,
)
from mediscope.runtime.info import InferenceSettings, ModelInfo
from mediscope.runtime.inputs import chunks
from mediscope.runtime.results import ClassificationResult, DetectionResult, SegmentationResult
from mediscope.runtime.staging import staged_output

if TYPE_CHECKING:
    import pandas as pd

    from mediscope.runtime.predictor import Predictor


@dataclass
class PredictionTable:
    """What ``mediscope predict`` wrote: one row per image, and where.

    ``score_threshold`` is the detection threshold used (None for other tasks),
    ``settings`` the detector's inference settings (its source, IoU threshold, ...).
    """

    task: str
    rows: list[dict[str, Any]]
    path: Path
    classes: list[str]
    score_threshold: float | None = None
    columns: list[str] = field(default_factory=list)
    settings: InferenceSettings | None = None

    def attrs(self) -> dict[str, Any]:
        """``path``; detection: ``score_threshold``, ``score_threshold_source``,
        ``iou_threshold``, ``agnostic_nms``."""
        found: dict[str, Any] = {"path": str(self.path)}
        if self.score_threshold is not None:
            found["score_threshold"] = self.score_threshold
        if self.settings is not None:
            found["score_threshold_source"] = self.settings.score_threshold_source
            found["iou_threshold"] = self.settings.iou_threshold
            found["agnostic_nms"] = self.settings.agnostic_nms
        return found

    def to_dataframe(self) -> pd.DataFrame:
        """The rows as a pandas DataFrame (its ``attrs``: :meth:`attrs`)."""
        import pandas as pd

        frame = pd.DataFrame(self.rows, columns=self.columns or None)
        frame.attrs.update(self.attrs())
        return frame


def csv_text(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """CSV text (header and rows, ``\\n`` line ends) as ``mediscope predict`` writes it."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def unique_stems(refs: Sequence[str]) -> list[str]:
    """Output names from image stems; repeated stems get ``-2``, ``-3``, ... suffixes."""
    seen: dict[str, int] = {}
    names = []
    for ref in refs:
        stem = Path(ref.split("::")[0]).stem + ("-" + ref.split("::")[-1] if "::" in ref else "")
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names


def classification_row(ref: str, result: ClassificationResult) -> dict[str, Any]:
    """A ``predictions.csv`` row of a classifier: ``path``, ``label`` (multi-label: the
    present labels joined by ``;``) and a probability (6 decimals) per class."""
    label = result.label if result.labels is None else ";".join(result.labels)
    row: dict[str, Any] = {"path": ref, "label": label}
    row.update({c: round(p, 6) for c, p in result.probabilities.items()})
    return row


#: Prefix of the ``predictions.csv`` columns of a segmentation model's pixel shares.
AREA_FRACTION = "area_fraction/"


def segmentation_row(ref: str, mask: str, result: SegmentationResult) -> dict[str, Any]:
    """A ``predictions.csv`` row of a segmentation model: ``path``, ``mask`` (the mask
    file's name) and ``area_fraction/<class>``, each class's share of the image's
    pixels (6 decimals)."""
    row: dict[str, Any] = {"path": ref, "mask": mask}
    row.update({AREA_FRACTION + c: round(v, 6) for c, v in result.fractions().items()})
    return row


def detection_row(ref: str, labels: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """A ``counts.csv`` row: ``path``, the boxes per class of ``labels`` (class indices)
    and ``total``."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=len(classes))[: len(classes)]
    row: dict[str, Any] = {"path": ref}
    row.update({c: int(n) for c, n in zip(classes, counts, strict=True)})
    row["total"] = int(counts.sum())
    return row


def table_columns(task: str, classes: Sequence[str]) -> list[str]:
    """The columns of a task's table: classification and segmentation
    ``predictions.csv``, detection ``counts.csv``."""
    if task in ("classification", "multilabel"):
        return ["path", "label", *classes]
    if task == "segmentation":
        return ["path", "mask", *(AREA_FRACTION + c for c in classes)]
    return ["path", *classes, "total"]


def _loaded(predictor: Predictor, refs: Sequence[str]) -> Iterator[tuple[str, np.ndarray]]:
    for ref in refs:
        image, _ = predictor.load_image(ref)
        yield ref, image


def write_predictions(
    predictor: Predictor,
    refs: Sequence[str],
    output: Path,
    *,
    probabilities: bool = False,
) -> PredictionTable:
    """Predicts ``refs`` and writes the task's files under ``output``.

    Args:
        predictor: The model.
        refs: Image paths (or NPZ item references).
        output: Classification: the CSV, or a folder (``predictions.csv`` in it);
            segmentation and detection: a folder.
        probabilities: Segmentation: also write per-class probability maps.
    """
    if predictor.task == "classification":
        return write_classification(predictor, refs, output)
    if predictor.task == "segmentation":
        return write_segmentation(predictor, refs, output, probabilities=probabilities)
    return write_detection(predictor, refs, output)


def write_classification(
    predictor: Predictor, refs: Sequence[str], output: Path
) -> PredictionTable:
    """The CSV: ``path``, ``label`` and a probability (6 decimals) per class."""
    classes = predictor.classes
    rows: list[dict[str, Any]] = []
    for group in chunks(list(refs), predictor.batch_size):
        images = [predictor.load_image(ref)[0] for ref in group]
        for ref, result in zip(group, predictor.predict_batch(images), strict=True):
            assert isinstance(result, ClassificationResult)
            rows.append(classification_row(ref, result))
    columns = table_columns("classification", classes)
    target = output / "predictions.csv" if output.is_dir() else output
    write_text_atomic(target, csv_text(columns, rows))
    return PredictionTable("classification", rows, target, classes, columns=columns)


def _folder_output(output: Path, task: str, suffixes: tuple[str, ...]) -> None:
    if output.suffix.lower() in suffixes or (output.exists() and not output.is_dir()):
        raise DataError(
            f"{task} writes a folder of predictions and overlays, not a file",
            where=output,
            hint="give --output a folder",
        )


def save_mask_png(path: str | Path, mask: np.ndarray, colors: np.ndarray) -> Path:
    """Writes a class-index mask as a palette (mode P) PNG.

    Pixel values are the class indices, so ``np.asarray(Image.open(path))`` gives the mask
    back; the embedded palette shows each class in its colour in any image viewer (values
    without a class colour, such as the ignore value 255, in white).

    Raises:
        DataError: The mask is not 2-D or holds values a PNG palette cannot index.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise DataError(
            f"a mask must be a 2-D array of class indices, got {mask.dtype} {mask.shape}",
            where=path,
            hint="pass argmax(probabilities) as integers",
        )
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise DataError(
            f"mask values {mask.min()}..{mask.max()} do not fit a PNG palette (0..255)",
            where=path,
            hint="a palette PNG holds at most 256 classes",
        )
    image = mask_image(mask, colors)
    return write_with(path, lambda tmp: image.save(tmp, format="PNG"))


def mask_image(mask: np.ndarray, colors: np.ndarray) -> Image.Image:
    """A class-index mask (values 0..255) as a palette (mode P) PIL image in the class
    colours (values without one in white); see :func:`save_mask_png`."""
    palette = np.tile(np.array(UNLABELLED, dtype=np.uint8), (256, 1))
    colors = np.asarray(colors, dtype=np.uint8)[:256]
    palette[: len(colors)] = colors
    height, width = mask.shape
    image = Image.frombytes("P", (width, height), np.ascontiguousarray(mask, np.uint8).tobytes())
    image.putpalette(palette.ravel().tolist())
    return image


def save_probability_map(path: str | Path, probs: Any) -> Path:
    """Writes ``(K, H, W)`` probabilities as float16 in a compressed ``.npz`` (key
    ``probabilities``)."""
    data = np.asarray(probs, dtype=np.float16)
    if data.ndim != 3:
        raise ValueError(f"expected probabilities (K, H, W), got {data.shape}")

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:  # a file handle: numpy would add .npz to a name
            np.savez_compressed(handle, probabilities=data)

    return write_with(path, write)


def _save_png(image: np.ndarray, path: Path) -> Path:
    picture = Image.fromarray(image)
    return write_with(path, lambda tmp: picture.save(tmp, format="PNG"))


def save_jpeg(path: Path, image: np.ndarray, quality: int = 90) -> Path:
    """Writes an RGB uint8 image as JPEG, atomically (overlays of large smears stay small)."""
    picture = Image.fromarray(image)
    return write_with(path, lambda tmp: picture.save(tmp, "JPEG", quality=quality))


def _rgb(image: np.ndarray) -> np.ndarray:
    return image if image.shape[2] == 3 else np.repeat(image, 3, axis=2)


def write_segmentation(
    predictor: Predictor, refs: Sequence[str], output: Path, *, probabilities: bool = False
) -> PredictionTable:
    """Masks, overlays, (probability maps) and ``predictions.csv`` under ``output``."""
    _folder_output(output, "segmentation", (".csv",))
    classes = predictor.classes
    colors = class_colors(len(classes))
    rows: list[dict[str, Any]] = []
    with staged_output(output) as staging:
        for (ref, image), name in zip(_loaded(predictor, refs), unique_stems(refs), strict=True):
            result = predictor.predict(image, probabilities=probabilities)
            assert isinstance(result, SegmentationResult)
            save_mask_png(staging / "masks" / f"{name}.png", result.mask, colors)
            drawn = labelled_overlay(_rgb(image), result.mask, classes, colors)
            _save_png(drawn, staging / "overlays" / f"{name}.png")
            if probabilities:
                save_probability_map(
                    staging / "probabilities" / f"{name}.npz", result.probabilities
                )
            rows.append(segmentation_row(ref, f"masks/{name}.png", result))
        columns = table_columns("segmentation", classes)
        write_text_atomic(staging / "predictions.csv", csv_text(columns, rows))
    return PredictionTable(
        "segmentation", rows, output / "predictions.csv", classes, columns=columns
    )


def write_detection(predictor: Predictor, refs: Sequence[str], output: Path) -> PredictionTable:
    """Predictions, counts, YOLO labels and overlays under ``output``."""
    _folder_output(output, "detection", (".csv", ".json"))
    classes = predictor.classes
    records = []
    with staged_output(output, replace=["labels"]) as staging:
        for (ref, image), name in zip(_loaded(predictor, refs), unique_stems(refs), strict=True):
            result = predictor.predict(image)
            assert isinstance(result, DetectionResult)
            height, width = image.shape[:2]
            records.append(
                DetectionRecord(
                    ref, width, height, result.boxes, result.scores, result.class_indices
                )
            )
            drawn = draw_detections(
                _rgb(image),
                result.boxes,
                result.class_indices,
                result.scores,
                classes,
                legend=True,
            )
            save_jpeg(staging / "overlays" / f"{name}.jpg", drawn)
        write_detection_predictions(staging, records, classes)
        write_text_atomic(staging / SETTINGS_FILE, detection_settings_text(predictor.info))
    rows = [detection_row(record.path, record.labels, classes) for record in records]
    return PredictionTable(
        "detection",
        rows,
        output,
        classes,
        score_threshold=predictor.info.inference.score_threshold,
        columns=table_columns("detection", classes),
        settings=predictor.info.inference,
    )


#: The note beside ``counts.csv``: how its boxes were kept.
SETTINGS_FILE = "settings.txt"


def detection_settings_text(info: ModelInfo) -> str:
    """``settings.txt`` of a detection output folder: the score threshold the boxes and
    counts use and where it comes from (with a warning line when it is the default for
    want of a calibrated one), the IoU threshold, the suppression and the tiles.

    Example:
        >>> info = ModelInfo(task="detection", classes=["a"], image_size=(64, 64),
        ...                  channels=3, mean=[0.5] * 3, std=[0.25] * 3)
        >>> print(detection_settings_text(info).splitlines()[1])
        score threshold: 0.3 (as the exported model records it)
    """
    settings = info.inference
    lines = ["Boxes in predictions.csv, predictions.json, labels/, counts.csv and overlays/:"]
    lines.append(f"score threshold: {settings.score_threshold:g} ({settings.threshold_note()})")
    if settings.uncalibrated:
        lines.append(
            "WARNING: the threshold was not calibrated on this model's validation data; the "
            "counts may be far off. Calibrate it (`mediscope validate`) or choose one "
            "(`mediscope predict --score-threshold`)."
        )
    across = "across classes (agnostic_nms: true)" if settings.agnostic_nms else "within each class"
    lines.append(f"overlapping boxes suppressed {across} above IoU {settings.iou_threshold:g}")
    if settings.window is not None:
        lines.append(
            f"large images: tiles of {settings.window[0]} x {settings.window[1]} px, overlap "
            f"{settings.overlap:g}, merged by {settings.merge}"
        )
    if settings.tta:
        lines.append(
            "test-time augmentation: each image or tile and its 3 flips detect, and vote on "
            "every object's class and score (inference.tta: true)"
        )
    lines.append(f"at most {settings.max_detections} boxes per image (per tile when tiled)")
    if info.checkpoint:
        lines.append(f"model: {info.checkpoint}")
    return "\n".join(lines) + "\n"


#: Suffixes of exported model files (ONNX, TorchScript).
EXPORTED_SUFFIXES = (".onnx", ".pt", ".ts", ".torchscript", ".jit")


def is_exported(source: Path) -> bool:
    """Whether ``source`` is an exported model file (rather than a run or a config)."""
    return source.is_file() and source.suffix.lower() in EXPORTED_SUFFIXES


def predict_exported(
    source: Path,
    *,
    inputs: list[Path],
    output: Path,
    probabilities: bool = False,
    device: str = "cpu",
    score_threshold: float | None = None,
    iou_threshold: float | None = None,
    agnostic_nms: bool | None = None,
) -> PredictionTable:
    """``mediscope predict MODEL.onnx``: an exported model's files, without the training
    stack (torch is imported only for TorchScript).

    ``score_threshold``, ``iou_threshold`` and ``agnostic_nms`` replace the detector's
    exported settings (see :meth:`Predictor.with_settings`).

    Raises:
        ConfigError: when ``output`` is an input, or inside or above one, or detection
            settings are given for another task or out of range.
    """
    from mediscope.files import refuse_overlap
    from mediscope.runtime.backends import OnnxBackend, TorchScriptBackend
    from mediscope.runtime.inputs import collect_inputs
    from mediscope.runtime.predictor import Predictor

    refuse_overlap(output, [*inputs, source], option="--output")
    backend: Any
    if source.suffix.lower() == ".onnx":
        backend = OnnxBackend(source, device=device)
    else:
        backend = TorchScriptBackend(source, device=device)
    predictor = Predictor(backend, backend.info).with_settings(
        score_threshold=score_threshold, iou_threshold=iou_threshold, agnostic_nms=agnostic_nms
    )
    refs = collect_inputs(inputs)
    refuse_overlap(output, refs, option="--output")
    return write_predictions(predictor, refs, output, probabilities=probabilities)
