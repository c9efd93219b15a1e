"""Evaluating a classification checkpoint on a split.

Writes ``<split>_metrics.json`` (the metrics with their bootstrap intervals), the
confusion matrix (CSV, PNG), ROC, precision-recall and reliability plots,
``<split>_results.npz`` (labels, probabilities, paths) and Grad-CAM heatmaps of a
sample of images (``plots/<split>_gradcam.png``). With ``report.calibrate`` or
``report.operating_point`` the probabilities are calibrated and thresholds chosen on the
validation split (:mod:`mediscope.evaluation.calibration`); the reliability diagrams
before and after go to ``plots/<split>_calibration.png``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from mediscope.engine.checkpoints import read_checkpoint
from mediscope.evaluation.calibration import calibration_for, calibration_metrics
from mediscope.evaluation.per_sample import write_samples
from mediscope.files import write_json_atomic
from mediscope.metrics.bootstrap import (
    bootstrap_unit,
    classification_intervals,
    group_codes,
    interval_keys,
)
from mediscope.metrics.classification import classification_report
from mediscope.metrics.operating_points import one_hot
from mediscope.models.cam import grad_cam
from mediscope.reports.classification import plot_calibration, write_classification_outputs
from mediscope.reports.gradcam import CamItem, choose_images, write_gradcam_grid
from mediscope.tasks.spec import EvaluationInputs

log = logging.getLogger(__name__)


def evaluate_classification(inputs: EvaluationInputs, *, out_dir: Path) -> dict[str, float]:
    """Evaluates ``checkpoint`` on ``split`` (val or test) and writes its outputs.

    Returns:
        The flat metrics written to ``<split>_metrics.json``.
    """
    from mediscope.engine.restore import evaluation_inputs, predict_probs

    config, checkpoint, split = inputs.config, inputs.checkpoint, inputs.split
    task, samples, dataset = inputs.task, inputs.samples, inputs.dataset
    loader = inputs.datamodule.loader(dataset, train=False)
    labels, raw = predict_probs(task, loader)
    classes = task.classes
    targets = one_hot(labels, len(classes))

    def validation() -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        val = evaluation_inputs(config, checkpoint, split="val")
        val_labels, val_probs = predict_probs(
            val.task, val.datamodule.loader(val.dataset, train=False)
        )
        return one_hot(val_labels, len(classes)), val_probs, val_labels

    calibration = calibration_for(
        config, out_dir, split, targets, raw, classes, labels=labels, validation=validation
    )
    probs = calibration.apply(raw) if calibration is not None else raw
    metrics = classification_report(labels, probs, classes)
    metrics["epoch"] = float(read_checkpoint(checkpoint).get("epoch", -1))
    report = config.report
    groups = group_codes([s.group for s in samples.samples])
    intervals = classification_intervals(
        labels,
        probs,
        classes,
        resamples=report.bootstrap,
        confidence=report.confidence,
        seed=config.seed,
        groups=groups,
    )
    metrics.update(
        interval_keys(
            intervals,
            resamples=report.bootstrap,
            confidence=report.confidence,
            unit=bootstrap_unit(groups, len(labels)),
        )
    )
    if calibration is not None:
        metrics.update(
            calibration_metrics(
                config, calibration, targets, raw, classes, labels=labels, groups=groups
            )
        )
    write_classification_outputs(out_dir, split, labels, probs, samples.ids(), classes)
    write_samples(
        out_dir,
        split,
        "classification",
        samples.ids(),
        [s.group for s in samples.samples],
        classes,
        labels=np.asarray(labels, dtype=np.int64),
        probs=np.asarray(probs, dtype=np.float64),
    )
    if calibration is not None and config.report.calibrate != "none":
        plot_calibration(
            labels,
            raw,
            probs,
            out_dir / "plots" / f"{split}_calibration.png",
            title=f"{split}: temperature T = {calibration.temperature:.3f} (fitted on val)",
        )
    _write_gradcam(
        out_dir,
        split,
        task.model,
        dataset,
        labels,
        probs,
        samples.ids(),
        classes,
        count=report.gradcam,
        mean=inputs.mean,
        std=inputs.std,
    )
    write_json_atomic(out_dir / f"{split}_metrics.json", metrics)
    return metrics


def _write_gradcam(
    out_dir: Path,
    split: str,
    model: torch.nn.Module,
    dataset: object,
    labels: np.ndarray,
    probs: np.ndarray,
    ids: list[str],
    classes: list[str],
    *,
    count: int,
    mean: list[float],
    std: list[float],
) -> Path | None:
    preds = probs.argmax(axis=1)
    chosen = choose_images(labels, preds, count)
    if not chosen:
        return None
    inputs = torch.stack([dataset[i][0] for i in chosen])  # type: ignore[index]
    device = next(model.parameters()).device
    try:
        maps = grad_cam(model, inputs.to(device), [int(preds[i]) for i in chosen])
    except ValueError as exc:  # a model without spatial features: no heatmaps
        log.warning("no Grad-CAM heatmaps: %s", exc)
        return None
    m = np.asarray(mean, dtype=np.float32)[:, None, None]
    s = np.asarray(std, dtype=np.float32)[:, None, None]
    items = []
    for k, i in enumerate(chosen):
        image = inputs[k].cpu().numpy() * s + m
        image = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image[:3]
        items.append(
            CamItem(
                image=np.transpose(image, (1, 2, 0)),
                heatmap=maps[k],
                title=ids[i],
                truth=int(labels[i]),
                pred=int(preds[i]),
                prob=float(probs[i, preds[i]]),
            )
        )
    return write_gradcam_grid(
        out_dir / "plots" / f"{split}_gradcam.png",
        items,
        classes,
        title=f"{split}: Grad-CAM of the predicted class (red: wrong predictions)",
    )
