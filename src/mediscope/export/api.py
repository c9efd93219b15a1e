"""``export_run``: a run folder's model as an ONNX or TorchScript file, with its card."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mediscope.api.loading import TORCHSCRIPT_SUFFIXES
from mediscope.engine.run_dir import BEST, CHECKPOINTS, LAST
from mediscope.errors import ConfigError
from mediscope.files import refuse_overlap
from mediscope.runtime.info import ModelInfo

#: Formats and their default file names (in ``RUN_DIR/export``).
FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
#: File endings accepted for ``--output`` per format (those :func:`mediscope.load` reads).
SUFFIXES = {"onnx": (".onnx",), "torchscript": TORCHSCRIPT_SUFFIXES}
QUANTIZE = ("int8",)
EXPORT_DIR = "export"
CARD = "model_card.md"


@dataclass
class ExportResult:
    """What :func:`export_run` wrote."""

    model: Path
    info: ModelInfo
    card: Path
    int8_model: Path | None = None
    int8_report: Path | None = None
    #: The measured accuracy change of the int8 model (``model.int8.json``).
    int8: dict[str, Any] | None = None
    checkpoint: Path | None = None
    paths: list[Path] = field(default_factory=list)


def run_checkpoint(run_dir: Path) -> Path:
    """The run folder's ``best.ckpt``, else its ``last.ckpt``.

    Raises:
        ConfigError: when ``run_dir`` is not a run folder with a checkpoint.
    """
    hint = "give a run folder written by 'mediscope fit' (runs/NAME/TIME)"
    if not run_dir.is_dir():
        what = "does not exist" if not run_dir.exists() else "is not a folder"
        raise ConfigError(f"the run folder {what}", where=run_dir, hint=hint)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError("not a run folder: no config.yaml", where=run_dir, hint=hint)
    for name in (BEST, LAST):
        path = run_dir / CHECKPOINTS / name
        if path.is_file():
            return path
    raise ConfigError(
        f"the run folder holds no {CHECKPOINTS}/{BEST} or {LAST}",
        where=run_dir,
        hint="train it to the end of an epoch first ('mediscope fit')",
    )


def _check_options(format: str, quantize: str | None, opset: int) -> None:
    if format not in FORMATS:
        raise ConfigError(
            f"unknown format '{format}'", where="--format", hint=f"use {' or '.join(FORMATS)}"
        )
    if quantize is not None and quantize not in QUANTIZE:
        raise ConfigError(f"unknown quantization '{quantize}'", where="--quantize", hint="use int8")
    if quantize is not None and format != "onnx":
        raise ConfigError(
            f"--quantize {quantize} works for ONNX files only",
            where="--quantize",
            hint="export with --format onnx, or leave out --quantize",
        )
    if format == "onnx":
        from mediscope.export.onnx_export import check_opset

        check_opset(opset)


def output_path(run_dir: Path, format: str, output: Path | None) -> Path:
    """Where the model goes: ``output``, or ``RUN_DIR/export/<default name>``.

    Raises:
        ConfigError: an output that is a folder or has the wrong file ending.
    """
    if output is None:
        return run_dir / EXPORT_DIR / FORMATS[format]
    if output.is_dir():
        raise ConfigError(
            "is a folder; --output names the file to write",
            where=output,
            hint=f"e.g. --output {output / FORMATS[format]}",
        )
    if output.suffix.lower() not in SUFFIXES[format]:
        raise ConfigError(
            f"a {format} file must end in {' or '.join(SUFFIXES[format])}",
            where="--output",
            hint=f"e.g. --output {output.with_suffix(SUFFIXES[format][0])}",
        )
    return output


def int8_paths(model: Path) -> tuple[Path, Path]:
    """``model.int8.onnx`` and ``model.int8.json`` beside ``model.onnx``.

    Example:
        >>> [p.name for p in int8_paths(Path("out/model.onnx"))]
        ['model.int8.onnx', 'model.int8.json']
    """
    stem = model.name[: -len(model.suffix)] if model.suffix else model.name
    return model.with_name(f"{stem}.int8.onnx"), model.with_name(f"{stem}.int8.json")


@contextlib.contextmanager
def staged_files(folder: Path) -> Iterator[Path]:
    """A hidden folder in ``folder``; the files written in it are moved into ``folder``
    (each atomically) only when the block succeeds, else removed with it."""
    folder.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".export-", suffix=".tmp", dir=folder))
    try:
        yield stage
        for item in sorted(stage.iterdir()):
            os.replace(item, folder / item.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def export_run(
    run_dir: str | Path,
    *,
    format: str = "onnx",
    output: str | Path | None = None,
    opset: int = 17,
    dynamic_batch: bool = False,
    quantize: str | None = None,
) -> ExportResult:
    """Exports a run folder's model (``best.ckpt``) for use without mediscope's training
    stack, and writes its model card beside it.

    The file computes the runtime contract of :mod:`mediscope.runtime.info`
    (normalised image in; probabilities, or dense boxes and scores out) and carries the
    model's :class:`~mediscope.runtime.info.ModelInfo`; its outputs are checked against
    the PyTorch model before anything is written. All files appear together, or none.

    Args:
        run_dir: A run folder written by ``fit``.
        format: ``onnx`` or ``torchscript``.
        output: The model file; default ``RUN_DIR/export/model.onnx`` (or
            ``model.torchscript.pt``). The card (``model_card.md``) and the int8 files
            go beside it.
        opset: The ONNX opset.
        dynamic_batch: ONNX: a symbolic batch axis; without it the file takes one image
            at a time (``N = 1``), which lets onnxruntime plan for fixed shapes.
            Segmentation files always take any H and W (sliding windows at full
            resolution); TorchScript files take any batch size.
        quantize: ``int8``: also ``model.int8.onnx``, statically quantized with the
            validation images as calibration data, and ``model.int8.json`` with its
            accuracy against the float model's on the validation split.

    Returns:
        The paths written and the model's info.

    Raises:
        ConfigError: not a run folder, an unknown format or quantization, an opset
            this installation cannot produce, ``quantize`` with TorchScript, an output
            that is a folder, has the wrong ending or lies inside the run's checkpoints
            or data, or a model that cannot be exported (Faster R-CNN).
    """
    from mediscope.engine.checkpoints import checkpoint_meta, read_checkpoint
    from mediscope.engine.restore import task_from_checkpoint
    from mediscope.engine.trainer import quiet_lightning
    from mediscope.export.card import CardInputs, model_card
    from mediscope.export.graph import inference_graph
    from mediscope.files import write_text_atomic
    from mediscope.inference.model_info import model_info
    from mediscope.tasks.validate import load_config

    run = Path(run_dir)
    _check_options(format, quantize, opset)
    checkpoint = run_checkpoint(run)
    target = output_path(run, format, Path(output) if output is not None else None)
    config = load_config(run / "config.yaml")
    refuse_overlap(
        target,
        [run / "config.yaml", run / CHECKPOINTS, config.data.path, config.data.test_path],
        option="--output",
    )
    quiet_lightning()
    task, stats = task_from_checkpoint(config, checkpoint)
    graph = inference_graph(task)
    info = model_info(config, list(task.classes), checkpoint, stats=stats)
    stored = read_checkpoint(checkpoint)
    meta, epoch = checkpoint_meta(stored), stored.get("epoch")
    int8_model, int8_report = int8_paths(target)
    measured: dict[str, Any] | None = None
    with staged_files(target.parent) as stage:
        staged = stage / target.name
        if format == "onnx":
            from mediscope.export.onnx_export import export_onnx

            info = export_onnx(graph, info, staged, opset=opset, dynamic_batch=dynamic_batch)
        else:
            from mediscope.export.torchscript import export_torchscript

            info = export_torchscript(graph, info, staged)
        written = [target]
        if quantize == "int8":
            from mediscope.export.quantize import (
                measure,
                quantize_model,
                validation_data,
                write_measurement,
            )

            data = validation_data(config, checkpoint, task.classes, stats)
            try:
                int8_info = quantize_model(staged, stage / int8_model.name, data, info)
                measured = measure(info, staged, stage / int8_model.name, data)
            except ConfigError:
                raise
            except Exception as exc:  # onnxruntime's quantizer and sessions raise their own
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                raise ConfigError(
                    f"int8 quantization failed ({first})",
                    where="--quantize",
                    hint="export without --dynamic-batch (a fixed batch quantizes), "
                    "or without --quantize",
                ) from None
            measured = {"quantization": int8_info.export["quantization"], **measured}
            write_measurement(stage / int8_report.name, measured)
            written += [int8_model, int8_report]
        card = CardInputs(
            run_dir=run,
            config=config,
            info=info,
            model_file=staged,
            class_counts=meta.get("class_counts"),
            epoch=int(epoch) if isinstance(epoch, int) else None,
            int8_file=stage / int8_model.name if measured is not None else None,
            int8=measured,
        )
        write_text_atomic(stage / CARD, model_card(card))
        written.append(target.parent / CARD)
    return ExportResult(
        model=target,
        info=info,
        card=target.parent / CARD,
        int8_model=int8_model if measured is not None else None,
        int8_report=int8_report if measured is not None else None,
        int8=measured,
        checkpoint=checkpoint,
        paths=written,
    )
