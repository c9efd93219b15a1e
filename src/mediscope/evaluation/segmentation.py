"""Evaluating a segmentation checkpoint on a split, at each image's own resolution.

Writes ``<split>_metrics.json`` (mean and per-class Dice and IoU, pixel accuracy, with
their bootstrap intervals over images),
``<split>_per_sample.csv`` (Dice and IoU of every image) and the galleries of the best
and worst images by Dice (``plots/<split>_best.png``, ``plots/<split>_worst.png``).
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
from mediscope.metrics.segmentation import (
    confusion_matrix,
    per_sample_scores,
    segmentation_report,
)
from mediscope.reports.segmentation import GalleryItem, best_and_worst, write_gallery
from mediscope.tasks.spec import EvaluationInputs


@dataclass
class SegmentationEvaluation:
    """Metrics over a split and the per-image scores."""

    metrics: dict[str, float]
    per_sample: pd.DataFrame
    confusions: np.ndarray  # (N, C, C) per image, for the bootstrap


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
    """Predicts every image of ``dataset``; the split's metrics and per-image scores."""
    n = len(classes)
    ignore = config.data.ignore_index
    confusions = np.zeros((len(ids), n, n), dtype=np.int64)
    rows = []
    for index, sample_id in enumerate(ids):
        image, mask = dataset.read(index)
        pred, _ = predictor.predict(image)
        confusions[index] = confusion_matrix(pred, mask, num_classes=n, ignore_index=ignore)
        scores = per_sample_scores(pred, mask, num_classes=n, ignore_index=ignore, classes=classes)
        rows.append({"id": sample_id, **scores})
    table = pd.DataFrame(rows)
    metrics = segmentation_report(confusions.sum(axis=0), classes)
    metrics["n_samples"] = float(len(ids))
    return SegmentationEvaluation(metrics, table, confusions)


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
