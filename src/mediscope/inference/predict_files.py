"""``mediscope predict`` on a run's PyTorch model: each task's files.

The files are written from the :class:`~mediscope.runtime.predictor.Predictor`'s results
(:mod:`mediscope.runtime.outputs`), as for an exported model; these functions are the
tasks' file predictors (``TaskSpec.predictor``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mediscope.config.schema import Config
from mediscope.errors import DataError
from mediscope.inference.model_info import eager_predictor
from mediscope.runtime.outputs import write_classification, write_detection, write_segmentation


def predict_labels(config: Config, checkpoint: Path, refs: list[str], output: Path) -> pd.DataFrame:
    """Predicts the class of every image of ``refs``; writes the table as CSV.

    Args:
        config: The run's config.
        checkpoint: The weights.
        refs: Image paths (or NPZ item references).
        output: The CSV to write, or a folder (``predictions.csv`` in it).

    Returns:
        The table: ``path``, ``label`` and one probability column per class; its
        ``attrs["path"]`` is the CSV written.
    """
    predictor = eager_predictor(config, checkpoint)
    return write_classification(predictor, refs, output).to_dataframe()


def predict_masks(
    config: Config,
    checkpoint: Path,
    refs: list[str],
    output: Path,
    *,
    probabilities: bool = False,
) -> pd.DataFrame:
    """Segments images; writes masks, overlays (and probability maps) under ``output``.

    ``output/masks/<name>.png`` holds class indices (with a colour palette for viewers),
    ``output/overlays/<name>.png`` the coloured mask and contours over the image,
    ``output/probabilities/<name>.npz`` (with ``probabilities``) float16 ``(K, H, W)``,
    and ``output/predictions.csv`` one row per image with each class's pixel share
    (:func:`mediscope.runtime.outputs.write_segmentation`).

    Returns:
        The predictions table (``attrs["path"]`` is the CSV's path).
    """
    if output.suffix.lower() == ".csv" or (output.exists() and not output.is_dir()):
        raise DataError(
            "segmentation writes a folder of masks and overlays, not a file",
            where=output,
            hint="give --output a folder",
        )
    predictor = eager_predictor(config, checkpoint)
    table = write_segmentation(predictor, refs, output, probabilities=probabilities)
    return table.to_dataframe()


def predict_boxes(config: Config, checkpoint: Path, refs: list[str], output: Path) -> pd.DataFrame:
    """Detects objects in images; writes predictions, counts and overlays under ``output``.

    ``output/predictions.csv`` (a row per box), ``predictions.json`` (COCO results),
    ``labels/<name>.txt`` (YOLO with scores), ``counts.csv`` (objects per image and
    class) and ``overlays/<name>.jpg`` (class-coloured boxes with scores); see
    :func:`mediscope.runtime.outputs.write_detection`. Boxes scoring below the run's
    counting threshold (:func:`counting_threshold`) are dropped.

    Returns:
        The counts table (``attrs["path"]`` is the folder).
    """
    if output.suffix.lower() in (".csv", ".json") or (output.exists() and not output.is_dir()):
        raise DataError(
            "detection writes a folder of predictions, counts and overlays, not a file",
            where=output,
            hint="give --output a folder",
        )
    return write_detection(eager_predictor(config, checkpoint), refs, output).to_dataframe()


def predict_multilabel(
    config: Config, checkpoint: Path, refs: list[str], output: Path
) -> pd.DataFrame:
    """Predicts the labels of every image of ``refs``; writes the table as CSV.

    ``label`` holds the labels present (at or above each label's threshold chosen on
    validation), joined by ``;``, then one probability column per label.

    Returns:
        The table; its ``attrs["path"]`` is the CSV written.
    """
    predictor = eager_predictor(config, checkpoint)
    return write_classification(predictor, refs, output).to_dataframe()
