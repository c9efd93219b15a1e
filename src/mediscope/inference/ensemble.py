"""``mediscope ensemble``: majority vote or mean probability over prediction CSVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mediscope.errors import DataError
from mediscope.files import write_text_atomic

METHODS = ("vote", "mean")


def read_predictions(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """A prediction CSV of ``mediscope predict`` and its class columns."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the predictions: {exc}", where=path) from None
    if "path" not in frame.columns or "label" not in frame.columns:
        raise DataError(
            "not a prediction file (needs path, label and a column per class)",
            where=path,
            hint="use the CSVs written by 'mediscope predict'",
        )
    classes = [c for c in frame.columns if c not in ("path", "label", "votes")]
    return frame.set_index("path"), classes


def ensemble(files: list[Path], *, method: str, output: Path) -> pd.DataFrame:
    """Combines the predictions of several models of the same classes.

    ``vote``: the most frequent label; ties go to the tied class with the highest mean
    probability (S2's majority vote). ``mean``: the class of the highest mean
    probability (soft voting).
    """
    if method not in METHODS:
        raise DataError(f"unknown method '{method}'", where="--method", hint="vote or mean")
    if len(files) < 2:
        raise DataError("an ensemble needs at least two prediction files", where="PRED...")
    frames = [read_predictions(f) for f in files]
    base, classes = frames[0]
    for (frame, other), path in zip(frames[1:], files[1:], strict=True):
        if other != classes:
            raise DataError(f"classes {other} differ from {classes}", where=path)
        if set(frame.index) != set(base.index):
            raise DataError("the images differ from the first file's", where=path)
    order = base.index
    probs = np.stack([f.loc[order, classes].to_numpy(dtype=float) for f, _ in frames])
    mean = probs.mean(axis=0)
    if method == "mean":
        winners = mean.argmax(axis=1)
        votes = np.zeros(len(order), dtype=int)
    else:
        index = {c: i for i, c in enumerate(classes)}
        labels = np.stack([[index[x] for x in f.loc[order, "label"]] for f, _ in frames])
        counts = np.stack([(labels == c).sum(axis=0) for c in range(len(classes))], axis=1)
        # Most votes first; among tied classes, the highest mean probability.
        tied = counts == counts.max(axis=1, keepdims=True)
        winners = np.where(tied, mean, -np.inf).argmax(axis=1)
        votes = counts.max(axis=1)
    table = pd.DataFrame({"path": list(order), "label": [classes[i] for i in winners]})
    if method == "vote":
        table["votes"] = votes
    for i, name in enumerate(classes):
        table[name] = np.round(mean[:, i], 6)
    write_text_atomic(output, table.to_csv(index=False))
    return table
