"""Calibration and operating points of a classifier, fitted on validation.

With ``report.calibrate: temperature`` the validation evaluation fits one temperature to
the validation probabilities (:func:`mediscope.metrics.calibration.fit_temperature`);
with ``report.operating_point`` it chooses per-class thresholds on them
(:mod:`mediscope.metrics.operating_points`). Both are stored in the run folder's
:data:`CALIBRATION_FILE`, which the test evaluation, ``mediscope predict`` and
``mediscope export`` read, so that every later use sees the validation's choices.

The metrics files then hold ``temperature``, ``ece_uncalibrated`` (the ECE of the raw
probabilities, beside ``ece`` of the calibrated ones) and the sensitivity and
specificity at each threshold, with bootstrap intervals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from mediscope.config.schema import Config
from mediscope.metrics.bootstrap import bootstrap, bootstrap_unit, interval_keys
from mediscope.metrics.calibration import (
    CALIBRATION_FILE,
    Calibration,
    expected_calibration_error,
    fit_temperature,
    read_calibration,
    write_calibration,
)
from mediscope.metrics.operating_points import choose_thresholds, operating_point_metrics

log = logging.getLogger(__name__)


def wanted(config: Config) -> bool:
    """Whether the config asks for calibration or operating points."""
    return config.report.calibrate != "none" or config.report.operating_point is not None


def target_of(config: Config) -> dict[str, float]:
    """The operating point's target (empty for Youden's J alone)."""
    point = config.report.operating_point
    return {} if point is None or point == "youden" else point.target()


def fit_calibration(
    config: Config,
    targets: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    *,
    labels: np.ndarray | None = None,
    multilabel: bool = False,
) -> Calibration:
    """The temperature and thresholds the config asks for, fitted on validation.

    Args:
        config: The run's config (``report.calibrate``, ``report.operating_point``).
        targets: ``(N, C)`` 0/1 truth per class (one-hot for single-label data).
        probs: ``(N, C)`` raw probabilities.
        classes: The class names.
        labels: ``(N,)`` class indices of single-label data (the temperature's target).
        multilabel: Sigmoid outputs, one per label.
    """
    temperature = 1.0
    if config.report.calibrate == "temperature":
        truth = targets if multilabel or labels is None else labels
        temperature = fit_temperature(truth, probs, multilabel=multilabel)
    calibration = Calibration(temperature, {}, "val", len(probs), multilabel)
    if config.report.operating_point is not None:
        calibration.thresholds = choose_thresholds(
            targets, calibration.apply(probs), classes, target_of(config)
        )
    return calibration


def calibration_for(
    config: Config,
    run_dir: Path,
    split: str,
    targets: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    *,
    labels: np.ndarray | None = None,
    multilabel: bool = False,
    validation: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray | None]] | None = None,
) -> Calibration | None:
    """The calibration of an evaluation: fitted here on ``val``, read back on ``test``.

    On ``val`` the calibration is fitted on these predictions and written to the run
    folder. On another split it is read from the run folder; when it is missing,
    ``validation()`` (the validation targets, probabilities and labels) fits it.
    """
    if not wanted(config):
        return None
    if split == "val":
        calibration = fit_calibration(
            config, targets, probs, classes, labels=labels, multilabel=multilabel
        )
        write_calibration(run_dir, calibration)
        return calibration
    stored = read_calibration(run_dir)
    if stored is not None:
        return stored
    if validation is None:
        log.warning("no %s in %s: the %s split is not calibrated", CALIBRATION_FILE, run_dir, split)
        return None
    val_targets, val_probs, val_labels = validation()
    calibration = fit_calibration(
        config, val_targets, val_probs, classes, labels=val_labels, multilabel=multilabel
    )
    write_calibration(run_dir, calibration)
    return calibration


def calibration_metrics(
    config: Config,
    calibration: Calibration,
    targets: np.ndarray,
    raw: np.ndarray,
    classes: list[str],
    *,
    labels: np.ndarray | None = None,
    ece: Callable[[np.ndarray, np.ndarray], float] | None = None,
    groups: np.ndarray | None = None,
) -> dict[str, float]:
    """``temperature``, ``ece_uncalibrated`` and the operating points of an evaluation,
    with bootstrap intervals (seeded as the other metrics' intervals).

    Args:
        calibration: What validation fixed.
        targets: ``(N, C)`` 0/1 truth per class.
        raw: ``(N, C)`` uncalibrated probabilities.
        labels: ``(N,)`` class indices (single-label data), for the ECE.
        ece: ECE of ``(truth, probs)``; default: top-1 ECE of ``labels``.
        groups: ``(N,)`` patient codes: the intervals resample patients (cluster bootstrap).
    """
    probs = calibration.apply(raw)
    truth = labels if labels is not None else targets
    ece_of = ece or expected_calibration_error

    def statistic(idx: np.ndarray) -> dict[str, float]:
        out: dict[str, float] = {}
        if config.report.calibrate != "none":
            out["ece_uncalibrated"] = ece_of(truth[idx], raw[idx])
        out.update(
            operating_point_metrics(targets[idx], probs[idx], classes, calibration.thresholds)
        )
        return out

    everything = np.arange(len(raw))
    metrics: dict[str, float] = dict(calibration.thresholds)
    if config.report.calibrate != "none":
        metrics["temperature"] = calibration.temperature
    metrics.update(statistic(everything))
    report = config.report
    intervals = bootstrap(
        len(raw),
        statistic,
        resamples=report.bootstrap,
        confidence=report.confidence,
        seed=config.seed,
        keys=[k for k in metrics if k in statistic(everything)],
        groups=groups,
    )
    metrics.update(
        interval_keys(
            intervals,
            resamples=report.bootstrap,
            confidence=report.confidence,
            unit=bootstrap_unit(groups, len(raw)),
        )
    )
    return metrics


def thresholds_by_class(thresholds: Mapping[str, float], prefix: str) -> dict[str, float]:
    """``{class: threshold}`` of the keys ``<prefix>/<class>``."""
    start = prefix.rstrip("/") + "/"
    return {k[len(start) :]: v for k, v in thresholds.items() if k.startswith(start)}
