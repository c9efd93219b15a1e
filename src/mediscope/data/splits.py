"""Train / validation splits, written to ``split.json`` and reused on resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from mediscope.data.samples import SampleSet
from mediscope.errors import DataError
from mediscope.files import write_json_atomic


def holdout_split(
    labels: np.ndarray, *, val_fraction: float, seed: int, stratify: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a (stratified) holdout split.

    Raises:
        DataError: when a class has too few samples to appear in both splits.
    """
    indices = np.arange(len(labels))
    n_val = round(len(labels) * val_fraction)
    if n_val < 1 or n_val >= len(labels):
        raise DataError(
            f"{len(labels)} samples cannot be split with val_fraction={val_fraction}",
            where="data.split.val_fraction",
            hint="add data or change the fraction",
        )
    strata = labels if stratify else None
    if stratify:
        values, counts = np.unique(labels, return_counts=True)
        if counts.min() < 2:
            rare = ", ".join(str(v) for v in values[counts < 2])
            raise DataError(
                f"class index {rare} has fewer than 2 samples; a stratified split needs 2",
                where="data.split",
                hint="add samples or set data.split.stratify: false",
            )
        if n_val < len(values) or len(labels) - n_val < len(values):
            raise DataError(
                f"val_fraction={val_fraction} leaves a split with fewer samples than classes",
                where="data.split.val_fraction",
            )
    train, val = train_test_split(indices, test_size=n_val, random_state=seed, stratify=strata)
    return np.sort(train), np.sort(val)


def save_split(
    path: Path, samples: SampleSet, parts: dict[str, np.ndarray], **info: object
) -> None:
    """Writes ``{"train": [ids], "val": [ids], ...}`` with how it was made."""
    ids = samples.ids()
    data: dict[str, object] = dict(info)
    data.update({name: [ids[int(i)] for i in idx] for name, idx in parts.items()})
    write_json_atomic(path, data)


def load_split(path: Path, samples: SampleSet, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Maps the ids in ``split.json`` back to indices of ``samples``.

    Raises:
        DataError: when the file is unreadable or names samples the dataset lacks.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the split: {exc}", where=path) from None
    position = {sid: i for i, sid in enumerate(samples.ids())}
    parts: dict[str, np.ndarray] = {}
    for name in names:
        ids = data.get(name)
        if not isinstance(ids, list):
            raise DataError(f"the split has no '{name}' list", where=path)
        missing = [sid for sid in ids if sid not in position]
        if missing:
            raise DataError(
                f"{len(missing)} samples of the '{name}' split are not in the dataset "
                f"(first: {missing[0]})",
                where=path,
                hint="was data.path changed since the run started?",
            )
        parts[name] = np.array([position[sid] for sid in ids], dtype=np.int64)
    return parts
