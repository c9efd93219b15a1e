"""Evaluating a classification checkpoint on a split.

Writes ``<split>_metrics.json`` (the metrics with their bootstrap intervals), the
confusion matrix (CSV, PNG), ROC, precision-recall and reliability plots,
``<split>_results.npz`` (labels, probabilities, paths) and Grad-CAM heatmaps of a
sample of images (``plots/<split>_gradcam.png``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from mediscope.engine.checkpoints import read_checkpoint
from mediscope.evaluation.per_sample import write_samples
from mediscope.files import write_json_atomic
from mediscope.metrics.bootstrap import (
    bootstrap_unit,
    classification_intervals,
    group_codes,
    interval_keys,
)
from mediscope.metrics.classification import classification_report
from mediscope.models.cam import grad_cam
from mediscope.reports.classification import write_classification_outputs
from mediscope.reports.gradcam import CamItem, choose_images, write_gradcam_grid
from mediscope.tasks.spec import EvaluationInputs

log = logging.getLogger(__name__)


def evaluate_classification(inputs: EvaluationInputs, *, out_dir: Path) -> dict[str, float]:
    """Evaluates ``checkpoint`` on ``split`` (val or test) and writes its outputs.

    Returns:
        The flat metrics written to ``<split>_metrics.json``.
    """
    from mediscope.engine.restore import predict_probs

    config, checkpoint, split = inputs.config, inputs.checkpoint, inputs.split
    task, samples, dataset = inputs.task, inputs.samples, inputs.dataset
    loader = inputs.datamodule.loader(dataset, train=False)
    labels, probs = predict_probs(task, loader)
    classes = task.classes
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
