"""Exact and near duplicates, and patients in two splits.

Exact duplicates have the same decoded pixels (SHA-1 digest), whatever their files'
names or encodings. Near duplicates are resized, re-encoded or retouched copies: their
64-bit perceptual hashes differ in at most ``threshold`` bits (default
:data:`NEAR_THRESHOLD`), *and* their 24 x 24 thumbnails correlate by at least
:data:`MIN_CORRELATION` (Pearson, so that a brighter or more contrasted copy matches).
The hash alone cannot tell a copy from a different image of the same simple layout (one
coccus in the middle of a crop): on synthetic Gram crops such pairs are 2 bits apart,
where a 10 % brighter copy is up to 6 bits away. Their thumbnails tell them apart:
distinct synthetic crops, lesions and smears within 10 bits correlate below 0.89;
copies resized to 75 % or 150 %, re-encoded as JPEG of quality 50 or made 10 % brighter
correlate above 0.95.

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
MIN_CORRELATION = 0.92
#: Pairs whose hash distance is computed at once (memory: 8 bytes each).
_BLOCK = 1 << 22
#: Candidate pairs whose thumbnails are compared at once (memory: about 14 KB each).
_PAIRS = 4096
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
    pairs are computed in blocks (64-bit XOR and popcount) and the thumbnails of the
    pairs within ``threshold`` compared in batches, so that 30,000 images of a few
    hundred look-alike groups take seconds.
    """
    order = [i for i in _order(items) if infos[i] is not None]
    if len(order) < 2:
        return []
    known = [info for info in (infos[i] for i in order) if info is not None]
    hashes = np.array([info.phash for info in known], dtype=np.uint64)
    digest = np.unique([info.digest for info in known], return_inverse=True)[1]
    thumbs = np.stack([info.thumb.reshape(-1) for info in known])
    means = thumbs.mean(axis=1, dtype=np.float64).astype(np.float32)
    norms = np.array(
        [np.linalg.norm(t.astype(np.float32) - m) for t, m in zip(thumbs, means, strict=True)],
        dtype=np.float32,
    )
    best: dict[int, tuple[float, int, int]] = {}  # later → (-correlation, distance, earlier)
    rows = max(1, _BLOCK // len(hashes))
    for start in range(0, len(hashes), rows):
        stop = min(start + rows, len(hashes))
        distance = np.bitwise_count(hashes[start:stop, None] ^ hashes[None, :])
        close = distance <= threshold
        close &= np.arange(len(hashes))[None, :] > np.arange(start, stop)[:, None]
        row, later = np.nonzero(close)
        keep = digest[start + row] != digest[later]
        row, later = row[keep], later[keep]
        for chunk in range(0, len(row), _PAIRS):
            rows_here, later_here = row[chunk : chunk + _PAIRS], later[chunk : chunk + _PAIRS]
            found = _correlations(thumbs, means, norms, start + rows_here, later_here)
            for k in np.flatnonzero(found >= min_correlation):
                r, n = int(rows_here[k]), int(later_here[k])
                key = (-float(found[k]), int(distance[r, n]), start + r)
                if n not in best or key < best[n]:
                    best[n] = key
        if progress is not None:
            progress(stop, len(hashes))
    findings = []
    for n, (negative, bits, e) in sorted(best.items()):
        details = {"distance": bits, "correlation": round(-negative, 4)}
        findings.append(_pair("near_duplicate", items[order[n]], items[order[e]], details))
    return findings


def _correlations(
    thumbs: np.ndarray, means: np.ndarray, norms: np.ndarray, first: np.ndarray, second: np.ndarray
) -> np.ndarray:
    """Pearson correlation of the thumbnails ``first[k]`` and ``second[k]`` (indices into
    ``thumbs``, flattened uint8 with their means and centred norms): brightness and
    contrast do not count."""
    x = thumbs[first].astype(np.float32)
    y = thumbs[second].astype(np.float32)
    dots = np.einsum("ij,ij->i", x, y) - x.shape[1] * means[first] * means[second]
    scale = norms[first] * norms[second]
    return np.divide(dots, scale, out=np.zeros_like(dots), where=scale > 0)


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
