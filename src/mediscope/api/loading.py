"""``mediscope.load``: a trained model as a :class:`~mediscope.runtime.predictor.Predictor`.

An exported ``.onnx`` file runs on onnxruntime and imports neither torch nor Lightning,
timm or segmentation-models-pytorch; a TorchScript file needs torch only; a run folder or
checkpoint restores the eager PyTorch model (and offers Grad-CAM for classifiers).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from mediscope.errors import ConfigError
from mediscope.runtime.backends import OnnxBackend, TorchScriptBackend
from mediscope.runtime.predictor import Predictor

#: File suffixes of TorchScript exports.
TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".torchscript", ".jit")
CONFIG_SUFFIXES = (".yaml", ".yml")


def load(
    source: str | Path,
    *,
    checkpoint: str | Path | None = None,
    config: str | Path | None = None,
    device: str = "cpu",
    batch_size: int | None = None,
    overrides: list[str] | None = None,
    threads: int | None = None,
    score_threshold: float | None = None,
    iou_threshold: float | None = None,
    agnostic_nms: bool | None = None,
) -> Predictor:
    """A trained model, ready to predict images.

    A detector without a calibrated score threshold (a run stopped before its final
    validation, and no ``inference.score_threshold``) uses
    :data:`~mediscope.runtime.info.DEFAULT_SCORE_THRESHOLD` and warns
    (``UserWarning``); give ``score_threshold`` to choose one.

    Args:
        source: A run folder (its ``config.yaml`` and ``checkpoints/best.ckpt``), a
            checkpoint (``.ckpt``; its run folder's config, or ``config``), a config
            file (with ``checkpoint``), or an exported model (``.onnx``, or TorchScript
            ``.pt``).
        checkpoint: The weights, for a config file or to pick another checkpoint of a
            run folder.
        config: The config of a checkpoint outside its run folder.
        device: ``cpu`` or ``cuda``.
        batch_size: Images, windows or tiles per forward pass; default: the model's
            ``inference.batch_size``.
        overrides: ``KEY=VALUE`` config overrides (eager models), e.g.
            ``["inference.window=512"]``.
        threads: onnxruntime intra-op threads (default: all cores).
        score_threshold: Detection: boxes scoring less are dropped; default: the run's
            calibrated threshold (``inference.score_threshold: auto``).
        iou_threshold: Detection: boxes overlapping more are one object; default:
            ``inference.iou_threshold``.
        agnostic_nms: Detection: also suppress overlapping boxes of different classes;
            default: ``inference.agnostic_nms``.

    Returns:
        The predictor.

    Raises:
        ConfigError: a missing or unreadable source, one line naming it.

    Example:
        >>> import mediscope  # doctest: +SKIP
        >>> predictor = mediscope.load("runs/demo-gram-stain")  # doctest: +SKIP
        >>> result = predictor.predict("smear.png")  # doctest: +SKIP
        >>> result.counts()  # doctest: +SKIP
        {'gram_positive_cocci': 31, 'gram_negative_bacilli': 12}
    """
    path = Path(source)
    if not path.exists():
        raise ConfigError("not found", where=path, hint="give a run folder or a model file")
    suffix = path.suffix.lower()
    predictor: Predictor
    if path.is_file() and suffix == ".onnx":
        _refuse_eager_options(path, checkpoint, config, overrides)
        backend: Any = OnnxBackend(path, device=device, threads=threads)
        predictor = Predictor(backend, backend.info, batch_size=batch_size)
    elif path.is_file() and suffix in TORCHSCRIPT_SUFFIXES:
        _refuse_eager_options(path, checkpoint, config, overrides)
        backend = TorchScriptBackend(path, device=device)
        predictor = Predictor(backend, backend.info, batch_size=batch_size)
    else:
        predictor = _load_eager(path, checkpoint, config, device, batch_size, overrides or [])
    predictor = predictor.with_settings(
        score_threshold=score_threshold, iou_threshold=iou_threshold, agnostic_nms=agnostic_nms
    )
    if predictor.task == "detection" and predictor.info.inference.uncalibrated:
        warnings.warn(
            f"{path}: no calibrated score threshold; boxes scoring at least "
            f"{predictor.info.inference.score_threshold:g} are kept (the default). Run "
            "`mediscope validate` on the run to calibrate it, or give score_threshold=",
            UserWarning,
            stacklevel=2,
        )
    return predictor


def _refuse_eager_options(path: Path, *options: Any) -> None:
    if any(option for option in options):
        raise ConfigError(
            "an exported model carries its config and weights",
            where=path,
            hint="drop checkpoint, config and overrides, or load the run folder",
        )


def resolve_run(
    path: Path, checkpoint: str | Path | None, config: str | Path | None
) -> tuple[Path, Path]:
    """The config file and checkpoint of a run folder, a checkpoint or a config file."""
    from mediscope.engine.run_dir import BEST, CHECKPOINTS, run_dir_of

    if path.is_dir():
        return Path(config or path / "config.yaml"), Path(checkpoint or path / CHECKPOINTS / BEST)
    if path.suffix.lower() in CONFIG_SUFFIXES:
        if checkpoint is None:
            raise ConfigError(
                "a config file needs its checkpoint",
                where=path,
                hint="give checkpoint=PATH (--checkpoint), or a run folder",
            )
        return path, Path(checkpoint)
    if path.suffix.lower() == ".ckpt":
        run = run_dir_of(path)
        if config is None and run is None:
            raise ConfigError(
                "a checkpoint outside its run folder needs its config",
                where=path,
                hint="give config=PATH to the run's config.yaml",
            )
        return Path(config) if config else run / "config.yaml", path  # type: ignore[operator]
    raise ConfigError(
        "not a run folder, checkpoint, config or exported model",
        where=path,
        hint="give a run folder, a .ckpt, a .yaml with a checkpoint, an .onnx or a .pt",
    )


def _load_eager(
    path: Path,
    checkpoint: str | Path | None,
    config_path: str | Path | None,
    device: str,
    batch_size: int | None,
    overrides: list[str],
) -> Predictor:
    from mediscope.inference.model_info import eager_predictor
    from mediscope.tasks.validate import load_config

    config_file, ckpt = resolve_run(path, checkpoint, config_path)
    if not ckpt.is_file():
        raise ConfigError("checkpoint not found", where=ckpt, hint="train first, or give one")
    config = load_config(config_file, overrides)
    return eager_predictor(config, ckpt, device=device, batch_size=batch_size)
