"""Calibration of class probabilities: reliability bins and expected calibration error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Equal-width confidence bins of the reliability diagram and the ECE.
ECE_BINS = 15


@dataclass(frozen=True)
class Reliability:
    """Top-1 confidence against accuracy in equal-width bins over [0, 1]."""

    edges: np.ndarray  # (B + 1,)
    confidence: np.ndarray  # (B,) mean top-1 probability per bin (NaN when empty)
    accuracy: np.ndarray  # (B,) share of right predictions per bin (NaN when empty)
    counts: np.ndarray  # (B,) predictions per bin

    @property
    def ece(self) -> float:
        """Expected calibration error: bin gaps weighted by the share of predictions."""
        total = self.counts.sum()
        if total == 0:
            return float("nan")
        used = self.counts > 0
        gaps = np.abs(self.accuracy[used] - self.confidence[used])
        return float((gaps * self.counts[used]).sum() / total)


def reliability(labels: np.ndarray, probs: np.ndarray, *, bins: int = ECE_BINS) -> Reliability:
    """Bins the top-1 probability of ``probs`` (N x C) and measures accuracy per bin.

    A prediction of confidence exactly ``k / bins`` falls in bin ``k - 1`` (bins are
    closed on the right, as in Guo et al. 2017), confidence 0 in the first bin.
    """
    labels = np.asarray(labels)
    confidence = probs.max(axis=1) if len(probs) else np.zeros(0)
    right = (probs.argmax(axis=1) == labels) if len(probs) else np.zeros(0, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidence, minlength=bins) / counts
        accuracy = np.bincount(index, weights=right.astype(float), minlength=bins) / counts
    return Reliability(edges, mean_conf, accuracy, counts.astype(np.int64))


def expected_calibration_error(
    labels: np.ndarray, probs: np.ndarray, *, bins: int = ECE_BINS
) -> float:
    """ECE of the top-1 probability in ``bins`` equal-width bins (0 = calibrated)."""
    return reliability(labels, probs, bins=bins).ece
