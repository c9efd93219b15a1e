"""Per-image results of an evaluation, kept for paired comparisons of models.

Every evaluation writes ``<split>_samples.npz`` beside ``<split>_metrics.json``: the
image ids, their patients (``groups``, empty when unknown) and what the task's metrics
are computed from, image by image:

- classification: ``labels`` (N,) and ``probs`` (N, C);
- segmentation: ``confusions`` (N, C, C), the pixel confusion matrix of each image;
- detection: the predictions (``pred_boxes``, ``pred_scores``, ``pred_labels``,
  ``pred_image``) and ground truth (``gt_boxes``, ``gt_labels``, ``gt_image``) of all
  images, ``*_image`` holding the index of the image each row belongs to.

:func:`read_samples` reads it back as a :class:`Samples` whose
:meth:`Samples.statistic` recomputes the metrics of any subset of the images, so that
``compare`` can resample the images two models share and score both on each resample.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mediscope.errors import DataError
from mediscope.files import write_with

Statistic = Callable[[np.ndarray], Mapping[str, float]]


def samples_file(run_dir: Path, split: str) -> Path:
    """``<run_dir>/<split>_samples.npz``."""
    return Path(run_dir) / f"{split}_samples.npz"


def write_samples(
    run_dir: Path,
    split: str,
    task: str,
    ids: Sequence[str],
    groups: Sequence[str | None],
    classes: Sequence[str],
    **arrays: np.ndarray,
) -> Path:
    """Writes ``<split>_samples.npz`` (see the module's description of ``arrays``)."""

    def write(tmp: Path) -> None:
        everything: dict[str, Any] = {
            "task": np.array(task),
            "ids": np.array(list(ids), dtype=str),
            "groups": np.array([g or "" for g in groups], dtype=str),
            "classes": np.array(list(classes), dtype=str),
            **arrays,
        }
        with tmp.open("wb") as file:
            np.savez_compressed(file, **everything)

    return write_with(samples_file(run_dir, split), write)


def detection_arrays(
    predictions: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]
) -> dict[str, np.ndarray]:
    """The flat arrays of :func:`write_samples` for a detection evaluation."""

    def flat(items: Sequence[Mapping[str, Any]], prefix: str, scores: bool) -> dict[str, Any]:
        boxes = [np.asarray(i["boxes"], np.float64).reshape(-1, 4) for i in items]
        out = {
            f"{prefix}_boxes": np.concatenate(boxes) if boxes else np.zeros((0, 4)),
            f"{prefix}_labels": np.concatenate(
                [np.asarray(i["labels"], np.int64).reshape(-1) for i in items]
                or [np.zeros(0, np.int64)]
            ).astype(np.int64),
            f"{prefix}_image": np.repeat(np.arange(len(items)), [len(b) for b in boxes]),
        }
        if scores:
            out[f"{prefix}_scores"] = np.concatenate(
                [np.asarray(i["scores"], np.float64).reshape(-1) for i in items] or [np.zeros(0)]
            )
        return out

    return {**flat(predictions, "pred", True), **flat(targets, "gt", False)}


@dataclass
class Samples:
    """The per-image results of one evaluation (:func:`read_samples`)."""

    task: str
    ids: list[str]
    groups: list[str]
    classes: list[str]
    arrays: dict[str, np.ndarray] = field(repr=False)

    def positions(self, ids: Sequence[str]) -> np.ndarray:
        """Indices of ``ids`` in this evaluation."""
        where = {sample_id: i for i, sample_id in enumerate(self.ids)}
        return np.array([where[i] for i in ids], dtype=np.int64)

    def statistic(self, ids: Sequence[str]) -> Statistic:
        """The task's metrics of the images ``ids`` at given indices into ``ids``."""
        at = self.positions(ids)
        a = self.arrays
        if self.task == "classification":
            from mediscope.metrics.bootstrap import classification_metrics

            labels, probs = a["labels"][at], a["probs"][at]
            return lambda idx: classification_metrics(labels[idx], probs[idx], self.classes)
        if self.task == "segmentation":
            from mediscope.metrics.segmentation import segmentation_report

            confusions = a["confusions"][at]
            return lambda idx: segmentation_report(confusions[idx].sum(axis=0), self.classes)
        if self.task == "detection":
            from mediscope.metrics.detection import map_statistic

            predictions, targets = self._detections()
            return map_statistic(
                [predictions[i] for i in at], [targets[i] for i in at], self.classes
            )
        raise DataError(f"unknown task {self.task!r} in a samples file")

    def _detections(self) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
        a, n = self.arrays, len(self.ids)
        predictions = [
            {
                "boxes": a["pred_boxes"][a["pred_image"] == i],
                "scores": a["pred_scores"][a["pred_image"] == i],
                "labels": a["pred_labels"][a["pred_image"] == i],
            }
            for i in range(n)
        ]
        targets = [
            {
                "boxes": a["gt_boxes"][a["gt_image"] == i],
                "labels": a["gt_labels"][a["gt_image"] == i],
            }
            for i in range(n)
        ]
        return predictions, targets


def read_samples(path: Path) -> Samples | None:
    """The per-image results in ``path``; None when the file is absent or unreadable."""
    if not Path(path).is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, KeyError):
        return None
    try:
        return Samples(
            task=str(arrays.pop("task")),
            ids=[str(i) for i in arrays.pop("ids")],
            groups=[str(g) for g in arrays.pop("groups")],
            classes=[str(c) for c in arrays.pop("classes")],
            arrays=arrays,
        )
    except KeyError:
        return None
