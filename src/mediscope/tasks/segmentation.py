"""The segmentation task: image → per-pixel class mask."""

from __future__ import annotations

import torch

from mediscope.config.schema import Config
from mediscope.data.datasets import ImageDataset, SegmentationDataset
from mediscope.data.masks import count_mask_pixels, mask_decoder
from mediscope.data.samples import SampleSet
from mediscope.data.task_data import DatasetOptions, TaskData
from mediscope.losses.segmentation import build_segmentation_loss, pixel_class_weights
from mediscope.metrics.segmentation import SegmentationEpochMetrics
from mediscope.models import build_model
from mediscope.tasks.base import BaseTask
from mediscope.tasks.spec import Summary, TaskSpec

#: What the task logs per epoch besides the loss (with a ``train/`` or ``val/`` prefix).
EPOCH_METRICS = ("dice_mean", "iou_mean", "pixel_accuracy")


class SegmentationTask(BaseTask):
    """Trains a segmenter with any segmentation loss; logs Dice, IoU (means over the
    foreground classes) and pixel accuracy."""

    def configure_models(self) -> None:
        cfg = self.config.model
        params = dict(cfg.params)
        if cfg.encoder is not None:
            params["encoder"] = cfg.encoder
        self.model = build_model(
            cfg.name,
            task="segmentation",
            num_classes=len(self.classes),
            in_chans=self.config.data.channels,
            pretrained=cfg.pretrained,
            **params,
        )

    def configure_losses(self) -> None:
        assert self.config.loss.name is not None
        self.criterion = build_segmentation_loss(
            self.config.loss.name,
            params=self.config.loss.params,
            class_weights=self.weights(),
            ignore_index=self.config.data.ignore_index,
            num_classes=len(self.classes),
        )

    def weights(self) -> torch.Tensor | None:
        """Per-class loss weights from ``loss.class_weights`` (pixel frequencies)."""
        setting = self.config.loss.class_weights
        n = len(self.classes)
        if setting is None:
            return None
        if isinstance(setting, str):
            if self.class_counts is None:
                # Evaluation of an old checkpoint: weights do not change the metrics.
                return torch.ones(n)
            return pixel_class_weights(self.class_counts, setting)
        return self.listed_class_weights(setting)

    def configure_metrics(self) -> None:
        n, ignore = len(self.classes), self.config.data.ignore_index
        self.train_metrics = SegmentationEpochMetrics(n, ignore_index=ignore, prefix="train/")
        self.val_metrics = SegmentationEpochMetrics(n, ignore_index=ignore, prefix="val/")

    epoch_metrics = EPOCH_METRICS
    main_metric = "dice_mean"

    def metric_inputs(self, logits: torch.Tensor) -> torch.Tensor:
        """Predicted class per pixel, what the confusion-matrix metrics take."""
        return logits.argmax(dim=1)

    @torch.inference_mode()
    def predict_probs(self, images: torch.Tensor) -> torch.Tensor:
        """Per-pixel class probabilities ``(B, C, H, W)`` of a batch."""
        probs: torch.Tensor = self.model(images).softmax(dim=1)
        return probs


def segmentation_dataset(
    config: Config, samples: SampleSet, *, train: bool, options: DatasetOptions
) -> ImageDataset:
    """Images and their class-index masks."""
    decode = mask_decoder(config, samples.classes)
    return SegmentationDataset(samples.samples, decode_mask=decode, **options.kwargs())


def pixel_class_counts(config: Config, samples: SampleSet) -> list[int] | None:
    """Pixels per class of the training masks, read only for a frequency-weighted loss."""
    if not isinstance(config.loss.class_weights, str):
        return None
    decode = mask_decoder(config, samples.classes)
    masks = (decode(s.mask) for s in samples.samples if s.mask is not None)
    counts = count_mask_pixels(masks, len(samples.classes), config.data.ignore_index)
    return [int(n) for n in counts]


SPEC = TaskSpec(
    name="segmentation",
    module=SegmentationTask,
    data=TaskData(
        dataset=segmentation_dataset,
        train_counts=pixel_class_counts,
        one_class_hint="masks need at least two classes, the background first, e.g. "
        "data.classes: [background, lesion]",
    ),
    default_loss="DiceCELoss",
    default_monitor="val/dice_mean",
    evaluator="mediscope.evaluation.segmentation:evaluate_segmentation",
    predictor="mediscope.inference.predict_files:predict_masks",
    summary=Summary(
        terminal=("dice_mean", "iou_mean", "pixel_accuracy", "hd95_mean", "nsd_mean", "object_f1"),
        per_class=(("dice", "dice/"), ("iou", "iou/")),
        ranked=("dice_mean", "iou_mean", "pixel_accuracy"),
        ranked_more=(
            "nsd_mean",
            "hd95_mean",
            "assd_mean",
            "object_f1",
            "object_count_mae",
            "dice_mean_with_background",
            "iou_mean_with_background",
        ),
        ranked_per_class=("dice", "iou", "nsd", "hd95"),
        files=(
            (
                "metrics",
                "metrics.csv (per epoch), val_metrics.json, val_per_sample.csv, tensorboard/",
            ),
            ("plots", "plots/ (training curves, val_best.png and val_worst.png galleries)"),
        ),
        folds=("dice_mean", "iou_mean", "pixel_accuracy"),
        report=("dice_mean", "iou_mean", "pixel_accuracy", "dice_mean_with_background"),
        interval_metric="dice",
        plots=(
            ("best.png", "The images with the best Dice: image, ground truth, prediction."),
            ("worst.png", "The images with the worst Dice: image, ground truth, prediction."),
        ),
    ),
    description="image -> class of every pixel",
)
