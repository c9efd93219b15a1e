"""The classification task: image → class."""

from __future__ import annotations

import torch

from mediscope.config.schema import Config
from mediscope.data.datasets import ClassificationDataset, ImageDataset
from mediscope.data.samples import SampleSet
from mediscope.data.task_data import DatasetOptions, TaskData
from mediscope.losses.classification import build_classification_loss
from mediscope.losses.segmentation import pixel_class_weights
from mediscope.metrics.classification import EPOCH_METRICS, epoch_metrics
from mediscope.models import build_model
from mediscope.tasks.base import BaseTask
from mediscope.tasks.spec import Summary, TaskSpec


def build_classifier(config: Config, outputs: int) -> torch.nn.Module:
    """The image classifier of ``config.model`` with ``outputs`` logits (one per class,
    or one per label of multi-label data)."""
    cfg = config.model
    return build_model(
        cfg.name,
        task="classification",
        num_classes=outputs,
        in_chans=config.data.channels,
        pretrained=cfg.pretrained,
        **cfg.params,
    )


class ClassificationTask(BaseTask):
    """Trains a classifier with any registered loss; logs per-epoch metrics."""

    def configure_models(self) -> None:
        self.model = build_classifier(self.config, len(self.classes))

    def configure_losses(self) -> None:
        assert self.config.loss.name is not None
        self.criterion = build_classification_loss(
            self.config.loss.name, params=self.config.loss.params, class_weights=self.weights()
        )

    def weights(self) -> torch.Tensor | None:
        """Per-class loss weights from ``loss.class_weights``."""
        setting = self.config.loss.class_weights
        n = len(self.classes)
        if setting is None:
            return None
        if setting == "balanced":
            if self.class_counts is None:
                return None  # evaluation only: the loss is not used for metrics
            counts = torch.tensor(self.class_counts, dtype=torch.float32)
            # sklearn's "balanced": n_samples / (n_classes * count); absent classes get 0
            return torch.where(counts > 0, counts.sum() / (n * counts.clamp(min=1)), 0.0)
        if isinstance(setting, str):  # inverse, inverse_sqrt: of the sample frequencies
            if self.class_counts is None:
                return torch.ones(n)
            return pixel_class_weights(self.class_counts, setting)
        return self.listed_class_weights(setting)

    def configure_metrics(self) -> None:
        n = len(self.classes)
        self.train_metrics = epoch_metrics(n, prefix="train/")
        self.val_metrics = epoch_metrics(n, prefix="val/")

    #: What the task logs per epoch besides the loss; the first is shown in progress.
    epoch_metrics = EPOCH_METRICS
    main_metric = "f1_macro"

    def metric_inputs(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities, what the epoch metrics (AUROC included) take."""
        return logits.softmax(dim=1)

    @torch.inference_mode()
    def predict_probs(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities of a batch."""
        probs: torch.Tensor = self.model(images).softmax(dim=1)
        return probs


def classification_dataset(
    config: Config, samples: SampleSet, *, train: bool, options: DatasetOptions
) -> ImageDataset:
    """Images and their class indices."""
    return ClassificationDataset(samples.samples, **options.kwargs())


SPEC = TaskSpec(
    name="classification",
    module=ClassificationTask,
    data=TaskData(
        dataset=classification_dataset,
        one_label_per_image=True,
        one_class_hint="a classifier needs at least two classes: add images of another "
        "class (a second class folder, or rows with another label)",
    ),
    default_loss="CrossEntropyLoss",
    default_monitor="val/f1_macro",
    evaluator="mediscope.evaluation.classification:evaluate_classification",
    predictor="mediscope.inference.predict_files:predict_labels",
    summary=Summary(
        terminal=("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "auroc_macro"),
        per_class=(
            ("f1", "f1/"),
            ("sensitivity", "recall/"),
            ("specificity", "specificity/"),
            ("threshold", "op_threshold/"),
            ("sens. at threshold", "op_sensitivity/"),
            ("spec. at threshold", "op_specificity/"),
            ("Youden threshold", "youden_threshold/"),
            ("sens. at Youden", "youden_sensitivity/"),
            ("spec. at Youden", "youden_specificity/"),
        ),
        ranked=("f1_macro", "accuracy", "balanced_accuracy", "f1_weighted", "auroc_macro"),
        ranked_more=("ece", "ece_uncalibrated"),
        ranked_per_class=(
            "precision",
            "recall",
            "specificity",
            "f1",
            "op_sensitivity",
            "op_specificity",
            "youden_sensitivity",
            "youden_specificity",
        ),
        files=(
            ("metrics", "metrics.csv (per epoch), val_metrics.json, tensorboard/"),
            (
                "plots",
                "plots/ (training curves, confusion matrix, ROC, PR, reliability, Grad-CAM), "
                "val_results.npz",
            ),
        ),
        folds=("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "auroc_macro"),
        report=("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "auroc_macro", "ece"),
        interval_metric="f1",
        plots=(
            ("confusion_matrix.png", "Confusion matrix: counts and rows normalised to 1."),
            ("roc.png", "ROC curves, one class against the rest."),
            ("pr.png", "Precision-recall curves, one class against the rest."),
            (
                "reliability.png",
                "Reliability diagram: accuracy against the top-1 probability; the expected "
                "calibration error (ECE) is the gap weighted by the share of images.",
            ),
            (
                "calibration.png",
                "Temperature scaling (report.calibrate): reliability before and after, the "
                "temperature fitted on the validation split.",
            ),
            (
                "gradcam.png",
                "Grad-CAM heatmaps of the predicted class on a sample of images, mistakes "
                "first: where the model looked.",
            ),
        ),
    ),
    description="image -> class",
)
