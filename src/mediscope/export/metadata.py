"""A run's :class:`~mediscope.runtime.info.ModelInfo`: what its exported model carries."""

from __future__ import annotations

from pathlib import Path

from mediscope import __version__
from mediscope.config.loader import dump_config
from mediscope.config.schema import Config
from mediscope.engine.run_dir import run_dir_of
from mediscope.export.graph import output_names
from mediscope.inference.detection import DEFAULT_SCORE_THRESHOLD, counting_threshold
from mediscope.runtime.info import InferenceSettings, ModelInfo
from mediscope.tasks import BaseTask, data_module


def config_text(config: Config, checkpoint: Path) -> str:
    """The run's ``config.yaml`` as written by ``fit``, else ``config`` dumped."""
    run = run_dir_of(checkpoint)
    if run is not None:
        try:
            return (run / "config.yaml").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            pass
    return dump_config(config)


def inference_settings(config: Config, checkpoint: Path) -> InferenceSettings:
    """The config's ``inference`` section, resolved as the predictors resolve it.

    Detection tiles are ``inference.window``, else ``data.crop_size`` (as
    ``DetectionPredictor.from_config``); its ``score_threshold: auto`` is the run's
    F1-optimal threshold (:func:`~mediscope.inference.detection.counting_threshold`).
    """
    settings = config.inference
    window = settings.window
    if config.task == "detection":
        window = settings.window or config.data.crop_size
        threshold = counting_threshold(config, checkpoint)
    else:
        setting = settings.score_threshold
        threshold = DEFAULT_SCORE_THRESHOLD if setting == "auto" else float(setting)
    return InferenceSettings(
        window=(int(window[0]), int(window[1])) if window is not None else None,
        overlap=float(settings.overlap),
        gaussian=bool(settings.gaussian),
        tta=bool(settings.tta),
        batch_size=int(settings.batch_size),
        merge=str(settings.merge),
        score_threshold=float(threshold),
        iou_threshold=float(settings.iou_threshold),
        max_detections=int(settings.max_detections),
    )


def model_info(
    config: Config,
    task: BaseTask,
    checkpoint: Path,
    stats: tuple[list[float], list[float]] | None,
) -> ModelInfo:
    """The :class:`ModelInfo` of a restored task, every field filled.

    Args:
        config: The run's config.
        task: The task restored from ``checkpoint`` (its class names).
        checkpoint: The weights' file.
        stats: The checkpoint's normalisation mean and std; None: the data module's
            for ``config`` (as the predictors do).
    """
    mean, std = stats or data_module(config).normalization_stats()
    data = config.data
    window = data.dicom_window
    return ModelInfo(
        task=config.task,
        classes=list(task.classes),
        image_size=(int(data.image_size[0]), int(data.image_size[1])),
        channels=int(data.channels),
        mean=[float(v) for v in mean],
        std=[float(v) for v in std],
        dicom_window=(float(window[0]), float(window[1])) if window is not None else None,
        inference=inference_settings(config, checkpoint),
        outputs=output_names(config.task),
        mediscope_version=__version__,
        config=config_text(config, checkpoint),
        checkpoint=Path(checkpoint).name,
    )
