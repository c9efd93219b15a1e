"""A task and its data back from a checkpoint, for evaluation and prediction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from mediscope.config.schema import Config
from mediscope.data.datamodule import SPLIT_FILE, MediscopeDataModule
from mediscope.data.samples import SampleSet
from mediscope.engine.checkpoints import checkpoint_meta, load_task_weights, read_checkpoint
from mediscope.engine.run_dir import run_dir_of
from mediscope.engine.trainer import quiet_lightning
from mediscope.errors import CheckpointError
from mediscope.tasks import BaseTask, build_task, data_module
from mediscope.tasks.spec import EvaluationInputs


@torch.inference_mode()
def predict_probs(task: BaseTask, loader: DataLoader[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and class probabilities over a loader, in loader order (the task's
    ``metric_inputs``: softmax for classification, sigmoid for multi-label)."""
    task.eval()
    labels, probs = [], []
    for images, targets in loader:
        logits = task.model(images.to(task.device))
        probs.append(task.metric_inputs(logits).float().cpu().numpy())
        labels.append(targets.cpu().numpy())
    return np.concatenate(labels), np.concatenate(probs)


def task_from_checkpoint(
    config: Config, checkpoint: Path
) -> tuple[BaseTask, tuple[list[float], list[float]] | None]:
    """The config's task with the checkpoint's classes and weights, and its input stats."""
    data = read_checkpoint(checkpoint)
    meta = checkpoint_meta(data)
    stats = meta.get("normalization")
    normalization = (list(stats[0]), list(stats[1])) if stats else None
    task = build_task(
        config,
        list(meta["classes"]),
        class_counts=meta.get("class_counts"),  # class-weighted losses hold buffers
        normalization=normalization,
    )
    load_task_weights(task, data, checkpoint)
    task.eval()
    return task, normalization


def split_samples(
    config: Config,
    checkpoint: Path,
    classes: list[str],
    *,
    split: str,
    stats: tuple[list[float], list[float]] | None,
    datamodule: MediscopeDataModule | None = None,
) -> tuple[MediscopeDataModule, SampleSet]:
    """The data module and the samples of the ``val`` (the run's split) or ``test`` split."""
    if datamodule is None:
        run_dir = run_dir_of(checkpoint)
        split_file = run_dir / SPLIT_FILE if run_dir is not None else None
        datamodule = data_module(config, split_file=split_file, reuse_split=True, stats=stats)
    if split != "val":
        return datamodule, datamodule.test_set(classes)
    if datamodule.classes != classes:
        raise CheckpointError(
            f"the checkpoint's classes {classes} differ from the data's {datamodule.classes}",
            where=checkpoint,
        )
    datamodule.prepare_samples()
    assert datamodule.val_set is not None
    return datamodule, datamodule.val_set


def evaluation_inputs(
    config: Config,
    checkpoint: Path,
    *,
    split: str,
    datamodule: MediscopeDataModule | None = None,
) -> EvaluationInputs:
    """The checkpoint's task, the split's samples and their unaugmented dataset."""
    quiet_lightning()
    task, stats = task_from_checkpoint(config, checkpoint)
    datamodule, samples = split_samples(
        config, checkpoint, task.classes, split=split, stats=stats, datamodule=datamodule
    )
    mean, std = datamodule.normalization_stats()
    dataset = datamodule.dataset(samples, train=False)
    return EvaluationInputs(
        config, checkpoint, split, task, datamodule, samples, dataset, mean, std
    )
