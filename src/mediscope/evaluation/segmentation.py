"""Evaluating a segmentation checkpoint on a split, at each image's own resolution.

Writes ``<split>_metrics.json`` (mean and per-class Dice and IoU, pixel accuracy, the
boundary metrics HD95, ASSD and NSD, and, for instance-like masks, per-object precision,
recall, F1 and count errors, all with their bootstrap intervals over images),
``<split>_per_sample.csv`` (Dice, IoU, HD95, ASSD, NSD and object counts of every
image) and the galleries of the best and worst images by Dice
(``plots/<split>_best.png``, ``plots/<split>_worst.png``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mediscope.config.schema import Config
from mediscope.data.datasets import SegmentationDataset
from mediscope.engine.checkpoints import read_checkpoint
from mediscope.evaluation.per_sample import write_samples
from mediscope.files import write_json_atomic, write_text_atomic
from mediscope.inference.pictures import class_colors
from mediscope.inference.segmentation import SegmentationPredictor
from mediscope.metrics.bootstrap import (
    bootstrap_unit,
    group_codes,
    interval_keys,
    segmentation_intervals,
)
from mediscope.metrics.objects import (
    COUNT_COLUMNS,
    instance_like,
    object_counts,
    object_intervals,
    object_report,
)
from mediscope.metrics.segmentation import (
    confusion_matrix,
    per_sample_scores,
    segmentation_report,
)
from mediscope.metrics.surface import (
    SURFACE_KEYS,
    class_surface_scores,
    image_surface_means,
    surface_intervals,
    surface_report,
)
from mediscope.reports.segmentation import GalleryItem, best_and_worst, write_gallery
from mediscope.tasks.spec import EvaluationInputs


@dataclass
class SegmentationEvaluation:
    """Metrics over a split and the per-image scores."""

    metrics: dict[str, float]
    per_sample: pd.DataFrame
    confusions: np.ndarray  # (N, C, C) per image, for the bootstrap
    surfaces: np.ndarray  # (N, F, 3) HD95, ASSD, NSD per image and foreground class
    objects: np.ndarray  # (N, F, 3) matched, predicted, true objects
    with_objects: bool  # whether the object metrics are reported


def evaluate_segmentation(inputs: EvaluationInputs, *, out_dir: Path) -> dict[str, float]:
    """Evaluates ``checkpoint`` on ``split`` (val or test) and writes its outputs.

    Returns:
        The flat metrics written to ``<split>_metrics.json``.
    """
    config, checkpoint, split = inputs.config, inputs.checkpoint, inputs.split
    task, samples, dataset = inputs.task, inputs.samples, inputs.dataset
    assert isinstance(dataset, SegmentationDataset)
    predictor = SegmentationPredictor.from_config(task, config, stats=(inputs.mean, inputs.std))
    evaluation = score_dataset(predictor, dataset, samples.ids(), task.classes, config)
    evaluation.metrics["epoch"] = float(read_checkpoint(checkpoint).get("epoch", -1))
    report = config.report
    groups = group_codes([s.group for s in samples.samples])
    intervals = segmentation_intervals(
        evaluation.confusions,
        task.classes,
        resamples=report.bootstrap,
        confidence=report.confidence,
        seed=config.seed,
        groups=groups,
    )
    intervals.update(
        surface_intervals(
            evaluation.surfaces,
            task.classes,
            resamples=report.bootstrap,
            confidence=report.confidence,
            seed=config.seed,
            groups=groups,
        )
    )
    if evaluation.with_objects:
        intervals.update(
            object_intervals(
                evaluation.objects,
                task.classes,
                resamples=report.bootstrap,
                confidence=report.confidence,
                seed=config.seed,
                groups=groups,
            )
        )
    evaluation.metrics.update(
        interval_keys(
            intervals,
            resamples=report.bootstrap,
            confidence=report.confidence,
            unit=bootstrap_unit(groups, len(evaluation.confusions)),
        )
    )

    write_text_atomic(
        out_dir / f"{split}_per_sample.csv", evaluation.per_sample.to_csv(index=False)
    )
    write_samples(
        out_dir,
        split,
        "segmentation",
        samples.ids(),
        [s.group for s in samples.samples],
        task.classes,
        confusions=evaluation.confusions,
    )
    _write_galleries(out_dir, split, predictor, dataset, evaluation, task.classes, report.gallery)
    write_json_atomic(out_dir / f"{split}_metrics.json", evaluation.metrics)
    return evaluation.metrics


def score_dataset(
    predictor: SegmentationPredictor,
    dataset: SegmentationDataset,
    ids: list[str],
    classes: list[str],
    config: Config,
) -> SegmentationEvaluation:
    """Predicts every image of ``dataset``; the split's metrics and per-image scores.

    Besides overlap, every image gets the boundary scores of
    :mod:`mediscope.metrics.surface` (tolerance ``report.surface_tolerance``, in µm when
    ``report.pixel_spacing`` is set) and the object counts of
    :mod:`mediscope.metrics.objects`; the object metrics are reported when
    ``report.object_metrics`` is true, or ``auto`` and the ground truth is instance-like.
    """
    n = len(classes)
    foreground = classes[1:] if n > 1 else classes
    ignore = config.data.ignore_index
    report = config.report
    confusions = np.zeros((len(ids), n, n), dtype=np.int64)
    surfaces = np.zeros((len(ids), len(foreground), len(SURFACE_KEYS)))
    objects = np.zeros((len(ids), len(foreground), len(COUNT_COLUMNS)), dtype=np.int64)
    rows = []
    for index, sample_id in enumerate(ids):
        image, mask = dataset.read(index)
        pred, _ = predictor.predict(image)
        confusions[index] = confusion_matrix(pred, mask, num_classes=n, ignore_index=ignore)
        scores = per_sample_scores(pred, mask, num_classes=n, ignore_index=ignore, classes=classes)
        surfaces[index] = class_surface_scores(
            pred,
            mask,
            num_classes=n,
            tolerance=report.surface_tolerance,
            spacing=report.pixel_spacing,
            ignore_index=ignore,
        )
        objects[index] = object_counts(pred, mask, num_classes=n, ignore_index=ignore)
        scores.update(image_surface_means(surfaces[index]))
        for f, name in enumerate(foreground):
            for j, key in enumerate(SURFACE_KEYS):
                scores[f"{key}/{name}"] = float(surfaces[index, f, j])
        scores["objects_found"] = int(objects[index, :, 1].sum())
        scores["objects_true"] = int(objects[index, :, 2].sum())
        rows.append({"id": sample_id, **scores})
    table = pd.DataFrame(rows)
    metrics = segmentation_report(confusions.sum(axis=0), classes)
    metrics["n_samples"] = float(len(ids))
    metrics.update(surface_report(surfaces, classes))
    metrics["nsd_tolerance"] = float(report.surface_tolerance)
    if report.pixel_spacing is not None:
        metrics["pixel_spacing_um"] = float(report.pixel_spacing)
    setting = report.object_metrics
    with_objects = instance_like(objects) if setting == "auto" else bool(setting)
    if with_objects and len(ids):
        metrics.update(object_report(objects, classes))
    return SegmentationEvaluation(metrics, table, confusions, surfaces, objects, with_objects)


def _write_galleries(
    out_dir: Path,
    split: str,
    predictor: SegmentationPredictor,
    dataset: SegmentationDataset,
    evaluation: SegmentationEvaluation,
    classes: list[str],
    k: int,
) -> None:
    table = evaluation.per_sample
    if table.empty or k <= 0:
        return
    scores = list(zip(table["id"], table["dice"], strict=True))
    best, worst = best_and_worst(scores, k)
    position = {sample_id: i for i, sample_id in enumerate(table["id"])}
    colors = class_colors(len(classes))
    for name, chosen in (("best", best), ("worst", worst)):
        items = []
        for sample_id in chosen:
            image, mask = dataset.read(position[sample_id])
            pred, _ = predictor.predict(image)
            dice = float(table["dice"].iloc[position[sample_id]])
            items.append(
                GalleryItem(image=image, target=mask, pred=pred, title=sample_id, score=dice)
            )
        write_gallery(
            out_dir / "plots" / f"{split}_{name}.png",
            items,
            colors=colors,
            class_names=classes,
            title=f"{split}: the {len(items)} {name} images by Dice",
        )
