"""Predicting classes of image files: a CSV with path, label and a probability per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mediscope.config.schema import Config
from mediscope.data.samples import Sample, SampleSet
from mediscope.engine.restore import predict_probs, task_from_checkpoint
from mediscope.files import write_text_atomic
from mediscope.tasks import data_module


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
    task, stats = task_from_checkpoint(config, checkpoint)
    classes = task.classes
    samples = SampleSet(classes, [Sample(image=r, label=-1) for r in refs], Path("."))
    datamodule = data_module(config, stats=stats)
    loader = datamodule.loader(datamodule.dataset(samples, train=False), train=False)
    _, probs = predict_probs(task, loader)
    table = pd.DataFrame({"path": refs, "label": [classes[i] for i in probs.argmax(axis=1)]})
    for i, name in enumerate(classes):
        table[name] = np.round(probs[:, i], 6)
    target = output / "predictions.csv" if output.is_dir() else output
    write_text_atomic(target, table.to_csv(index=False))
    table.attrs["path"] = str(target)
    return table
