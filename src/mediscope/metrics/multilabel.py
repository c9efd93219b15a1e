"""Multi-label classification metrics: each image may carry any number of the L labels.

Every label is a binary problem of its own (one sigmoid output): per label the AUROC,
average precision (AP), and at the label's threshold precision, sensitivity (recall),
specificity and F1; overall their macro means, the micro F1 (all image-label pairs
pooled), the exact-match ratio (every label of the image right) and the ECE of the
label probabilities (pooled image-label pairs, 15 bins).

Thresholds are 0.5 unless given; :func:`f1_thresholds` finds each label's F1-optimal
threshold (on the validation split, then held fixed).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mediscope.metrics.bootstrap import binary_auroc
from mediscope.metrics.calibration import ECE_BINS

#: Threshold of a label without a chosen one.
DEFAULT_THRESHOLD = 0.5


def average_precision(positives: np.ndarray, scores: np.ndarray) -> float:
    """Average precision: ``sum (R_n - R_{n-1}) P_n`` over the distinct scores, falling
    (sklearn's ``average_precision_score``); NaN without positives.

    Example:
        >>> average_precision(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]))
        0.8333333333333333
    """
    positives = np.asarray(positives).astype(bool)
    n_pos = int(positives.sum())
    if n_pos == 0:
        return float("nan")
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], positives[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tps = np.cumsum(y)[last]
    precision = tps / (last + 1)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def f1_thresholds(targets: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Per label the threshold with the highest F1 (``threshold/<label>``); 0.5 for a
    label without positives. A label is present when its probability is at or above.

    Example:
        >>> t = np.array([[1], [1], [0], [0]])
        >>> p = np.array([[0.9], [0.4], [0.3], [0.1]])
        >>> f1_thresholds(t, p, ["a"])
        {'threshold/a': 0.4}
    """
    out: dict[str, float] = {}
    for c, name in enumerate(classes):
        y = np.asarray(targets[:, c]).astype(bool)
        s = np.asarray(probs[:, c], dtype=np.float64)
        if not y.any():
            out[f"threshold/{name}"] = DEFAULT_THRESHOLD
            continue
        order = np.argsort(-s, kind="mergesort")
        ss, yy = s[order], y[order]
        last = np.r_[np.flatnonzero(np.diff(ss) != 0), len(ss) - 1]
        tp = np.cumsum(yy)[last]
        called = last + 1
        f1 = 2 * tp / (called + y.sum())
        out[f"threshold/{name}"] = float(ss[last][int(np.argmax(f1))])
    return out


def binary_ece(targets: np.ndarray, probs: np.ndarray, *, bins: int = ECE_BINS) -> float:
    """ECE of independent probabilities: the gap between the mean probability and the
    share of positives, per equal-width bin, weighted by the bin's share (all pairs).

    Example:
        >>> binary_ece(np.array([1, 1, 1, 0]), np.array([0.9, 0.9, 0.9, 0.9]))
        0.15000000000000002
    """
    t = np.asarray(targets, dtype=np.float64).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel()
    if p.size == 0:
        return float("nan")
    index = np.clip(np.ceil(p * bins).astype(int) - 1, 0, bins - 1)
    conf = np.bincount(index, weights=p, minlength=bins)
    freq = np.bincount(index, weights=t, minlength=bins)
    return float(np.abs(conf - freq).sum() / p.size)


def multilabel_report(
    targets: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    thresholds: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Flat metrics of label probabilities ``probs`` (N x L) against 0/1 ``targets``.

    Keys: ``n_samples``, ``auroc_macro``, ``ap_macro``, ``f1_macro``, ``f1_micro``,
    ``exact_match``, ``ece`` and per label ``auroc/<l>``, ``ap/<l>``, ``precision/<l>``,
    ``recall/<l>`` (sensitivity), ``specificity/<l>``, ``f1/<l>``, ``support/<l>``
    (images with the label). Labels without positives (or without negatives, for the
    AUROC) are NaN and left out of the macro means.

    Args:
        thresholds: ``threshold/<l>`` per label (default 0.5).
    """
    targets = np.asarray(targets).astype(bool)
    probs = np.asarray(probs, dtype=np.float64)
    n, n_labels = targets.shape if targets.ndim == 2 else (len(targets), len(classes))
    cut = np.array([(thresholds or {}).get(f"threshold/{c}", DEFAULT_THRESHOLD) for c in classes])
    called = probs >= cut[None, :]
    tp = (called & targets).sum(axis=0).astype(float)
    fp = (called & ~targets).sum(axis=0).astype(float)
    fn = (~called & targets).sum(axis=0).astype(float)
    tn = (~called & ~targets).sum(axis=0).astype(float)
    support = tp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(support > 0, tp / support, np.nan)
        specificity = np.where(tn + fp > 0, tn / (tn + fp), np.nan)
        f1 = np.where(support > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    aurocs = np.array([binary_auroc(targets[:, c], probs[:, c]) for c in range(n_labels)])
    aps = np.array([average_precision(targets[:, c], probs[:, c]) for c in range(n_labels)])
    pooled = 2 * tp.sum() + fp.sum() + fn.sum()

    def mean(values: np.ndarray) -> float:
        finite = values[np.isfinite(values)]
        return float(finite.mean()) if finite.size else float("nan")

    out: dict[str, float] = {
        "n_samples": float(n),
        "auroc_macro": mean(aurocs),
        "ap_macro": mean(aps),
        "f1_macro": mean(f1),
        "f1_micro": float(2 * tp.sum() / pooled) if pooled else float("nan"),
        "exact_match": float((called == targets).all(axis=1).mean()) if n else float("nan"),
        "ece": binary_ece(targets, probs),
    }
    for c, name in enumerate(classes):
        out[f"auroc/{name}"] = float(aurocs[c])
        out[f"ap/{name}"] = float(aps[c])
        out[f"precision/{name}"] = float(precision[c])
        out[f"recall/{name}"] = float(recall[c])
        out[f"specificity/{name}"] = float(specificity[c])
        out[f"f1/{name}"] = float(f1[c])
        out[f"support/{name}"] = float(support[c])
    return out
