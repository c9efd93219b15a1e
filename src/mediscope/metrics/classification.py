"""Classification metrics: per-epoch collections and the final per-class evaluation."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassF1Score,
    MulticlassRecall,
)

from mediscope.metrics.calibration import expected_calibration_error

#: The names the task logs per epoch (with a ``train/`` or ``val/`` prefix).
EPOCH_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "auroc_macro")


def epoch_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """Accuracy, balanced accuracy, macro / weighted F1 and macro AUROC, per epoch."""
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_classes, average="micro"),
            "balanced_accuracy": MulticlassRecall(num_classes, average="macro"),
            "f1_macro": MulticlassF1Score(num_classes, average="macro"),
            "f1_weighted": MulticlassF1Score(num_classes, average="weighted"),
            "auroc_macro": MulticlassAUROC(num_classes, average="macro"),
        },
        prefix=prefix,
    )


def classification_report(
    labels: np.ndarray, probs: np.ndarray, classes: list[str]
) -> dict[str, float]:
    """Flat metrics of predictions ``probs`` (N x C) against ``labels`` (N,).

    Keys: ``accuracy``, ``balanced_accuracy``, ``f1_macro``, ``f1_weighted``,
    ``auroc_macro``, ``ece`` (expected calibration error of the top-1 probability, 15
    bins) and per class ``precision/<c>``, ``recall/<c>`` (sensitivity),
    ``specificity/<c>``, ``f1/<c>``, ``support/<c>``. Classes absent from ``labels``
    get NaN recall and are left out of the macro averages, as sklearn does.
    """
    n = len(classes)
    preds = probs.argmax(axis=1)
    cm = confusion_matrix(labels, preds, labels=list(range(n)))
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    negatives = cm.sum() - support
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, np.nan)
        specificity = np.where(negatives > 0, (negatives - (predicted - tp)) / negatives, np.nan)
    present = support > 0
    out: dict[str, float] = {
        "n_samples": float(len(labels)),
        "accuracy": float(tp.sum() / max(1, len(labels))),
        "balanced_accuracy": float(np.nanmean(recall[present])) if present.any() else 0.0,
        "f1_macro": float(
            f1_score(
                labels, preds, labels=np.flatnonzero(present), average="macro", zero_division=0
            )
        ),
        "f1_weighted": float(f1_score(labels, preds, average="weighted", zero_division=0)),
        "auroc_macro": _auroc(labels, probs, present),
        "ece": expected_calibration_error(labels, probs),
    }
    per_class_f1 = f1_score(labels, preds, labels=list(range(n)), average=None, zero_division=0)
    for i, name in enumerate(classes):
        out[f"precision/{name}"] = float(precision[i])
        out[f"recall/{name}"] = float(recall[i])
        out[f"specificity/{name}"] = float(specificity[i])
        out[f"f1/{name}"] = float(per_class_f1[i])
        out[f"support/{name}"] = float(support[i])
    return out


def _auroc(labels: np.ndarray, probs: np.ndarray, present: np.ndarray) -> float:
    """Macro one-vs-rest AUROC over the classes present (NaN if fewer than two)."""
    if present.sum() < 2:
        return float("nan")
    scores = []
    for c in np.flatnonzero(present):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores.append(roc_auc_score(labels == c, probs[:, c]))
    return float(np.mean(scores))
