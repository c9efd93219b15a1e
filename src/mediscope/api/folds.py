"""k-fold cross-validation: one sub-run per fold, then a summary with mean ± sd."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mediscope.api.evaluate import write_run_report
from mediscope.api.fitting import FitResult, fit
from mediscope.config.loader import dump_config
from mediscope.config.schema import Config
from mediscope.engine.run_dir import CHECKPOINTS, LAST, create_run_dir, latest_run
from mediscope.engine.training import check_resume_config
from mediscope.errors import ConfigError
from mediscope.files import write_text_atomic
from mediscope.tasks import data_module, task_spec


@dataclass
class FoldsResult:
    """The parent run folder, each fold's result and the summary table."""

    run_dir: Path
    folds: list[FitResult]
    summary: pd.DataFrame


def fold_config(config: Config, folds: int, fold: int) -> Config:
    """The config of one fold: a stratified (and patient-grouped) k-fold split."""
    cfg = config.model_copy(deep=True)
    cfg.data.split.folds = folds
    cfg.data.split.fold = fold
    cfg.data.split.method = "kfold"
    return cfg


def fit_folds(config: Config, folds: int, *, resume: str | Path | None = None) -> FoldsResult:
    """Trains ``folds`` models, each validated on one fold, under identical settings.

    Args:
        config: The validated config; its split becomes a k-fold split.
        folds: k, at least 2.
        resume: ``"last"`` or a cross-validation run folder: finished folds are kept,
            an interrupted fold continues from its last checkpoint.

    Returns:
        The parent run folder (``fold-0`` ... and ``cv_summary.csv`` / ``.md`` in it),
        the per-fold results and the summary.
    """
    if folds < 2:
        raise ConfigError(f"--folds {folds}: at least 2 folds are needed", where="--folds")
    if resume is None:
        # Check the data splits into these folds before creating any file.
        data_module(fold_config(config, folds, 0)).prepare_samples()
        parent = create_run_dir(config.run.dir, config.run.name)
    else:
        parent = latest_cv_run(config) if str(resume) == "last" else Path(resume)
        check_resume_config(config, parent)
    write_text_atomic(parent / "config.yaml", dump_config(config))
    results = []
    for fold in range(folds):
        sub = parent / f"fold-{fold}"
        cfg = fold_config(config, folds, fold)
        last = sub / CHECKPOINTS / LAST
        if (sub / "val_metrics.json").is_file() and resume is not None:
            results.append(_finished(sub, cfg))
            continue
        if last.is_file():
            results.append(fit(cfg, resume=last))
        else:
            sub.mkdir(parents=True, exist_ok=True)
            results.append(fit(cfg, run_dir=sub))
    keys = task_spec(config).summary.folds
    summary = summarize(parent, [r.val_metrics for r in results], keys=keys)
    write_run_report(config, parent)
    return FoldsResult(parent, results, summary)


def latest_cv_run(config: Config) -> Path:
    """The newest run of ``run.name`` that has fold folders."""
    candidates = sorted(
        (p for p in (config.run.dir / config.run.name).glob("*") if (p / "fold-0").is_dir()),
        key=lambda p: p.stat().st_mtime,
    )
    if not candidates:
        return latest_run(config.run.dir, config.run.name)  # raises the usual message
    return candidates[-1]


def _finished(sub: Path, config: Config) -> FitResult:
    metrics = json.loads((sub / "val_metrics.json").read_text())
    return FitResult(
        run_dir=sub,
        monitor=config.checkpoint.monitor,
        best_checkpoint=sub / CHECKPOINTS / "best.ckpt",
        best_epoch=int(metrics.get("epoch", -1)),
        best_score=None,
        epochs_run=config.trainer.max_epochs,
        seconds=0.0,
        val_metrics=metrics,
    )


def summarize(
    parent: Path, per_fold: list[dict[str, float]], *, keys: tuple[str, ...]
) -> pd.DataFrame:
    """Writes ``cv_summary.csv`` and ``cv_summary.md``: a row per fold, mean and sd.

    Args:
        parent: The cross-validation run folder.
        per_fold: Each fold's validation metrics.
        keys: The metrics to summarise (those every fold has).
    """
    keys = tuple(k for k in keys if all(k in m for m in per_fold))
    table = pd.DataFrame([{k: m[k] for k in keys} for m in per_fold])
    table.insert(0, "fold", [str(i) for i in range(len(per_fold))])
    values = table[list(keys)].to_numpy(dtype=float)
    mean = np.nanmean(values, axis=0)
    sd = np.nanstd(values, axis=0, ddof=1) if len(per_fold) > 1 else np.zeros(len(keys))
    table.loc[len(table)] = ["mean", *mean]
    table.loc[len(table)] = ["sd", *sd]
    write_text_atomic(parent / "cv_summary.csv", table.to_csv(index=False))
    lines = [
        f"# Cross-validation: {len(per_fold)} folds",
        "",
        "| fold | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for i, metrics in enumerate(per_fold):
        lines.append(f"| {i} | " + " | ".join(f"{metrics[k]:.4f}" for k in keys) + " |")
    lines.append(
        "| **mean ± sd** | "
        + " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in zip(mean, sd, strict=True))
        + " |"
    )
    write_text_atomic(parent / "cv_summary.md", "\n".join(lines) + "\n")
    return table
