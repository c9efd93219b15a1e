"""``data.intensity: percentile``: the training split's value window, computed once.

The window is the ``low`` and ``high`` percentiles of the stored values (before any
scaling to 8 bits) of up to :data:`PERCENTILE_IMAGES` training images, with up to
:data:`PIXELS_PER_IMAGE` pixels drawn from each. Training writes it into the run's
config (``data.intensity.min`` / ``max``), so that every later use of the run (resume,
evaluation, prediction, export) applies the same window without computing it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mediscope.data.images import DICOM_SUFFIXES, read_values
from mediscope.data.npz_items import is_reference, read_item
from mediscope.data.samples import Sample
from mediscope.errors import DataError

#: Training images the percentiles are computed on (a seeded random choice).
PERCENTILE_IMAGES = 500
#: Pixels drawn from each of them.
PIXELS_PER_IMAGE = 20_000


def stored_values(image: str, channels: int) -> np.ndarray:
    """An image's stored values, ``H x W`` or ``H x W x C`` (files, npz references)."""
    if is_reference(image):
        return read_item(image)
    return read_values(image, channels=channels)


def percentile_window(
    samples: Sequence[Sample], *, channels: int, low: float, high: float, seed: int
) -> tuple[float, float]:
    """``(min, max)``: the ``low`` and ``high`` percentiles of the samples' stored values.

    DICOM files are left out (``data.dicom_window`` sets their window).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> np.savez(folder / "a.npz", x=np.arange(200, dtype=np.uint16).reshape(2, 10, 10))
        >>> refs = [Sample(image=f"{folder / 'a.npz'}::x::{i}") for i in (0, 1)]
        >>> percentile_window(refs, channels=1, low=0, high=100, seed=0)
        (0.0, 199.0)

    Raises:
        DataError: when no sample has an image the window applies to.
    """
    rng = np.random.default_rng(seed)
    usable = [s for s in samples if Path(s.image).suffix.lower() not in DICOM_SUFFIXES]
    if not usable:
        raise DataError(
            "data.intensity: percentile needs training images other than DICOM",
            where="data.intensity",
            hint="DICOM images are windowed by data.dicom_window",
        )
    count = min(len(usable), PERCENTILE_IMAGES)
    picks = rng.choice(len(usable), size=count, replace=False)
    drawn = []
    for i in sorted(int(p) for p in picks):
        values = stored_values(usable[i].image, channels)
        if values.ndim == 3 and values.shape[2] == 4:
            values = values[:, :, :3]  # alpha is not intensity
        flat = np.asarray(values).reshape(values.shape[0] * values.shape[1], -1)
        if flat.shape[0] > PIXELS_PER_IMAGE:
            flat = flat[rng.choice(flat.shape[0], size=PIXELS_PER_IMAGE, replace=False)]
        drawn.append(np.asarray(flat, dtype=np.float64).ravel())
    everything = np.concatenate(drawn)
    finite = everything[np.isfinite(everything)]
    if not finite.size:
        raise DataError("the training images hold no finite values", where="data.intensity")
    lo, hi = (float(v) for v in np.percentile(finite, [low, high]))
    if not hi > lo:  # constant images: a window one unit wide keeps the values apart
        hi = lo + 1.0
    return lo, hi
