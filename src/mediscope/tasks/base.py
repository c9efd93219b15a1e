"""BaseTask: the LightningModule every task builds on.

``__init__`` calls ``configure_models``, ``configure_losses`` and ``configure_metrics``;
a task implements those and its steps. Optimizers, schedulers, backbone freezing and
what a checkpoint carries (the resolved config and class names) live here, once.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from mediscope import __version__
from mediscope.config.loader import locate
from mediscope.config.schema import Config, metric_mode
from mediscope.errors import ConfigError
from mediscope.metrics.means import WeightedMean
from mediscope.models.freeze import apply_freeze
from mediscope.optim import build_optimizer, build_scheduler, scheduler_length_key

CHECKPOINT_KEY = "mediscope"


class BaseTask(L.LightningModule):
    """A task over a config and its class names.

    Args:
        config: The validated config (tasks are the one place that maps config to
            typed constructors of models and losses).
        classes: Class names in index order.
        class_counts: Training samples per class (for ``loss.class_weights: balanced``).
        normalization: The input mean and std, stored in checkpoints for prediction.
    """

    model: nn.Module
    criterion: nn.Module
    train_metrics: Any
    val_metrics: Any

    def __init__(
        self,
        *,
        config: Config,
        classes: list[str],
        class_counts: list[int] | None = None,
        normalization: tuple[list[float], list[float]] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.classes = list(classes)
        self.class_counts = class_counts
        self.normalization = normalization
        try:
            self.configure_models()
            self.configure_losses()
        except ConfigError as exc:  # builders name the key; the config knows its line
            raise locate(exc, config) from None
        self.epoch_means = nn.ModuleDict()  # of log_mean; holds no checkpointed state
        if config.model.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.configure_metrics()

    def configure_models(self) -> None:
        """Builds ``self.model``."""
        raise NotImplementedError

    def configure_losses(self) -> None:
        """Builds ``self.criterion``."""
        raise NotImplementedError

    def configure_metrics(self) -> None:
        """Builds the metric collections."""
        raise NotImplementedError

    #: Metric names logged per epoch besides the loss (``train/`` and ``val/`` prefixed).
    epoch_metrics: tuple[str, ...] = ()
    #: The one of them shown in the progress line.
    main_metric = ""

    @classmethod
    def logged_metrics(cls) -> list[str]:
        """Everything this task logs per epoch (what monitors may name)."""
        names = ("loss", *cls.epoch_metrics)
        return [f"{split}/{name}" for split in ("train", "val") for name in names]

    @property
    def metric_names(self) -> list[str]:
        """Everything this task logs per epoch (for monitors)."""
        return self.logged_metrics()

    def metric_inputs(self, logits: torch.Tensor) -> torch.Tensor:
        """What the epoch metrics are updated with, from the model's logits."""
        raise NotImplementedError

    # -- steps: models return predictions, the task computes the loss ------------------
    def _step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, targets = batch
        logits = self.model(images)
        return self.criterion(logits, targets), logits, targets

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, logits, targets = self._step(batch)
        self.train_metrics.update(self.metric_inputs(logits.detach()), targets)
        size = targets.shape[0]
        self.log("loss", loss, prog_bar=True, logger=False, batch_size=size)
        self.log_mean("train/loss", loss, size)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_dict(self.train_metrics.compute())
        self.train_metrics.reset()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, logits, targets = self._step(batch)
        self.val_metrics.update(self.metric_inputs(logits), targets)
        self.log_mean("val/loss", loss, targets.shape[0], prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        key = f"val/{self.main_metric}"
        main = values.pop(key)
        self.log_dict(values)
        self.log(key, main, prog_bar=True)
        self.val_metrics.reset()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The batch's images in the channels-last layout when ``model.channels_last``."""
        if not self.config.model.channels_last:
            return batch
        if isinstance(batch, list | tuple) and batch and isinstance(batch[0], torch.Tensor):
            images = batch[0]
            if images.ndim == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            return (
                type(batch)([images, *batch[1:]])
                if isinstance(batch, list)
                else (
                    images,
                    *batch[1:],
                )
            )
        return batch

    def log_mean(self, key: str, value: torch.Tensor, size: int, *, prog_bar: bool = False) -> None:
        """Logs the epoch's mean of ``value`` weighted by batch ``size``, over the batches
        of every process under DDP (its sums are added over processes: Lightning's
        own ``sync_dist`` mean rounds the summed batch sizes on gloo)."""
        name = key.replace("/", "__")
        if name not in self.epoch_means:
            self.epoch_means[name] = WeightedMean().to(self.device)
        metric = self.epoch_means[name]
        assert isinstance(metric, WeightedMean)
        metric.update(value, size)
        self.log(
            key,
            metric,
            on_step=False,
            on_epoch=True,
            prog_bar=prog_bar,
            metric_attribute=f"epoch_means.{name}",
        )

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)

    def listed_class_weights(self, setting: list[float]) -> torch.Tensor:
        """``loss.class_weights`` given as a list: one number per class."""
        if len(setting) != len(self.classes):
            raise ConfigError(
                f"{len(setting)} class weights for {len(self.classes)} classes",
                where="loss.class_weights",
                hint=f"give one weight per class: {', '.join(self.classes)}",
            )
        return torch.tensor(setting, dtype=torch.float32)

    # -- freezing -------------------------------------------------------------------
    def frozen_now(self) -> bool:
        """Whether the backbone is frozen in the current epoch."""
        freeze, until = self.config.model.freeze, self.config.model.unfreeze_epoch
        if freeze in ("none", 0):
            return False
        return until is None or self.current_epoch < until

    def on_train_epoch_start(self) -> None:
        # A function of the epoch only, so a resumed run freezes exactly as the first.
        apply_freeze(self.model, self.config.model.freeze if self.frozen_now() else "none")
        if self.trainer.optimizers:
            lr = self.trainer.optimizers[0].param_groups[0]["lr"]
            self.log("train/lr", float(lr), on_step=False, on_epoch=True)

    # -- optimisation ---------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        opt_cfg, sched_cfg = self.config.optimizer, self.config.scheduler
        optimizer = build_optimizer(
            opt_cfg.name,
            self.model.parameters(),
            lr=opt_cfg.lr,
            weight_decay=opt_cfg.weight_decay,
            extra=opt_cfg.params,
        )
        if sched_cfg.name is None:
            return optimizer
        params = dict(sched_cfg.params)
        monitor = sched_cfg.monitor or "val/loss"
        if sched_cfg.name == "ReduceLROnPlateau":
            # A metric that should grow (Dice, F1) needs mode max, a loss mode min.
            params.setdefault("mode", metric_mode(monitor))
        scheduler = build_scheduler(
            sched_cfg.name,
            optimizer,
            params=params,
            length=self.schedule_length(),
            warmup=self.warmup_length(),
            warmup_start_factor=sched_cfg.warmup_start_factor,
        )
        config: dict[str, Any] = {"scheduler": scheduler, "interval": sched_cfg.interval}
        if sched_cfg.name == "ReduceLROnPlateau":
            config["monitor"] = monitor
        return {"optimizer": optimizer, "lr_scheduler": config}

    def schedule_length(self) -> int:
        """Epochs, or optimizer steps when the scheduler steps per batch."""
        epochs = self.config.trainer.max_epochs
        if self.config.scheduler.interval == "epoch":
            return epochs
        return max(1, int(self.trainer.estimated_stepping_batches))

    def warmup_length(self) -> int:
        """Warm-up in the scheduler's interval."""
        warmup = self.config.scheduler.warmup_epochs
        if self.config.scheduler.interval == "epoch" or not warmup:
            return warmup
        per_epoch = self.schedule_length() // max(1, self.config.trainer.max_epochs)
        return warmup * per_epoch

    # -- checkpoints ----------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain data only, so the checkpoint loads with weights_only=True.
        checkpoint[CHECKPOINT_KEY] = {
            "config": self.config.model_dump(mode="json"),
            "classes": self.classes,
            "class_counts": self.class_counts,
            "normalization": list(self.normalization) if self.normalization else None,
            "version": __version__,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A resumed run may extend max_epochs: stretch a schedule whose length was
        # derived from it, so that e.g. a cosine decay ends at the new last epoch.
        name = self.config.scheduler.name
        key = scheduler_length_key(name) if name else None
        if key is None or key in self.config.scheduler.params:
            return
        if self.config.scheduler.interval != "epoch":
            return
        length = max(1, self.schedule_length() - self.warmup_length())
        for state in checkpoint.get("lr_schedulers", []):
            main = state["_schedulers"][-1] if "_schedulers" in state else state
            if key in main:
                main[key] = length
