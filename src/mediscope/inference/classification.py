"""Predicting classes of image files: a CSV with path, label and a probability per class."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mediscope.config.schema import Config
from mediscope.inference.model_info import eager_predictor
from mediscope.runtime.outputs import write_classification


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
