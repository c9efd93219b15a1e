"""Train / validation splits, written to ``split.json`` and reused on resume.

Methods: ``holdout`` (stratified by class), ``column`` (the data's own train / val /
test column), ``kfold`` (stratified k-fold). When samples carry a patient id the split
is made by patient (StratifiedGroupKFold), so that no patient is in two splits.

Detection samples (with ``boxes``) have no single class: their stratified ``holdout``
and ``kfold`` use iterative stratification (Sechidis, Tsoumakas and Vlahavas 2011,
"On the stratification of multi-label data") over each image's vector of object counts
per class, so that every split receives its share of the objects of every class, rare
ones first (:func:`iterative_stratification`). Images without objects are spread over
the splits by their share of images. With patient ids, each patient is one unit whose
vector is the sum of its images' and whose weight is its number of images, so patients
never straddle splits and the shares still hold as far as the patients allow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
    train_test_split,
)

from mediscope.data.samples import SampleSet
from mediscope.errors import DataError
from mediscope.files import LIST_LIMIT, read_text_file, write_json_atomic

VAL_NAMES = {"val", "valid", "validation", "dev"}
TRAIN_NAMES = {"train", "training"}
TEST_NAMES = {"test", "testing", "holdout"}


def make_split(
    samples: SampleSet,
    *,
    method: str,
    val_fraction: float,
    seed: int,
    stratify: bool = True,
    folds: int = 5,
    fold: int = 0,
) -> dict[str, np.ndarray]:
    """Indices of ``train`` and ``val`` (and ``test`` for a split column with test rows).

    Detection samples are stratified iteratively by their object counts per class (see
    the module doc); classification and segmentation samples by their label.
    """
    if method == "auto":
        # The data's own split when it names validation rows; else a holdout of the
        # rows not marked test (train + test folders, as many datasets ship).
        names = {(s.split or "").lower() for s in samples.samples}
        column = bool(names & VAL_NAMES) or bool(names - TRAIN_NAMES - TEST_NAMES - {""})
        method = "column" if column else "holdout"
    if method == "column":
        return column_split(samples)
    # Rows the data marks as test stay test; the rest is split here.
    test = np.array(
        [i for i, s in enumerate(samples.samples) if (s.split or "").lower() in TEST_NAMES],
        dtype=np.int64,
    )
    if len(test):
        pool = np.setdiff1d(np.arange(len(samples)), test)
        parts = make_split(
            samples.subset(pool),
            method=method,
            val_fraction=val_fraction,
            seed=seed,
            stratify=stratify,
            folds=folds,
            fold=fold,
        )
        return {"train": pool[parts["train"]], "val": pool[parts["val"]], "test": test}
    labels = samples.labels()
    groups = group_ids(samples)
    counts = box_counts(samples)
    if counts is not None and stratify:
        if method == "kfold":
            train, val = iterative_kfold(counts, groups, folds, fold, seed)
        else:
            train, val = iterative_holdout(counts, groups, val_fraction=val_fraction, seed=seed)
        return {"train": train, "val": val}
    if method == "kfold":
        train, val = kfold_split(labels, groups, folds, fold, seed, stratify)
    elif groups is not None:  # a holdout by patient: the first of round(1/fraction) folds
        n_splits = max(2, round(1 / val_fraction))
        train, val = kfold_split(labels, groups, n_splits, 0, seed, stratify)
    else:
        train, val = holdout_split(labels, val_fraction=val_fraction, seed=seed, stratify=stratify)
    return {"train": train, "val": val}


def group_ids(samples: SampleSet) -> np.ndarray | None:
    """Patient ids as integers (samples without one are their own group), or None."""
    if not any(s.group for s in samples.samples):
        return None
    names = [s.group if s.group else f"\0{i}" for i, s in enumerate(samples.samples)]
    _, ids = np.unique(np.array(names, dtype=object), return_inverse=True)
    return ids.astype(np.int64)


def column_split(samples: SampleSet) -> dict[str, np.ndarray]:
    """The split named by each sample (train / val / test)."""
    names = [(s.split or "").lower() for s in samples.samples]
    parts = {
        "train": np.array([i for i, n in enumerate(names) if n in TRAIN_NAMES], dtype=np.int64),
        "val": np.array([i for i, n in enumerate(names) if n in VAL_NAMES], dtype=np.int64),
        "test": np.array([i for i, n in enumerate(names) if n in TEST_NAMES], dtype=np.int64),
    }
    unknown = sorted({n for n in names if n not in TRAIN_NAMES | VAL_NAMES | TEST_NAMES})
    if unknown:
        raise DataError(
            f"unknown split names {unknown}",
            where=samples.root,
            hint="use train, val or test (or set data.split.method: holdout)",
        )
    for part in ("train", "val"):
        if not len(parts[part]):
            raise DataError(
                f"the data's split column has no '{part}' samples",
                where=samples.root,
                hint="set data.split.method: holdout to split it here",
            )
    return parts


def kfold_split(
    labels: np.ndarray,
    groups: np.ndarray | None,
    n_splits: int,
    fold: int,
    seed: int,
    stratify: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices of ``fold`` of a (stratified, grouped) k-fold."""
    indices = np.arange(len(labels))
    n_groups = len(np.unique(groups)) if groups is not None else len(labels)
    if n_groups < n_splits:
        what = "patients" if groups is not None else "samples"
        raise DataError(
            f"{n_groups} {what} cannot be split into {n_splits} folds", where="data.split"
        )
    if stratify and np.bincount(labels[labels >= 0]).min(initial=n_splits) < n_splits:
        raise DataError(
            f"a class has fewer samples than the {n_splits} folds need",
            where="data.split",
            hint="add samples, use fewer folds, or set data.split.stratify: false",
        )
    splitter: StratifiedGroupKFold | GroupKFold | StratifiedKFold | KFold
    if groups is not None:
        if stratify:
            splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        else:
            splitter = GroupKFold(n_splits=n_splits)
    elif stratify:
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    else:
        splitter = KFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for i, (train, val) in enumerate(splitter.split(indices, labels, groups)):
        if i == fold:
            return np.sort(train), np.sort(val)
    raise DataError(f"fold {fold} does not exist in {n_splits} folds", where="data.split.fold")


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


# -- detection: iterative stratification --------------------------------------------------


def box_counts(samples: SampleSet) -> np.ndarray | None:
    """Objects per class of each image, ``(N, C)`` int64, for detection samples (labels
    per image, 0 or 1, for multi-label samples); else None.

    A set is a detection set when any sample has ``boxes``; samples without are images
    without objects.
    """
    num_classes = len(samples.classes)
    if any(s.label_set is not None for s in samples.samples):  # multi-label: 0/1 per label
        hot = np.zeros((len(samples), num_classes), dtype=np.int64)
        for i, sample in enumerate(samples.samples):
            hot[i, list(sample.label_set or ())] = 1
        return hot
    if not any(s.boxes is not None for s in samples.samples):
        return None
    counts = np.zeros((len(samples), num_classes), dtype=np.int64)
    for i, sample in enumerate(samples.samples):
        if sample.box_labels is not None and len(sample.box_labels):
            labels = np.asarray(sample.box_labels, dtype=np.int64)
            counts[i] = np.bincount(labels, minlength=num_classes)[:num_classes]
    return counts


def iterative_stratification(
    counts: np.ndarray,
    fractions: list[float] | np.ndarray,
    *,
    seed: int,
    sizes: np.ndarray | None = None,
) -> np.ndarray:
    """The fold of each row of ``counts`` by iterative stratification (Sechidis et al.).

    The desired number of objects of each class per fold is its total times the fold's
    fraction. Repeatedly, the class with the fewest objects still unassigned is taken,
    and each unassigned row holding it (in a seeded random order) goes to the fold that
    most wants that class; ties go to the fold wanting the most rows (by ``sizes``), then
    to a seeded random one. The fold's wants drop by the row's counts and size. Rows
    without objects go last, to the folds wanting the most rows.

    Args:
        counts: ``(N, C)`` objects per class of each row (image or group of images).
        fractions: Share of each fold (normalised to sum to 1).
        seed: Random seed; the same seed gives the same folds.
        sizes: Weight of each row in the row wants (e.g. images per group); default 1.

    Returns:
        ``(N,)`` int64 fold index of each row.

    Example:
        >>> counts = np.array([[2, 0], [1, 0], [0, 1], [0, 1], [3, 0], [0, 0]])
        >>> iterative_stratification(counts, [0.5, 0.5], seed=0).tolist()
        [1, 1, 1, 0, 0, 0]
    """
    counts = np.asarray(counts, dtype=np.float64).reshape(len(counts), -1)
    share = np.asarray(fractions, dtype=np.float64)
    share = share / share.sum()
    weights = np.ones(len(counts)) if sizes is None else np.asarray(sizes, dtype=np.float64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(counts))
    want_rows = weights.sum() * share
    want_objects = share[:, None] * counts.sum(axis=0)[None, :]
    fold = np.full(len(counts), -1, dtype=np.int64)
    left = np.ones(len(counts), dtype=bool)
    while True:
        totals = counts[left].sum(axis=0)
        active = np.flatnonzero(totals > 0)
        if not len(active):
            break
        rarest = active[totals[active] == totals[active].min()]
        label = int(rarest[rng.integers(len(rarest))]) if len(rarest) > 1 else int(rarest[0])
        for row in order[left[order] & (counts[order, label] > 0)]:
            chosen = _best_fold(want_objects[:, label], want_rows, rng)
            fold[row], left[row] = chosen, False
            want_objects[chosen] -= counts[row]
            want_rows[chosen] -= weights[row]
    for row in order[left[order]]:
        chosen = _best_fold(want_rows, None, rng)
        fold[row] = chosen
        want_rows[chosen] -= weights[row]
    return fold


def _best_fold(first: np.ndarray, second: np.ndarray | None, rng: np.random.Generator) -> int:
    best = np.flatnonzero(first == first.max())
    if len(best) > 1 and second is not None:
        best = best[second[best] == second[best].max()]
    return int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])


def _units(counts: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Counts and sizes of the units split: images, or groups (summed, sized)."""
    if groups is None:
        return counts, np.ones(len(counts))
    n_groups = int(groups.max()) + 1
    summed = np.zeros((n_groups, counts.shape[1]), dtype=np.int64)
    np.add.at(summed, groups, counts)
    return summed, np.bincount(groups, minlength=n_groups).astype(np.float64)


def iterative_holdout(
    counts: np.ndarray, groups: np.ndarray | None, *, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices of detection images, stratified by object counts.

    Raises:
        DataError: when the fraction leaves a split empty, or there are fewer than two
            patients.
    """
    n = len(counts)
    n_val = round(n * val_fraction)
    if n_val < 1 or n_val >= n:
        raise DataError(
            f"{n} samples cannot be split with val_fraction={val_fraction}",
            where="data.split.val_fraction",
            hint="add data or change the fraction",
        )
    units, sizes = _units(counts, groups)
    if len(units) < 2:
        raise DataError("1 patient cannot be split in two", where="data.split")
    unit_fold = iterative_stratification(
        units, [1 - val_fraction, val_fraction], seed=seed, sizes=sizes
    )
    fold = unit_fold[groups] if groups is not None else unit_fold
    train, val = np.flatnonzero(fold == 0), np.flatnonzero(fold == 1)
    if not len(train) or not len(val):
        raise DataError(
            f"val_fraction={val_fraction} leaves a split empty",
            where="data.split.val_fraction",
            hint="add data, change the fraction, or set data.split.stratify: false",
        )
    return train, val


def iterative_kfold(
    counts: np.ndarray, groups: np.ndarray | None, n_splits: int, fold: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices of ``fold`` of a k-fold of detection images.

    Raises:
        DataError: for fewer images (patients) than folds, a fold out of range, or a
            fold left empty.
    """
    units, sizes = _units(counts, groups)
    if len(units) < n_splits:
        what = "patients" if groups is not None else "samples"
        raise DataError(
            f"{len(units)} {what} cannot be split into {n_splits} folds", where="data.split"
        )
    if not 0 <= fold < n_splits:
        raise DataError(f"fold {fold} does not exist in {n_splits} folds", where="data.split.fold")
    unit_fold = iterative_stratification(units, [1.0] * n_splits, seed=seed, sizes=sizes)
    folds = unit_fold[groups] if groups is not None else unit_fold
    empty = [k for k in range(n_splits) if not (folds == k).any()]
    if empty:
        raise DataError(
            f"fold {empty[0]} of {n_splits} receives no image",
            where="data.split",
            hint="use fewer folds, or set data.split.stratify: false",
        )
    return np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)


def save_split(
    path: Path, samples: SampleSet, parts: dict[str, np.ndarray], **info: object
) -> None:
    """Writes ``{"train": [ids], "val": [ids], ...}`` with how it was made."""
    ids = samples.ids()
    data: dict[str, object] = dict(info)
    data.update({name: [ids[int(i)] for i in idx] for name, idx in parts.items()})
    write_json_atomic(path, data)


#: The lists a split file may hold.
SPLIT_NAMES = ("train", "val", "test")

_SPLIT_SHAPE = "a split file holds {train: [ids], val: [ids], test: [ids]}"


def read_split_file(path: Path, required: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """The sample id lists of ``split.json`` (those of :data:`SPLIT_NAMES` it holds).

    Raises:
        DataError: naming the file when it is unreadable, not a JSON object, lacks a
            ``required`` list, or holds a list that is not a list of sample ids (text).
    """
    try:
        data = json.loads(read_text_file(path, limit=LIST_LIMIT, what="split file"))
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read the split ({' '.join(str(exc).split())})",
            where=path,
            hint="give the split.json a run wrote",
        ) from None
    if not isinstance(data, dict):
        raise DataError(
            f"{_SPLIT_SHAPE}, not a JSON {type(data).__name__}",
            where=path,
            hint="give the split.json a run wrote",
        )
    lists: dict[str, list[str]] = {}
    for name in SPLIT_NAMES:
        ids = data.get(name)
        if ids is None and name not in required:
            continue
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            found = "nothing" if ids is None else f"a JSON {type(ids).__name__}"
            if isinstance(ids, list):
                found = "a list holding " + ", ".join(
                    sorted({type(i).__name__ for i in ids if not isinstance(i, str)})
                )
            raise DataError(
                f"'{name}' must be a list of sample ids (text), found {found}",
                where=path,
                hint=f"{_SPLIT_SHAPE}; give the split.json a run wrote",
            )
        lists[name] = ids
    return lists


def load_split(path: Path, samples: SampleSet, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Maps the ids in ``split.json`` back to indices of ``samples``.

    Raises:
        DataError: when the file is unreadable or names samples the dataset lacks.
    """
    data = read_split_file(path, required=names)
    position = {sid: i for i, sid in enumerate(samples.ids())}
    parts: dict[str, np.ndarray] = {}
    for name in names:
        ids = data[name]
        missing = [sid for sid in ids if sid not in position]
        if missing:
            raise DataError(
                f"{len(missing)} samples of the '{name}' split are not in the dataset "
                f"(first: {missing[0]})",
                where=path,
                hint="was data.path changed since the run started?",
            )
        parts[name] = np.array([position[sid] for sid in ids], dtype=np.int64)
    if "test" in data:
        parts["test"] = np.array([position[s] for s in data["test"] if s in position], np.int64)
    return parts
