"""``mediscope ensemble``: majority vote or mean probability over classification
prediction CSVs; weighted boxes fusion or NMS over detection prediction files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mediscope.errors import ConfigError, DataError
from mediscope.files import refuse_overlap, write_text_atomic

if TYPE_CHECKING:
    from mediscope.runtime.detection_files import DetectionRecord

METHODS = ("vote", "mean")
DETECTION_METHODS = ("wbf", "nms")

#: Default IoU above which same-class boxes of different models are one object.
DEFAULT_IOU = {"wbf": 0.55, "nms": 0.5}


def read_predictions(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """A prediction CSV of ``mediscope predict`` and its class columns.

    Paths and labels are read as text (classes may be named ``0`` and ``1``), the class
    columns as numbers.

    Raises:
        DataError: naming the file for an unreadable CSV, missing columns, a path listed
            twice, a label that is not a class column or a probability that is not a
            number.
    """
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the predictions: {exc}", where=path) from None
    if "path" not in frame.columns or "label" not in frame.columns:
        detection = {"class", "x1", "y2"} <= set(frame.columns)
        raise DataError(
            "not a prediction file (needs path, label and a column per class)",
            where=path,
            hint="detection predictions: use --method wbf or nms"
            if detection
            else "use the CSVs written by 'mediscope predict'",
        )
    classes = [str(c) for c in frame.columns if c not in ("path", "label", "votes")]
    twice = frame["path"][frame["path"].duplicated()]
    if len(twice):
        row = int(twice.index[0]) + 2  # the header is line 1
        raise DataError(
            f"line {row}: {twice.iloc[0]} is listed twice",
            where=path,
            hint="give each image once (one row per image, as predict writes)",
        )
    unknown = frame["label"][~frame["label"].isin(classes)]
    if len(unknown):
        row = int(unknown.index[0]) + 2
        raise DataError(
            f"line {row}: the label '{unknown.iloc[0]}' is not a class column "
            f"({', '.join(classes)})",
            where=path,
            hint="use the CSVs written by 'mediscope predict'",
        )
    for column in classes:
        values = pd.to_numeric(frame[column].str.strip(), errors="coerce")
        bad = values[values.isna()]
        if len(bad):
            row = int(bad.index[0]) + 2
            raise DataError(
                f"line {row}: column '{column}' holds '{frame[column].iloc[bad.index[0]]}', "
                "not a number",
                where=path,
                hint="probabilities are numbers from 0 to 1",
            )
        frame[column] = values.astype(float)
    return frame.set_index("path"), classes


def ensemble(files: list[Path], *, method: str, output: Path) -> pd.DataFrame:
    """Combines the predictions of several models of the same classes.

    ``vote``: the most frequent label; ties go to the tied class with the highest mean
    probability (S2's majority vote). ``mean``: the class of the highest mean
    probability (soft voting).
    """
    if method not in METHODS:
        raise DataError(
            f"unknown method '{method}'",
            where="--method",
            hint="vote or mean (classification), wbf or nms (detection)",
        )
    if len(files) < 2:
        raise DataError("an ensemble needs at least two prediction files", where="PRED...")
    if output.is_dir():
        raise DataError(
            "is a folder", where=output, hint="give --output a CSV file, e.g. ensemble.csv"
        )
    refuse_overlap(output, files, option="--output")
    frames = [read_predictions(f) for f in files]
    base, classes = frames[0]
    for (frame, other), path in zip(frames[1:], files[1:], strict=True):
        if other != classes:
            raise DataError(f"classes {other} differ from {classes}", where=path)
        if set(frame.index) != set(base.index):
            raise DataError("the images differ from the first file's", where=path)
    order = base.index
    probs = np.stack([f.loc[order, classes].to_numpy(dtype=float) for f, _ in frames])
    mean = probs.mean(axis=0)
    if method == "mean":
        winners = mean.argmax(axis=1)
        votes = np.zeros(len(order), dtype=int)
    else:
        index = {c: i for i, c in enumerate(classes)}
        labels = np.stack([[index[x] for x in f.loc[order, "label"]] for f, _ in frames])
        counts = np.stack([(labels == c).sum(axis=0) for c in range(len(classes))], axis=1)
        # Most votes first; among tied classes, the highest mean probability.
        tied = counts == counts.max(axis=1, keepdims=True)
        winners = np.where(tied, mean, -np.inf).argmax(axis=1)
        votes = counts.max(axis=1)
    table = pd.DataFrame({"path": list(order), "label": [classes[i] for i in winners]})
    if method == "vote":
        table["votes"] = votes
    for i, name in enumerate(classes):
        table[name] = np.round(mean[:, i], 6)
    write_text_atomic(output, table.to_csv(index=False))
    return table


def ensemble_detections(
    files: Sequence[Path],
    *,
    output: Path,
    method: str = "wbf",
    weights: Sequence[float] | None = None,
    iou_threshold: float | None = None,
    score_threshold: float = 0.0,
    max_detections: int | None = None,
    conf_type: str = "avg",
) -> tuple[list[DetectionRecord], list[str]]:
    """Fuses the detections of several models image by image, and writes them.

    Each file is a ``predictions.csv`` or ``predictions.json`` of a detection model (or a
    folder holding one); all must list the same images at the same sizes. Classes are
    matched by name (the first file's order, names only others have after them). Each
    image's boxes are fused with :func:`mediscope.inference.boxes.fuse_models`: WBF
    averages the corners of boxes several models agree on (a box only some models found
    keeps a share of its score, see there), NMS keeps the best of them.

    Args:
        files: Two or more prediction files.
        output: The folder to write (see
            :func:`mediscope.reports.detection.write_detection_predictions`).
        method: ``"wbf"`` or ``"nms"``.
        weights: One positive weight per file; None weighs them equally.
        iou_threshold: Same-class boxes overlapping by more than this are one object;
            default 0.55 for WBF, 0.5 for NMS.
        score_threshold: Boxes scoring less are dropped before fusing.
        max_detections: Boxes kept per image; None keeps all.
        conf_type: WBF's fused score (see ``ensemble_boxes``).

    Returns:
        The fused records (in the first file's image order) and the class names.

    Raises:
        DataError: Unreadable files, different images or sizes, a bad output folder.
        ConfigError: A bad method, weight count or threshold.
    """
    from mediscope.inference.boxes import fuse_models
    from mediscope.runtime.detection_files import (
        DetectionRecord,
        read_detection_predictions,
        write_detection_predictions,
    )

    if method not in DETECTION_METHODS:
        raise DataError(f"unknown method '{method}'", where="--method", hint="wbf or nms")
    if len(files) < 2:
        raise DataError("an ensemble needs at least two prediction files", where="PRED...")
    refuse_overlap(output, files, option="--output")
    if weights is not None and (len(weights) != len(files) or min(weights) <= 0):
        raise ConfigError(
            f"{len(weights)} weights for {len(files)} prediction files",
            where="--weight",
            hint="give one positive --weight per file, in the files' order",
        )
    if output.suffix.lower() in (".csv", ".json") and not output.is_dir():
        raise DataError(
            "detection ensembles write a folder (predictions.csv, predictions.json, "
            "labels/, counts.csv)",
            where=output,
            hint="give a folder as --output",
        )
    if iou_threshold is not None and not 0 < iou_threshold <= 1:
        raise ConfigError(f"must be in (0, 1], got {iou_threshold}", where="--iou-threshold")
    if not 0 <= score_threshold <= 1:
        raise ConfigError(f"must be in [0, 1], got {score_threshold}", where="--score-threshold")
    if max_detections is not None and max_detections < 1:
        raise ConfigError(f"must be at least 1, got {max_detections}", where="--max-detections")
    read = [read_detection_predictions(path) for path in files]
    classes: list[str] = []
    for _, names in read:
        classes += [name for name in names if name not in classes]
    per_file: list[dict[str, DetectionRecord]] = []
    for (records, names), path in zip(read, files, strict=True):
        index = np.array([classes.index(name) for name in names], dtype=np.int64)
        by_path: dict[str, DetectionRecord] = {}
        for record in records:
            record.labels = index[record.labels] if len(record.labels) else record.labels
            by_path[record.path] = record
        if per_file:
            first = per_file[0]
            if set(by_path) != set(first):
                missing = sorted(set(first) ^ set(by_path))
                raise DataError(
                    f"the images differ from the first file's ({len(missing)} not in both, "
                    f"e.g. {missing[0]})",
                    where=path,
                    hint="ensemble predictions of the same images",
                )
            for name, record in by_path.items():
                if (record.width, record.height) != (first[name].width, first[name].height):
                    raise DataError(
                        f"{name} is {record.width} x {record.height} here, "
                        f"{first[name].width} x {first[name].height} in the first file",
                        where=path,
                    )
        per_file.append(by_path)
    iou = DEFAULT_IOU[method] if iou_threshold is None else iou_threshold
    fused_records = []
    for name, first_record in per_file[0].items():
        models = [
            {"boxes": r.boxes, "scores": r.scores, "labels": r.labels}
            for r in (by_path[name] for by_path in per_file)
        ]
        fused = fuse_models(
            models,
            weights=weights,
            method=method,
            iou_threshold=iou,
            score_threshold=score_threshold,
            image_size=(first_record.height, first_record.width),
            max_detections=max_detections,
            conf_type=conf_type,
        )
        fused_records.append(
            DetectionRecord(name, first_record.width, first_record.height, **fused)
        )
    write_detection_predictions(output, fused_records, classes)
    return fused_records, classes
