"""The segmentation task: image → per-pixel class mask."""

from __future__ import annotations

from typing import Any

import torch

from mediscope.errors import ConfigError
from mediscope.losses.segmentation import build_segmentation_loss, pixel_class_weights
from mediscope.metrics.segmentation import SegmentationEpochMetrics
from mediscope.models import build_model
from mediscope.tasks.base import BaseTask

#: What the task logs per epoch besides the loss (with a ``train/`` or ``val/`` prefix).
EPOCH_METRICS = ("dice_mean", "iou_mean", "pixel_accuracy")


class SegmentationTask(BaseTask):
    """Trains a segmenter with any segmentation loss; logs Dice, IoU and pixel accuracy."""

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
        if len(setting) != n:
            raise ConfigError(
                f"{len(setting)} class weights for {n} classes",
                where="loss.class_weights",
                hint=f"give one weight per class: {', '.join(self.classes)}",
            )
        return torch.tensor(setting, dtype=torch.float32)

    def configure_metrics(self) -> None:
        n, ignore = len(self.classes), self.config.data.ignore_index
        self.train_metrics = SegmentationEpochMetrics(n, ignore_index=ignore, prefix="train/")
        self.val_metrics = SegmentationEpochMetrics(n, ignore_index=ignore, prefix="val/")

    @property
    def metric_names(self) -> list[str]:
        return [
            f"{split}/{name}" for split in ("train", "val") for name in ("loss", *EPOCH_METRICS)
        ]

    def _step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, masks = batch
        logits = self.model(images)
        return self.criterion(logits, masks), logits, masks

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, logits, masks = self._step(batch)
        self.train_metrics.update(logits.detach().argmax(dim=1), masks)
        size = masks.shape[0]
        self.log("loss", loss, prog_bar=True, logger=False, batch_size=size)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=size)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_dict(self.train_metrics.compute())
        self.train_metrics.reset()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, logits, masks = self._step(batch)
        self.val_metrics.update(logits.argmax(dim=1), masks)
        self.log("val/loss", loss, prog_bar=True, on_epoch=True, batch_size=masks.shape[0])

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        main = values.pop("val/dice_mean")
        self.log_dict(values)
        self.log("val/dice_mean", main, prog_bar=True)
        self.val_metrics.reset()

    @torch.inference_mode()
    def predict_probs(self, images: torch.Tensor) -> torch.Tensor:
        """Per-pixel class probabilities ``(B, C, H, W)`` of a batch."""
        probs: torch.Tensor = self.model(images).softmax(dim=1)
        return probs
