"""A run's :class:`~mediscope.runtime.info.ModelInfo`: what its model needs to be used alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mediscope
from mediscope.config.loader import dump_config
from mediscope.config.schema import Config
from mediscope.runtime.info import DEFAULT_SCORE_THRESHOLD, InferenceSettings, ModelInfo
from mediscope.runtime.predictor import Predictor
from mediscope.tasks import data_module


def model_info(
    config: Config,
    classes: list[str],
    checkpoint: Path,
    *,
    stats: tuple[list[float], list[float]] | None = None,
) -> ModelInfo:
    """The model info of a run's checkpoint, its settings resolved.

    ``inference.score_threshold: auto`` becomes the run's F1-optimal threshold, or the
    default without one (:func:`mediscope.inference.detection.resolve_counting_threshold`;
    the settings record which); a detector's window is
    ``inference.window``, else ``data.crop_size`` (as ``mediscope predict`` tiles). The
    temperature and thresholds fitted on validation come from the run's
    ``calibration.json`` (:func:`stored_calibration`).

    Args:
        config: The run's config.
        classes: The checkpoint's class names.
        checkpoint: The weights (named in the info).
        stats: Normalisation mean and std (the checkpoint's); default: the data module's.
    """
    from mediscope.inference.detection import resolve_counting_threshold

    datamodule = data_module(config)  # sets data.max_pixels for the images read
    mean, std = stats or datamodule.normalization_stats()
    intensity = datamodule.intensity_window()
    settings = config.inference
    window = settings.window
    if config.task == "detection":
        window = settings.window or config.data.crop_size
    threshold, source = DEFAULT_SCORE_THRESHOLD, ""
    if config.task == "detection":
        threshold, source = resolve_counting_threshold(config, checkpoint)
    outputs = ["boxes", "scores"] if config.task == "detection" else ["probabilities"]
    temperature, thresholds = stored_calibration(config, checkpoint)
    return ModelInfo(
        task=config.task,
        classes=list(classes),
        image_size=(int(config.data.image_size[0]), int(config.data.image_size[1])),
        channels=int(config.data.channels),
        mean=[float(v) for v in mean],
        std=[float(v) for v in std],
        dicom_window=config.data.dicom_window,
        intensity=intensity,
        inference=InferenceSettings(
            window=None if window is None else (int(window[0]), int(window[1])),
            overlap=float(settings.overlap),
            gaussian=bool(settings.gaussian),
            tta=bool(settings.tta),
            batch_size=int(settings.batch_size),
            merge=str(settings.merge),
            score_threshold=float(threshold),
            iou_threshold=float(settings.iou_threshold),
            max_detections=int(settings.max_detections),
            mpp=None if settings.mpp is None else float(settings.mpp),
            level=None if settings.level is None else int(settings.level),
            agnostic_nms=bool(settings.agnostic_nms),
            score_threshold_source=source,
        ),
        temperature=temperature,
        thresholds=thresholds,
        outputs=outputs,
        mediscope_version=mediscope.__version__,
        config=dump_config(config),
        checkpoint=checkpoint.name,
    )


def stored_calibration(config: Config, checkpoint: Path) -> tuple[float, dict[str, float]]:
    """The temperature and per-class thresholds the run fixed on validation.

    The temperature applies with ``report.calibrate: temperature``. The thresholds are
    those of ``report.operating_point`` (its target, else Youden's J); a multi-label
    model without one takes each label's F1-optimal threshold. All come from the run
    folder's ``calibration.json`` (written by the validation evaluation); without it,
    no calibration (1.0) and no thresholds.
    """
    from mediscope.engine.run_dir import run_dir_of
    from mediscope.metrics.calibration import read_calibration

    multilabel = config.task == "multilabel"
    if not multilabel and config.report.calibrate == "none" and not config.report.operating_point:
        return 1.0, {}
    stored = read_calibration(run_dir_of(checkpoint))
    if stored is None:
        return 1.0, {}
    temperature = stored.temperature if config.report.calibrate == "temperature" else 1.0
    for prefix in ("op_threshold/", "youden_threshold/", "threshold/"):
        chosen = {k[len(prefix) :]: v for k, v in stored.thresholds.items() if k.startswith(prefix)}
        if chosen:
            return float(temperature), chosen
    return float(temperature), {}


def eager_predictor(
    config: Config, checkpoint: Path, *, device: str = "cpu", batch_size: int | None = None
) -> Predictor:
    """The run's PyTorch model as a :class:`~mediscope.runtime.predictor.Predictor`
    (with Grad-CAM for classifiers)."""
    from mediscope.engine.restore import task_from_checkpoint
    from mediscope.runtime.backends import TorchBackend

    task, stats = task_from_checkpoint(config, checkpoint)
    info = model_info(config, list(task.classes), checkpoint, stats=stats)
    backend = TorchBackend(task.model, task=config.task, device=device)
    classifier = config.task in ("classification", "multilabel")
    cam = _cam_function(task.model, device) if classifier else None
    return Predictor(backend, info, batch_size=batch_size, cam=cam)


def _cam_function(model: Any, device: str) -> Any:
    def cam(batch: Any, indices: Any) -> Any:
        import torch

        from mediscope.models.cam import grad_cam

        return grad_cam(model, torch.from_numpy(batch).to(device), list(indices))

    return cam
