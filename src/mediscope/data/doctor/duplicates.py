"""Exact and near duplicates, and patients in two splits.

Exact duplicates have the same decoded pixels (SHA-1 digest), whatever their files'
names or encodings. Near duplicates are resized, re-encoded or retouched copies: their
64-bit perceptual hashes differ in at most ``threshold`` bits (default
:data:`NEAR_THRESHOLD`), *and* their 32 x 32 thumbnails, each normalised to zero mean
and unit variance (so a brighter or more contrasted copy matches), correlate by at
least :data:`MIN_CORRELATION`. The hash alone cannot tell a copy from a different image
of the same simple layout (one coccus in the middle of a crop): on synthetic Gram crops
such pairs are 2 bits apart, where a 20 % brighter copy is up to 10 bits away. Their
thumbnails tell them apart: distinct images correlate below 0.89, copies (resized to
75 %, JPEG quality 50, 10 % brighter) above 0.90.

Within one split a duplicate is a warning (the model sees the image twice); across
splits it is an error: the evaluation sees an image the model was trained on. Of each
pair, the copy in the later split (train, val, test), or the later file in the same
split, is the one an exclude list drops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mediscope.data.doctor.findings import Finding
from mediscope.data.doctor.pixels import ImageInfo
from mediscope.data.doctor.scan import Item

#: Perceptual hash distance (bits of 64) up to which two images may be copies.
NEAR_THRESHOLD = 10
#: Thumbnail correlation from which two images within the distance are copies.
MIN_CORRELATION = 0.90
#: Pairs whose hash distance is computed at once (memory: 8 bytes each).
_BLOCK = 1 << 22
SPLIT_ORDER = {"train": 0, "trainval": 0, "val": 1, "test": 2}


def split_rank(split: str | None) -> int:
    """The order of splits: train (or the random pool), val, test, then the others."""
    return SPLIT_ORDER.get(split or "", 3)


def _order(items: Sequence[Item]) -> list[int]:
    return sorted(range(len(items)), key=lambda i: (split_rank(items[i].split), items[i].image))


def exact_duplicates(items: Sequence[Item], infos: Sequence[ImageInfo | None]) -> list[Finding]:
    """One finding per image whose pixels equal those of an earlier image."""
    first: dict[str, int] = {}
    findings: list[Finding] = []
    for i in _order(items):
        info = infos[i]
        if info is None:
            continue
        if info.digest not in first:
            first[info.digest] = i
            continue
        findings.append(_pair("exact_duplicate", items[i], items[first[info.digest]], {}))
    return findings


def near_duplicates(
    items: Sequence[Item],
    infos: Sequence[ImageInfo | None],
    *,
    threshold: int = NEAR_THRESHOLD,
    min_correlation: float = MIN_CORRELATION,
    progress: Callable[[int, int], None] | None = None,
) -> list[Finding]:
    """One finding per image that is a near copy of an earlier one (its closest).

    Exact duplicates are left to :func:`exact_duplicates`. The hash distances of all
    pairs are computed in blocks (64-bit XOR and popcount), so that 100,000 images take
    seconds, not hours; only the pairs within ``threshold`` have their thumbnails
    compared.
    """
    order = [i for i in _order(items) if infos[i] is not None]
    if len(order) < 2:
        return []
    known = [infos[i] for i in order]
    hashes = np.array([info.phash for info in known if info is not None], dtype=np.uint64)
    digests = [info.digest for info in known if info is not None]
    thumbs = np.stack([_standardised(info.thumb) for info in known if info is not None])
    best: dict[int, tuple[float, int, int]] = {}  # later → (-correlation, distance, earlier)
    rows = max(1, _BLOCK // len(hashes))
    for start in range(0, len(hashes), rows):
        stop = min(start + rows, len(hashes))
        distance = np.bitwise_count(hashes[start:stop, None] ^ hashes[None, :])
        close = distance <= threshold
        close &= np.arange(len(hashes))[None, :] > np.arange(start, stop)[:, None]
        for a, b in zip(*np.nonzero(close), strict=True):
            earlier, later = start + int(a), int(b)
            if digests[earlier] == digests[later]:
                continue
            correlation = float(np.dot(thumbs[earlier], thumbs[later]))
            if correlation < min_correlation:
                continue
            key = (-correlation, int(distance[a, b]), earlier)
            if later not in best or key < best[later]:
                best[later] = key
        if progress is not None:
            progress(stop, len(hashes))
    findings = []
    for later, (negative, distance, earlier) in sorted(best.items()):
        details = {"distance": distance, "correlation": round(-negative, 4)}
        findings.append(
            _pair("near_duplicate", items[order[later]], items[order[earlier]], details)
        )
    return findings


def _standardised(thumb: np.ndarray) -> np.ndarray:
    """The thumbnail as a unit vector of zero mean (dot product = correlation)."""
    values = np.asarray(thumb, np.float64).ravel()
    values = values - values.mean()
    norm = float(np.linalg.norm(values))
    return values / norm if norm > 0 else values


def _pair(kind: str, later: Item, earlier: Item, details: dict[str, float]) -> Finding:
    across = later.split != earlier.split
    what = "the same pixels as" if kind == "exact_duplicate" else "a near copy of"
    where = f" in {earlier.split}" if across else ""
    message = f"{what} {earlier.image}{where}"
    if across:
        message += f": leakage between {earlier.split} and {later.split}"
    return Finding(
        kind,
        "error" if across else "warning",
        message,
        file=later.image,
        split=later.split,
        other_file=earlier.image,
        other_split=earlier.split,
        hint="keep one copy (--write-exclude drops this one)",
        details=dict(details),
        exclude=[later.image],
    )


def patients_in_two_splits(items: Sequence[Item]) -> list[Finding]:
    """One finding per patient (``group``) and split after the patient's first split."""
    by_patient: dict[str, dict[str, list[Item]]] = {}
    for item in items:
        if item.sample.group:
            by_patient.setdefault(item.sample.group, {}).setdefault(item.split, []).append(item)
    findings: list[Finding] = []
    for patient, splits in sorted(by_patient.items()):
        if len(splits) < 2:
            continue
        names = sorted(splits, key=lambda s: (split_rank(s), s))
        home = names[0]
        for split in names[1:]:
            here = sorted(item.image for item in splits[split])
            findings.append(
                Finding(
                    "patient_in_two_splits",
                    "error",
                    f"patient '{patient}' has {len(here)} image(s) in {split} and "
                    f"{len(splits[home])} in {home}: leakage",
                    file=here[0],
                    split=split,
                    other_file=sorted(item.image for item in splits[home])[0],
                    other_split=home,
                    hint="keep each patient in one split (--write-exclude drops the later "
                    "split's images)",
                    details={"patient": patient},
                    exclude=here,
                )
            )
    return findings
