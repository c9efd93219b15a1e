"""Boundary metrics of segmentations: HD95, ASSD and the normalised surface Dice.

Overlap (Dice, IoU) says how much of an object was found, not how well its outline was
drawn: a mask one pixel too wide all round and a mask with a far-away speck can have the
same Dice. The distances between the outlines of prediction and ground truth say that.

Definitions, for one class of one image (``P`` the predicted mask, ``G`` the true one):
    * The *boundary* of a mask is its pixels with a 4-neighbour outside the mask (or
      outside the image): ``mask & ~binary_erosion(mask)`` with the cross structure and
      pixels beyond the image counting as outside, as in MedPy and MONAI.
    * ``d(x, B)`` is the Euclidean distance from boundary pixel ``x`` to the nearest
      boundary pixel of the other mask (``scipy.ndimage.distance_transform_edt``), in
      pixels, or in µm when the pixel spacing is given.
    * **HD95**: ``max(q95(d(∂P, ∂G)), q95(d(∂G, ∂P)))``, the larger of the two directed
      95th percentiles (linear interpolation), as MONAI, DeepMind's ``surface-distance``
      and Metrics Reloaded define it.
    * **ASSD**: the mean of all distances of both directions pooled,
      ``(Σ d(∂P, ∂G) + Σ d(∂G, ∂P)) / (|∂P| + |∂G|)`` (Heimann et al. 2009; MONAI's
      ``symmetric=True``).
    * **NSD** at tolerance ``τ``: the share of the boundary pixels of both masks lying
      within ``τ`` of the other boundary,
      ``(|{x ∈ ∂P: d ≤ τ}| + |{x ∈ ∂G: d ≤ τ}|) / (|∂P| + |∂G|)`` (Nikolov et al. 2021,
      on boundary pixels as MONAI's ``compute_surface_dice``).

Conventions for empty masks:
    * Both empty (the class is neither in the image nor predicted): every score is NaN;
      the image says nothing about this class and is left out of its means.
    * Exactly one empty (a missed or an invented object): HD95 and ASSD are the image's
      diagonal (the largest distance possible in it, in the same unit), NSD is 0. MedPy
      raises and MONAI returns inf or NaN here; a finite worst value keeps such images
      in the means, where they belong.
    * Pixels whose ground truth is ``ignore_index`` are not boundary pixels of either mask
      (they neither measure nor are measured).

Example:
    >>> import numpy as np
    >>> true = np.zeros((12, 12), bool); true[3:9, 3:9] = True
    >>> pred = np.zeros((12, 12), bool); pred[3:9, 4:10] = True   # shifted by one pixel
    >>> scores = surface_scores(pred, true, tolerance=1.0)
    >>> scores.hd95, round(scores.nsd, 3)
    (1.0, 1.0)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mediscope.metrics.bootstrap import Interval, bootstrap

#: Keys of the per-class scores, in the order they are written.
SURFACE_KEYS = ("hd95", "assd", "nsd")

_CROSS = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class SurfaceScores:
    """HD95, ASSD (in pixels or µm) and NSD (a share) of one mask pair; NaN when undefined."""

    hd95: float
    assd: float
    nsd: float


def boundary(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a boolean mask (4-neighbourhood, image edge outside)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask
    return mask & ~ndimage.binary_erosion(mask, structure=_CROSS, border_value=0)


def _spacing(spacing: float | Sequence[float] | None, ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim)
    values = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (ndim,)).copy()
    if not np.all(values > 0):
        raise ValueError(f"pixel spacing must be positive, got {values.tolist()}")
    return values


def directed_distances(source: np.ndarray, target: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance from each ``source`` pixel to the nearest ``target`` pixel (both boolean).

    Only the bounding box of both sets is transformed: every point involved lies inside
    it, so the distances are those of the whole image.
    """
    both = source | target
    rows, cols = np.flatnonzero(both.any(axis=1)), np.flatnonzero(both.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    distance = ndimage.distance_transform_edt(~target[box], sampling=spacing)
    return np.asarray(distance)[source[box]]


def surface_scores(
    pred: np.ndarray,
    true: np.ndarray,
    *,
    tolerance: float,
    spacing: float | Sequence[float] | None = None,
    valid: np.ndarray | None = None,
) -> SurfaceScores:
    """HD95, ASSD and NSD of one predicted mask against its ground truth.

    Args:
        pred: Boolean ``(H, W)`` predicted mask of one class.
        true: Boolean ``(H, W)`` true mask.
        tolerance: The NSD tolerance, in the unit of the distances.
        spacing: Pixel size (one number, or per axis ``(row, column)``), e.g. in µm;
            distances are in pixels when None.
        valid: Pixels that count (False where the ground truth is ignored); all if None.

    Returns:
        The :class:`SurfaceScores` (see the module's conventions for empty masks).
    """
    pred, true = np.asarray(pred, dtype=bool), np.asarray(true, dtype=bool)
    if pred.shape != true.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {true.shape} differ")
    sampling = _spacing(spacing, pred.ndim)
    edge_p, edge_t = boundary(pred), boundary(true)
    if valid is not None:
        edge_p, edge_t = edge_p & valid, edge_t & valid
    has_p, has_t = bool(edge_p.any()), bool(edge_t.any())
    if not has_p and not has_t:
        return SurfaceScores(math.nan, math.nan, math.nan)
    if not has_p or not has_t:
        diagonal = float(np.sqrt(np.sum((np.array(pred.shape) * sampling) ** 2)))
        return SurfaceScores(diagonal, diagonal, 0.0)
    d_pt = directed_distances(edge_p, edge_t, sampling)
    d_tp = directed_distances(edge_t, edge_p, sampling)
    hd95 = max(float(np.percentile(d_pt, 95)), float(np.percentile(d_tp, 95)))
    total = d_pt.size + d_tp.size
    assd = float((d_pt.sum() + d_tp.sum()) / total)
    nsd = float((np.count_nonzero(d_pt <= tolerance) + np.count_nonzero(d_tp <= tolerance)) / total)
    return SurfaceScores(hd95, assd, nsd)


def class_surface_scores(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    num_classes: int,
    tolerance: float,
    spacing: float | Sequence[float] | None = None,
    ignore_index: int | None = None,
) -> np.ndarray:
    """Per foreground class, the :class:`SurfaceScores` of one image as an array.

    Args:
        pred: Predicted classes ``(H, W)``.
        target: True classes ``(H, W)``.
        num_classes: K, background (class 0) included; with K = 1 the single class is
            scored.
        tolerance: The NSD tolerance, in pixels or the unit of ``spacing``.
        spacing: Pixel size, or None for distances in pixels.
        ignore_index: Target value whose pixels are not boundary pixels of either mask.

    Returns:
        ``(F, 3)`` float array, one row per foreground class (1..K-1), columns
        :data:`SURFACE_KEYS`; NaN rows for classes absent from both masks.
    """
    pred, target = np.asarray(pred), np.asarray(target)
    valid = None if ignore_index is None else target != ignore_index
    first = 1 if num_classes > 1 else 0
    rows = []
    for k in range(first, num_classes):
        scores = surface_scores(
            pred == k, target == k, tolerance=tolerance, spacing=spacing, valid=valid
        )
        rows.append((scores.hd95, scores.assd, scores.nsd))
    return np.array(rows, dtype=np.float64).reshape(-1, len(SURFACE_KEYS))


def surface_report(per_image: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Split-level boundary metrics from every image's per-class scores.

    Args:
        per_image: ``(N, F, 3)`` from :func:`class_surface_scores`, one per image.
        classes: All K class names, background first (only the foreground ones are used).

    Returns:
        ``hd95_mean``, ``assd_mean``, ``nsd_mean`` (per class the mean over the images
        where it is defined, then the mean over the classes that have one), and
        ``hd95/<class>``, ``assd/<class>``, ``nsd/<class>`` per foreground class (NaN
        when the class is in no image nor prediction).
    """
    per_image = np.asarray(per_image, dtype=np.float64).reshape(-1, *per_image.shape[-2:])
    names = list(classes)[1:] if len(classes) > 1 else list(classes)
    if per_image.shape[1] != len(names):
        raise ValueError(f"{per_image.shape[1]} foreground classes for names {names}")
    per_class = np.full((len(names), len(SURFACE_KEYS)), np.nan)
    if len(per_image):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a class in no image: NaN
            per_class = np.nanmean(per_image, axis=0)
    out: dict[str, float] = {}
    for j, key in enumerate(SURFACE_KEYS):
        column = per_class[:, j]
        finite = column[np.isfinite(column)]
        out[f"{key}_mean"] = float(finite.mean()) if finite.size else math.nan
    for j, key in enumerate(SURFACE_KEYS):
        for i, name in enumerate(names):
            out[f"{key}/{name}"] = float(per_class[i, j])
    return out


def image_surface_means(scores: np.ndarray) -> dict[str, float]:
    """One image's ``hd95``, ``assd``, ``nsd``: means over its classes with a score.

    An image where no foreground class is in either mask scores NaN for all three
    (there is no boundary to measure).
    """
    out = {}
    for j, key in enumerate(SURFACE_KEYS):
        column = scores[:, j]
        finite = column[np.isfinite(column)]
        out[key] = float(finite.mean()) if finite.size else math.nan
    return out


def surface_intervals(
    per_image: np.ndarray,
    classes: Sequence[str],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, Interval]:
    """Bootstrap intervals of :func:`surface_report`'s metrics, resampling images
    (or ``groups``: the images of one patient together)."""
    per_image = np.asarray(per_image, dtype=np.float64)
    return bootstrap(
        len(per_image),
        lambda idx: surface_report(per_image[idx], classes),
        resamples=resamples,
        confidence=confidence,
        seed=seed,
        groups=groups,
    )
