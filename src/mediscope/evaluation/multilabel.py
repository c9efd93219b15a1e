"""Evaluating a multi-label checkpoint on a split.

Writes ``<split>_metrics.json`` (:func:`mediscope.metrics.multilabel.multilabel_report`
with bootstrap intervals), ROC and precision-recall curves per label and
``<split>_results.npz`` (targets, probabilities, paths, labels). Each label's threshold
is its F1-optimal threshold on the validation split (stored in the run's
``calibration.json`` with the temperature of ``report.calibrate`` and the thresholds of
``report.operating_point``), then held fixed for test and predict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mediscope.config.schema import Config
from mediscope.engine.checkpoints import read_checkpoint
from mediscope.evaluation.calibration import calibration_metrics, fit_calibration
from mediscope.files import write_json_atomic, write_with
from mediscope.metrics.bootstrap import bootstrap, bootstrap_unit, group_codes, interval_keys
from mediscope.metrics.calibration import Calibration, read_calibration, write_calibration
from mediscope.metrics.multilabel import binary_ece, f1_thresholds, multilabel_report
from mediscope.reports.multilabel import plot_label_curves
from mediscope.tasks.spec import EvaluationInputs


def evaluate_multilabel(inputs: EvaluationInputs, *, out_dir: Path) -> dict[str, float]:
    """Evaluates ``checkpoint`` on ``split`` (val or test) and writes its outputs.

    Returns:
        The flat metrics written to ``<split>_metrics.json``.
    """
    from mediscope.engine.restore import evaluation_inputs, predict_probs

    config, checkpoint, split = inputs.config, inputs.checkpoint, inputs.split
    task = inputs.task
    classes = list(task.classes)
    targets, raw = predict_probs(task, inputs.datamodule.loader(inputs.dataset, train=False))
    targets = targets.astype(np.int64)
    if split == "val":
        calibration = _fit(config, targets, raw, classes)
        write_calibration(out_dir, calibration)
    else:
        stored = read_calibration(out_dir)
        if stored is None:
            val = evaluation_inputs(config, checkpoint, split="val")
            val_targets, val_raw = predict_probs(
                val.task, val.datamodule.loader(val.dataset, train=False)
            )
            stored = _fit(config, val_targets.astype(np.int64), val_raw, classes)
            write_calibration(out_dir, stored)
        calibration = stored
    probs = calibration.apply(raw)
    thresholds = {k: v for k, v in calibration.thresholds.items() if k.startswith("threshold/")}
    metrics = multilabel_report(targets, probs, classes, thresholds)
    metrics.update(thresholds)
    metrics["epoch"] = float(read_checkpoint(checkpoint).get("epoch", -1))
    report = config.report
    groups = group_codes([s.group for s in inputs.samples.samples])
    intervals = bootstrap(
        len(targets),
        lambda idx: multilabel_report(targets[idx], probs[idx], classes, thresholds),
        resamples=report.bootstrap,
        confidence=report.confidence,
        seed=config.seed,
        groups=groups,
    )
    metrics.update(
        interval_keys(
            intervals,
            resamples=report.bootstrap,
            confidence=report.confidence,
            unit=bootstrap_unit(groups, len(targets)),
        )
    )
    if config.report.calibrate != "none" or config.report.operating_point is not None:
        op = Calibration(
            calibration.temperature,
            {k: v for k, v in calibration.thresholds.items() if not k.startswith("threshold/")},
            multilabel=True,
        )
        extra = calibration_metrics(
            config, op, targets, raw, classes, ece=binary_ece, groups=groups
        )
        metrics.update({k: v for k, v in extra.items() if k not in metrics})
    plots = out_dir / "plots"
    plot_label_curves(targets, probs, classes, plots, split=split)
    if config.report.calibrate != "none":
        from mediscope.reports.multilabel import plot_label_calibration

        plot_label_calibration(
            targets,
            raw,
            probs,
            plots / f"{split}_calibration.png",
            title=f"{split}: temperature T = {calibration.temperature:.3f} (fitted on val)",
        )
    _save_results(out_dir / f"{split}_results.npz", targets, probs, inputs.samples.ids(), classes)
    write_json_atomic(out_dir / f"{split}_metrics.json", metrics)
    return metrics


def _fit(config: Config, targets: np.ndarray, raw: np.ndarray, classes: list[str]) -> Calibration:
    """Temperature, operating points and each label's F1-optimal threshold, on validation."""
    calibration = fit_calibration(config, targets, raw, classes, multilabel=True)
    calibration.thresholds.update(f1_thresholds(targets, calibration.apply(raw), classes))
    return calibration


def _save_results(
    out: Path, targets: np.ndarray, probs: np.ndarray, paths: list[str], classes: list[str]
) -> Path:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as file:
            np.savez(
                file,
                labels=targets,
                probs=probs.astype(np.float32),
                paths=np.array(paths),
                classes=np.array(classes),
            )

    return write_with(out, write)
