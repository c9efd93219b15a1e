"""``mediscope predict``: a CSV with path, predicted label and a probability per class."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mediscope.config.schema import Config
from mediscope.engine.run_dir import BEST, CHECKPOINTS
from mediscope.errors import ConfigError
from mediscope.files import refuse_overlap
from mediscope.runtime import inputs as runtime_inputs
from mediscope.tasks import task_spec
from mediscope.tasks.validate import load_config

PATH_COLUMNS = ("path", "image", "filename", "file")


def resolve_source(
    source: Path, checkpoint: Path | None, overrides: list[str]
) -> tuple[Config, Path]:
    """A config file with ``--checkpoint``, or a run folder (its config and best.ckpt)."""
    if source.is_dir():
        config = load_config(source / "config.yaml", overrides)
        ckpt = checkpoint or source / CHECKPOINTS / BEST
    else:
        config = load_config(source, overrides)
        if checkpoint is None:
            raise ConfigError(
                "--checkpoint is required with a config file",
                where="command line",
                hint="give --checkpoint PATH, or a run folder instead of the config",
            )
        ckpt = checkpoint
    return config, ckpt


def collect_inputs(inputs: list[Path], config: Config) -> list[str]:
    """Image references from folders, CSV manifests, NPZ files and single images
    (:func:`mediscope.runtime.inputs.collect_inputs`; CSV paths relative to
    ``data.root`` when the config sets it)."""
    return runtime_inputs.collect_inputs(inputs, root=config.data.root)


def predict(
    source: Path,
    *,
    inputs: list[Path],
    output: Path,
    checkpoint: Path | None = None,
    overrides: list[str] | None = None,
    probabilities: bool = False,
    score_threshold: float | None = None,
    iou_threshold: float | None = None,
    agnostic_nms: bool | None = None,
) -> pd.DataFrame:
    """Predicts classes of images; writes a CSV (path, label, one column per class).

    The task's predictor writes the outputs: a classifier the CSV, a segmentation
    model a folder of masks, overlays and a CSV
    (:func:`mediscope.inference.predict_files.predict_masks`), a detector boxes and
    counts (:func:`mediscope.inference.predict_files.predict_boxes`).

    Args:
        source: A config file (then ``checkpoint`` is required) or a run folder.
        inputs: Folders, CSV manifests (a ``path`` column), NPZ files or image files.
        output: The CSV to write, or a folder (``predictions.csv`` in it).
        checkpoint: The weights; default: the run folder's best.ckpt.
        overrides: ``--set`` overrides of the config.
        probabilities: Segmentation: also write per-class probability maps.
        score_threshold: Detection: ``inference.score_threshold`` (``--score-threshold``).
        iou_threshold: Detection: ``inference.iou_threshold`` (``--iou-threshold``).
        agnostic_nms: Detection: ``inference.agnostic_nms`` (``--agnostic-nms``).

    Returns:
        The predictions table (detection: ``attrs`` name the score threshold used and
        its source, see :meth:`~mediscope.runtime.outputs.PredictionTable.to_dataframe`).

    Raises:
        ConfigError: when ``output`` is an input (an image, a CSV, the checkpoint), or
            inside or above one; detection settings for a model that does not detect,
            or out of range.
    """
    detection = detection_overrides(score_threshold, iou_threshold, agnostic_nms)
    config, ckpt = resolve_source(source, checkpoint, [*(overrides or []), *detection])
    if detection and config.task != "detection":
        raise ConfigError(
            f"--score-threshold, --iou-threshold and --agnostic-nms are for detectors; this "
            f"model is a {config.task} model",
            where="command line",
            hint="drop them",
        )
    model_files = [source if source.is_file() else source / "config.yaml", ckpt]
    refuse_overlap(output, [*inputs, *model_files], option="--output")
    refs = collect_inputs(inputs, config)
    refuse_overlap(output, refs, option="--output")  # the images a CSV lists
    return task_spec(config).predict_files(config, ckpt, refs, output, probabilities=probabilities)


def detection_overrides(
    score_threshold: float | None, iou_threshold: float | None, agnostic_nms: bool | None
) -> list[str]:
    """``--set`` overrides of ``predict``'s detection options (checked, naming each)."""
    from mediscope.runtime.info import InferenceSettings

    InferenceSettings().with_detection(  # refuses values out of range, naming the option
        score_threshold=score_threshold, iou_threshold=iou_threshold, agnostic_nms=agnostic_nms
    )
    found = []
    if score_threshold is not None:
        found.append(f"inference.score_threshold={score_threshold}")
    if iou_threshold is not None:
        found.append(f"inference.iou_threshold={iou_threshold}")
    if agnostic_nms is not None:
        found.append(f"inference.agnostic_nms={str(agnostic_nms).lower()}")
    return found
