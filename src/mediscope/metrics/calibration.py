"""Calibration of class probabilities: reliability bins, expected calibration error,
temperature scaling, and the run folder's ``calibration.json`` that stores what the
validation split fixed (the temperature and the operating-point thresholds)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mediscope.errors import DataError
from mediscope.files import write_json_atomic

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


# -- temperature scaling -----------------------------------------------------------------

#: Temperatures searched by :func:`fit_temperature` (a model is rarely off by more).
TEMPERATURE_RANGE = (0.05, 20.0)


def _log_probs(probs: np.ndarray) -> np.ndarray:
    """Logits up to a per-row constant: ``log p`` (softmax is invariant to the shift)."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax probabilities ``(N, C)`` rescaled by ``temperature``: ``softmax(z / T)``.

    The logits ``z`` are recovered from ``probs`` up to a per-row constant (``log p``),
    which softmax ignores, so this works on any model's probabilities (eager or exported).
    ``T > 1`` softens over-confident probabilities; the top-1 class never changes.

    Example:
        >>> p = np.array([[0.9, 0.1]])
        >>> apply_temperature(p, 1.0).round(3).tolist()
        [[0.9, 0.1]]
        >>> apply_temperature(p, 2.0).round(3).tolist()  # 3:1 = sqrt(9:1)
        [[0.75, 0.25]]
    """
    if temperature == 1.0:
        return np.asarray(probs)
    z = _log_probs(probs) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.asarray(probs).dtype, copy=False)


def apply_temperature_sigmoid(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Independent (sigmoid) probabilities rescaled by ``temperature``: ``sigmoid(z / T)``.

    Example:
        >>> apply_temperature_sigmoid(np.array([[0.9, 0.5]]), 2.0).round(3).tolist()
        [[0.75, 0.5]]
    """
    if temperature == 1.0:
        return np.asarray(probs)
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1 - 1e-12)
    z = np.log(p) - np.log1p(-p)
    out = 1.0 / (1.0 + np.exp(-z / float(temperature)))
    return out.astype(np.asarray(probs).dtype, copy=False)


def negative_log_likelihood(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean ``-log p(true class)`` of softmax probabilities ``(N, C)``."""
    labels = np.asarray(labels, dtype=np.int64)
    p = np.clip(np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), labels], 1e-12, 1.0)
    return float(-np.log(p).mean()) if len(labels) else float("nan")


def binary_negative_log_likelihood(targets: np.ndarray, probs: np.ndarray) -> float:
    """Mean binary cross-entropy of independent probabilities against 0/1 ``targets``."""
    t = np.asarray(targets, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1 - 1e-12)
    return float(-(t * np.log(p) + (1 - t) * np.log1p(-p)).mean()) if t.size else float("nan")


def fit_temperature(labels: np.ndarray, probs: np.ndarray, *, multilabel: bool = False) -> float:
    """The temperature ``T`` that minimises the negative log-likelihood of ``probs``.

    Temperature scaling (Guo et al. 2017): one scalar fitted on held-out (validation)
    predictions; it changes confidence, never the ranking of classes within an image.
    The search is a bounded scalar minimisation over ``log T`` in
    :data:`TEMPERATURE_RANGE`.

    Args:
        labels: ``(N,)`` class indices, or ``(N, L)`` 0/1 targets with ``multilabel``.
        probs: ``(N, C)`` softmax probabilities, or ``(N, L)`` sigmoid ones.
        multilabel: Independent sigmoid outputs (one temperature for all labels).

    Returns:
        ``T`` (1.0 when there is nothing to fit on).
    """
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels)
    if len(labels) == 0:
        return 1.0
    if multilabel:

        def loss(log_t: float) -> float:
            return binary_negative_log_likelihood(
                labels, apply_temperature_sigmoid(np.asarray(probs, np.float64), np.exp(log_t))
            )
    else:

        def loss(log_t: float) -> float:
            return negative_log_likelihood(
                labels, apply_temperature(np.asarray(probs, np.float64), np.exp(log_t))
            )

    low, high = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    result = minimize_scalar(loss, bounds=(low, high), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


# -- what validation fixed, stored in the run folder ---------------------------------------

#: The run folder's file holding the temperature and the thresholds chosen on validation.
CALIBRATION_FILE = "calibration.json"


@dataclass
class Calibration:
    """What validation fixed: the temperature and the per-class thresholds."""

    temperature: float = 1.0
    thresholds: dict[str, float] = field(default_factory=dict)
    fitted_on: str = "val"
    n_images: int = 0
    multilabel: bool = False

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """``probs`` with the temperature applied (softmax or sigmoid outputs)."""
        if self.multilabel:
            return apply_temperature_sigmoid(probs, self.temperature)
        return apply_temperature(probs, self.temperature)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of :data:`CALIBRATION_FILE`."""
        return {
            "temperature": self.temperature,
            "thresholds": self.thresholds,
            "fitted_on": self.fitted_on,
            "n_images": self.n_images,
            "multilabel": self.multilabel,
        }


def write_calibration(run_dir: Path, calibration: Calibration) -> Path:
    """Writes :data:`CALIBRATION_FILE` in ``run_dir``."""
    return write_json_atomic(run_dir / CALIBRATION_FILE, calibration.to_json())


def read_calibration(run_dir: Path | None) -> Calibration | None:
    """The calibration stored in ``run_dir``; None when there is none.

    Raises:
        DataError: the file is there but unreadable.
    """
    if run_dir is None:
        return None
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Calibration(
            temperature=float(data.get("temperature", 1.0)),
            thresholds={str(k): float(v) for k, v in (data.get("thresholds") or {}).items()},
            fitted_on=str(data.get("fitted_on", "val")),
            n_images=int(data.get("n_images", 0)),
            multilabel=bool(data.get("multilabel", False)),
        )
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(
            f"cannot read {CALIBRATION_FILE}: {exc}",
            where=path,
            hint="run `mediscope validate` again to rewrite it",
        ) from None
