"""Evaluating a detection checkpoint on a split, on each image at its own size.

Images are predicted as ``mediscope predict`` does (sliced into tiles when larger
than the window) and scored against their boxes in original pixels with COCO's
mAP. Writes ``<split>_metrics.json`` (``map``, ``map_50``, ``map_75``, per-class AP,
recall and object counts, and at the counting threshold the count errors and the shares
of each kind of error, all with bootstrap intervals over images),
``plots/<split>_pr_curves.png``, the detection confusion matrix
(``<split>_detection_confusion.csv``, ``plots/<split>_detection_confusion.png``), the
error breakdown (``plots/<split>_errors.png``), the predictions and counts of the split in
``<split>_predictions/``, and galleries of the images with the best and the worst F1 at
the counting threshold (``plots/<split>_best.png``, ``plots/<split>_worst.png``; ground
truth in white, predictions in class colours).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mediscope.data.datasets import DetectionDataset
from mediscope.engine.checkpoints import read_checkpoint
from mediscope.evaluation.per_sample import detection_arrays, write_samples
from mediscope.files import write_json_atomic, write_text_atomic
from mediscope.inference.detection import DetectionPredictor, counting_threshold
from mediscope.inference.pictures import draw_detections, draw_truth_boxes
from mediscope.metrics.bootstrap import bootstrap_unit, group_codes, interval_keys
from mediscope.metrics.counting import best_f1_threshold
from mediscope.metrics.detection import detection_intervals, evaluate_detections, image_f1
from mediscope.metrics.detection_errors import (
    analyse_detections,
    confusion_csv,
    error_intervals,
    error_report,
)
from mediscope.reports.detection import (
    DetectionGalleryItem,
    plot_detection_confusion,
    plot_error_breakdown,
    plot_pr_curves,
    write_detection_gallery,
)
from mediscope.reports.segmentation import best_and_worst
from mediscope.runtime.detection_files import DetectionRecord, write_detection_predictions
from mediscope.tasks.detection import EVAL_MAX_DETECTIONS, EVAL_SCORE_THRESHOLD
from mediscope.tasks.spec import EvaluationInputs


def evaluate_detection(inputs: EvaluationInputs, *, out_dir: Path) -> dict[str, float]:
    """Evaluates ``checkpoint`` on ``split`` (val or test) and writes its outputs.

    Returns:
        The flat metrics written to ``<split>_metrics.json``.
    """
    config, checkpoint, split = inputs.config, inputs.checkpoint, inputs.split
    task, samples, dataset = inputs.task, inputs.samples, inputs.dataset
    assert isinstance(dataset, DetectionDataset)
    predictor = DetectionPredictor.from_config(
        task,
        config,
        stats=(inputs.mean, inputs.std),
        score_threshold=EVAL_SCORE_THRESHOLD,
        max_detections=EVAL_MAX_DETECTIONS,
    )
    predictions, targets, images = [], [], []
    for index, sample_id in enumerate(samples.ids()):
        image, boxes, labels = dataset.read(index)
        found = predictor.predict(image)
        predictions.append({"boxes": found.boxes, "scores": found.scores, "labels": found.labels})
        targets.append({"boxes": boxes, "labels": labels})
        images.append((sample_id, image.shape[1], image.shape[0]))
    threshold, f1 = best_f1_threshold(predictions, targets)
    # counts and overlays: the validation threshold (chosen here when this is val)
    keep = threshold if split == "val" and config.inference.score_threshold == "auto" else None
    keep = keep if keep is not None else counting_threshold(config, checkpoint)
    records = []
    for (sample_id, width, height), item in zip(images, predictions, strict=True):
        shown = item["scores"] >= keep
        records.append(
            DetectionRecord(
                sample_id,
                width,
                height,
                item["boxes"][shown],
                item["scores"][shown],
                item["labels"][shown],
            )
        )
    plots = out_dir / "plots"
    f1_per_image = image_f1(predictions, targets, len(task.classes), score_threshold=keep)
    _write_galleries(
        plots,
        split,
        dataset,
        samples.ids(),
        records,
        f1_per_image,
        task.classes,
        config.report.gallery,
    )
    report = evaluate_detections(predictions, targets, task.classes)
    metrics = dict(report.metrics)
    metrics["n_images"] = float(len(records))
    metrics["score_threshold_f1"] = threshold  # best F1 at IoU 0.5 on this split
    metrics["f1_at_threshold"] = f1
    metrics["count_threshold"] = float(keep)  # what the counts and overlays used
    metrics["epoch"] = float(read_checkpoint(checkpoint).get("epoch", -1))
    groups = group_codes([s.group for s in samples.samples])
    intervals = detection_intervals(
        predictions,
        targets,
        task.classes,
        resamples=config.report.bootstrap,
        confidence=config.report.confidence,
        seed=config.seed,
        max_detections=EVAL_MAX_DETECTIONS,
        groups=groups,
    )
    errors = analyse_detections(predictions, targets, task.classes, score_threshold=keep)
    metrics.update(error_report(errors))
    intervals.update(
        error_intervals(
            errors,
            resamples=config.report.bootstrap,
            confidence=config.report.confidence,
            seed=config.seed,
            groups=groups,
        )
    )
    metrics.update(
        interval_keys(
            intervals,
            resamples=config.report.bootstrap,
            confidence=config.report.confidence,
            unit=bootstrap_unit(groups, len(records)),
        )
    )
    write_text_atomic(out_dir / f"{split}_detection_confusion.csv", confusion_csv(errors))
    plot_detection_confusion(errors, plots / f"{split}_detection_confusion.png")
    plot_error_breakdown(errors, plots / f"{split}_errors.png")
    plot_pr_curves(
        report, plots / f"{split}_pr_curves.png", title=f"{split}: precision-recall, IoU 0.5"
    )
    write_detection_predictions(out_dir / f"{split}_predictions", records, task.classes)
    write_samples(
        out_dir,
        split,
        "detection",
        samples.ids(),
        [s.group for s in samples.samples],
        task.classes,
        **detection_arrays(predictions, targets),
    )
    write_json_atomic(out_dir / f"{split}_metrics.json", metrics)
    return metrics


def _write_galleries(
    plots: Path,
    split: str,
    dataset: DetectionDataset,
    ids: list[str],
    records: list[DetectionRecord],
    f1: np.ndarray,
    classes: list[str],
    k: int,
) -> None:
    """The ``k`` images with the best and the worst F1, drawn with their boxes."""
    # an image without boxes and without detections is trivially right: the best are
    # chosen among the images with labelled objects (when there are any)
    labelled = [i for i, sample in enumerate(dataset.samples) if _count(sample.boxes)]
    pool = labelled or list(range(len(ids)))
    best, _ = best_and_worst([(ids[i], float(f1[i])) for i in pool], k)
    _, worst = best_and_worst(list(zip(ids, f1.tolist(), strict=True)), k)
    position = {sample_id: i for i, sample_id in enumerate(ids)}
    for name, chosen in (("best", best), ("worst", worst)):
        items = []
        for sample_id in chosen:
            index = position[sample_id]
            image, truth, _ = dataset.read(index)
            record = records[index]
            items.append(
                DetectionGalleryItem(
                    picture=_overlay(image, truth, record, classes),
                    title=sample_id,
                    score=float(f1[index]),
                    found=len(record.boxes),
                    labelled=len(truth),
                )
            )
        if items:
            write_detection_gallery(
                plots / f"{split}_{name}.png",
                items,
                title=f"{split}: the {len(items)} {name} images by F1 at IoU 0.5",
                classes=classes,
            )


def _count(boxes: np.ndarray | None) -> int:
    return 0 if boxes is None else len(boxes)


def _overlay(
    image: np.ndarray, truth: np.ndarray, record: DetectionRecord, classes: list[str]
) -> np.ndarray:
    rgb = image if image.shape[2] == 3 else np.repeat(image, 3, axis=2)
    drawn = draw_truth_boxes(rgb, truth)
    return draw_detections(drawn, record.boxes, record.labels, record.scores, classes)
