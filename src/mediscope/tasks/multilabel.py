"""The multi-label classification task: image -> any number of labels (sigmoid outputs).

A task of its own rather than a flag on ``classification``: everything the spec holds
differs (targets are 0/1 vectors, the loss is a per-label BCE or focal loss, outputs are
independent sigmoids, the metrics are per-label AUROC, AP and F1 at chosen thresholds,
there is no confusion matrix or top-1 class), so one spec avoids a branch in each of
them. The network is any classifier (``build_model(..., task="classification")``) with
one output per label.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MultilabelAUROC,
    MultilabelExactMatch,
    MultilabelF1Score,
)

from mediscope.config.schema import Config
from mediscope.data.datasets import ImageDataset, MultiLabelDataset
from mediscope.data.samples import SampleSet
from mediscope.data.task_data import DatasetOptions, TaskData
from mediscope.errors import ConfigError
from mediscope.losses.multilabel import build_multilabel_loss
from mediscope.tasks.base import BaseTask
from mediscope.tasks.classification import build_classifier
from mediscope.tasks.spec import Summary, TaskSpec

#: The names the task logs per epoch (with a ``train/`` or ``val/`` prefix).
EPOCH_METRICS = ("auroc_macro", "f1_macro", "f1_micro", "exact_match")


def multilabel_epoch_metrics(num_labels: int, prefix: str) -> MetricCollection:
    """Macro AUROC, macro / micro F1 and exact match at 0.5, per epoch."""
    return MetricCollection(
        {
            "auroc_macro": MultilabelAUROC(num_labels, average="macro"),
            "f1_macro": MultilabelF1Score(num_labels, average="macro"),
            "f1_micro": MultilabelF1Score(num_labels, average="micro"),
            "exact_match": MultilabelExactMatch(num_labels),
        },
        prefix=prefix,
    )


class MultiLabelTask(BaseTask):
    """Trains a multi-label classifier: one sigmoid per label, BCE or focal loss."""

    def configure_models(self) -> None:
        self.model = build_classifier(self.config, len(self.classes))

    def configure_losses(self) -> None:
        assert self.config.loss.name is not None
        self.criterion = build_multilabel_loss(
            self.config.loss.name, params=self.config.loss.params, pos_weight=self.weights()
        )

    def weights(self) -> torch.Tensor | None:
        """Per-label weights of the positives (``pos_weight``), as ``loss.class_weights``
        lists them; the named settings (balanced, ...) are for single-label data."""
        setting = self.config.loss.class_weights
        if setting is None:
            return None
        if isinstance(setting, str):
            raise ConfigError(
                f"class_weights: {setting} is for single-label classification",
                where="loss.class_weights",
                hint="give one positive weight per label (e.g. negatives / positives)",
            )
        return self.listed_class_weights(setting)

    def configure_metrics(self) -> None:
        n = len(self.classes)
        self.train_metrics = multilabel_epoch_metrics(n, prefix="train/")
        self.val_metrics = multilabel_epoch_metrics(n, prefix="val/")

    epoch_metrics = EPOCH_METRICS
    main_metric = "auroc_macro"

    def metric_inputs(self, logits: torch.Tensor) -> torch.Tensor:
        """Label probabilities (sigmoid)."""
        return logits.sigmoid()

    def _step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, targets = batch
        logits = self.model(images)
        return self.criterion(logits, targets.float()), logits, targets.long()

    @torch.inference_mode()
    def predict_probs(self, images: torch.Tensor) -> torch.Tensor:
        """Label probabilities of a batch."""
        probs: torch.Tensor = self.model(images).sigmoid()
        return probs


def multilabel_dataset(
    config: Config, samples: SampleSet, *, train: bool, options: DatasetOptions
) -> ImageDataset:
    """Images and their 0/1 label vectors."""
    return MultiLabelDataset(samples.samples, num_labels=len(samples.classes), **options.kwargs())


SPEC = TaskSpec(
    name="multilabel",
    module=MultiLabelTask,
    data=TaskData(
        dataset=multilabel_dataset,
        one_label_per_image=False,
        one_class_hint=None,
    ),
    default_loss="BCEWithLogitsLoss",
    default_monitor="val/auroc_macro",
    evaluator="mediscope.evaluation.multilabel:evaluate_multilabel",
    predictor="mediscope.inference.predict_files:predict_multilabel",
    summary=Summary(
        terminal=("auroc_macro", "ap_macro", "f1_macro", "f1_micro", "exact_match"),
        per_class=(
            ("AUROC", "auroc/"),
            ("F1", "f1/"),
            ("sensitivity", "recall/"),
            ("specificity", "specificity/"),
            ("threshold", "threshold/"),
        ),
        ranked=("auroc_macro", "ap_macro", "f1_macro", "f1_micro", "exact_match"),
        ranked_more=("ece", "ece_uncalibrated"),
        ranked_per_class=("auroc", "ap", "f1", "recall", "specificity"),
        files=(
            ("metrics", "metrics.csv (per epoch), val_metrics.json, tensorboard/"),
            ("plots", "plots/ (training curves, ROC and PR per label), val_results.npz"),
        ),
        folds=("auroc_macro", "ap_macro", "f1_macro", "f1_micro", "exact_match"),
        report=("auroc_macro", "ap_macro", "f1_macro", "f1_micro", "exact_match", "ece"),
        interval_metric="auroc",
        plots=(
            ("roc.png", "ROC curves, one per label."),
            ("pr.png", "Precision-recall curves, one per label."),
            (
                "calibration.png",
                "Temperature scaling (report.calibrate): reliability of the label "
                "probabilities before and after.",
            ),
        ),
    ),
    description="image -> any number of labels (multi-label, sigmoid outputs)",
    models_of="classification",
)
