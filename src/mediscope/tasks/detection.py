"""The detection task: image → boxes, scores and classes.

The model returns raw outputs; the loss (label assignment and its parts) is the
task's ``criterion`` for mediscope's detectors, or the network's own for torchvision's.
Both training and validation steps compute the loss, so every detector reports a
validation loss; validation also decodes boxes and accumulates COCO mAP.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mediscope.config.schema import Config
from mediscope.data.datasets import DetectionDataset, ImageDataset, detection_collate
from mediscope.data.samples import SampleSet
from mediscope.data.task_data import DatasetOptions, TaskData
from mediscope.errors import ConfigError
from mediscope.losses.detection import DetectionLoss
from mediscope.losses.segmentation import pixel_class_weights
from mediscope.metrics.detection import DetectionMAP
from mediscope.models import build_model
from mediscope.models.detection.base import Detector
from mediscope.params import check_keywords
from mediscope.tasks.base import BaseTask
from mediscope.tasks.spec import Summary, TaskSpec

#: Score threshold of the boxes validation mAP is computed on (as COCO evaluations do).
EVAL_SCORE_THRESHOLD = 0.001
#: Boxes per image validation mAP keeps.
EVAL_MAX_DETECTIONS = 100
#: Loss parts detectors report (retinanet: cls, obj, box; FCOS adds ctr; Faster R-CNN
#: rpn_box), each logged as ``train/loss_<part>`` and ``val/loss_<part>``.
LOSS_PARTS = ("cls", "obj", "box", "ctr", "rpn_box")


class DetectionTask(BaseTask):
    """Trains a detector; logs its losses and validation mAP, mAP@.5 and mAP@.75."""

    model: Detector
    criterion: Any

    def configure_models(self) -> None:
        cfg = self.config.model
        model = build_model(
            cfg.name,
            task="detection",
            num_classes=len(self.classes),
            in_chans=self.config.data.channels,
            pretrained=cfg.pretrained,
            **cfg.params,
        )
        assert isinstance(model, Detector)
        self.model = model

    def configure_losses(self) -> None:
        loss = self.config.loss
        if loss.name != "DetectionLoss":
            raise ConfigError(
                f"'{loss.name}' is not a detection loss",
                where="loss.name",
                hint="use DetectionLoss and choose its parts in loss.params",
            )
        if not self.model.uses_criterion:
            if loss.params or loss.class_weights is not None:
                raise ConfigError(
                    f"{self.config.model.name} trains with its own losses",
                    where="loss.params",
                    hint="remove loss.params and loss.class_weights for this model",
                )
            self.criterion = None
            return
        params = dict(loss.params)
        fixed = ("num_classes", "class_weights")
        check_keywords(DetectionLoss, params, owner=loss.name, section="loss.params", fixed=fixed)
        try:
            criterion = DetectionLoss(
                num_classes=len(self.classes), class_weights=self.weights(), **params
            )
        except (TypeError, ValueError) as exc:  # a value of the wrong type or range
            raise ConfigError(
                f"{loss.name}: {exc}", where="loss.params", hint="check the values of loss.params"
            ) from None
        self.criterion = criterion
        self.model.score_mode = criterion.score_mode  # type: ignore[assignment]

    def weights(self) -> torch.Tensor | None:
        """Per-class weights from ``loss.class_weights`` (object frequencies)."""
        setting = self.config.loss.class_weights
        if setting is None:
            return None
        if isinstance(setting, str):
            if self.class_counts is None:
                return torch.ones(len(self.classes))
            return pixel_class_weights(self.class_counts, setting)
        return self.listed_class_weights(setting)

    def configure_metrics(self) -> None:
        self.train_metrics = None
        self.val_metrics = DetectionMAP(len(self.classes), prefix="val/")

    epoch_metrics = ("map", "map_50", "map_75")
    main_metric = "map_50"

    @classmethod
    def logged_metrics(cls) -> list[str]:
        names = ["train/loss", "val/loss"]
        for split in ("train", "val"):
            names += [f"{split}/loss_{part}" for part in LOSS_PARTS]
        return names + [f"val/{name}" for name in cls.epoch_metrics]

    def _losses(self, batch: Any) -> tuple[dict[str, torch.Tensor], Any, list[dict[str, Any]]]:
        images, targets = batch
        raw = self.model(images)
        losses = self.model.losses(raw, targets, self.criterion)
        return losses, raw, targets

    def _log_losses(self, split: str, losses: dict[str, torch.Tensor], size: int) -> None:
        for name, value in losses.items():
            key = f"{split}/{name}"
            self.log_mean(key, value, size)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        losses, _, targets = self._losses(batch)
        loss = losses["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the loss is {float(loss)} at epoch {self.current_epoch}, step {batch_idx}"
            )
        self.log("loss", loss, prog_bar=True, logger=False, batch_size=len(targets))
        self._log_losses("train", losses, len(targets))
        return loss

    def on_train_epoch_end(self) -> None:
        pass

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        losses, raw, targets = self._losses(batch)
        self._log_losses("val", losses, len(targets))
        detections = self.model.detect(
            raw,
            score_threshold=EVAL_SCORE_THRESHOLD,
            iou_threshold=self.config.inference.iou_threshold,
            max_detections=EVAL_MAX_DETECTIONS,
        )
        self.val_metrics.update(detections, targets)

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        for key, value in values.items():
            number = float(value)
            # No object in the validation split: mAP is undefined; 0 keeps monitors sane.
            self.log(key, 0.0 if math.isnan(number) else number, prog_bar=key == "val/map_50")
        self.val_metrics.reset()

    def metric_inputs(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("detection metrics take boxes, see validation_step")


def detection_dataset(
    config: Config, samples: SampleSet, *, train: bool, options: DatasetOptions
) -> ImageDataset:
    """Images (cropped around objects while training) and their boxes."""
    return DetectionDataset(
        samples.samples,
        crop_size=config.data.crop_size,
        crop_object_prob=config.data.crop_object_prob,
        train=train,
        **options.kwargs(),
    )


SPEC = TaskSpec(
    name="detection",
    module=DetectionTask,
    data=TaskData(dataset=detection_dataset, collate=detection_collate, boxes=True),
    default_loss="DetectionLoss",
    default_monitor="val/map_50",
    evaluator="mediscope.evaluation.detection:evaluate_detection",
    predictor="mediscope.inference.predict_files:predict_boxes",
    summary=Summary(
        terminal=("map", "map_50", "map_75", "mar_100", "count_mae", "count_mre"),
        per_class=(("AP@.5", "ap50/"), ("recall@.5", "recall/"), ("objects", "gt/")),
        ranked=("map_50", "map", "map_75", "mar_100"),
        ranked_more=(
            "map_small",
            "map_medium",
            "map_large",
            "mar_1",
            "mar_10",
            "mar_small",
            "mar_medium",
            "mar_large",
            "count_mae",
            "count_mre",
        ),
        ranked_per_class=("ap", "ap50", "ap75", "ar", "recall"),
        files=(
            ("metrics", "metrics.csv (per epoch), val_metrics.json, tensorboard/"),
            (
                "plots",
                "plots/ (training curves, val_pr_curves.png, val_best.png and val_worst.png "
                "galleries)",
            ),
            ("boxes", "val_predictions/ (predictions.csv / .json, labels/, counts.csv)"),
            ("errors", "val_detection_confusion.csv, plots/val_errors.png"),
        ),
        folds=("map", "map_50", "map_75"),
        report=("map", "map_50", "map_75"),
        interval_metric="ap50",
        plots=(
            ("pr_curves.png", "Precision-recall curves per class at IoU 0.5."),
            (
                "detection_confusion.png",
                "Detection confusion matrix at the counting threshold (IoU 0.5): true class "
                "or background (a detection of nothing) against predicted class or missed.",
            ),
            (
                "errors.png",
                "What the wrong detections are (TIDE's kinds) and the objects missed, at the "
                "counting threshold.",
            ),
            ("best.png", "The images with the best F1 at the counting threshold."),
            ("worst.png", "The images with the worst F1 at the counting threshold."),
        ),
    ),
    description="image -> boxes, scores and classes",
)
