"""Speed and accuracy of a run's model in each format: eager PyTorch, TorchScript, ONNX
float32 and ONNX int8 (``mediscope benchmark RUN_DIR``).

The formats are exported into a temporary folder from the run's ``best.ckpt`` (so they
always match it), then measured in one process with the same number of threads
(``torch.set_num_threads`` and onnxruntime's ``intra_op_num_threads``):

* the network call (``backend.run``) on prepared batches of validation images, for
  each batch size. *eager* is the module every export traces
  (:func:`mediscope.export.graph.inference_graph`) called in ``torch.inference_mode``,
  so all formats compute the same outputs. ONNX files for batch 1 take one image
  (``mediscope export``'s default); for larger batches files with a symbolic batch axis
  (``--dynamic-batch``) are exported as well;
* :meth:`Predictor.predict_batch <mediscope.runtime.predictor.Predictor.predict_batch>`
  end to end (resize, normalise, network, post-processing) on decoded validation
  images; *eager* is the run folder's :class:`~mediscope.runtime.backends.TorchBackend`,
  what ``mediscope.load(RUN_DIR)`` gives;
* accuracy on the run's validation split, one image per call: classification
  accuracy, segmentation mean Dice, detection mAP at IoU 0.5.

The timed calls of the formats are interleaved (one block of calls per format, the
order rotating every round), after warm-up calls that are not counted, so that a
change of machine load falls on all formats alike. Neither runtime spins idle threads:
onnxruntime sessions are made so, and ``mediscope benchmark`` sets
``OMP_WAIT_POLICY=PASSIVE`` for torch's OpenMP unless it is set (on a machine busier
than its cores, spinning threads made eager PyTorch at 2 threads up to 30 times slower
than at 1, a "speed-up" of ONNX that was only contention).
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mediscope.errors import ConfigError

#: The formats, in the order they are measured and shown.
FORMATS = ("eager", "torchscript", "onnx", "int8")
#: What each format is, for tables.
FORMAT_NAMES = {
    "eager": "PyTorch eager",
    "torchscript": "TorchScript",
    "onnx": "ONNX fp32",
    "int8": "ONNX int8",
}
#: The accuracy metric of each task, as named in the JSON.
METRICS = {"classification": "accuracy", "segmentation": "dice_mean", "detection": "map_50"}


def parse_formats(text: str) -> list[str]:
    """The formats of a comma-separated list, in the order given.

    Raises:
        ConfigError: an empty list or an unknown format.

    Example:
        >>> parse_formats("eager, onnx")
        ['eager', 'onnx']
    """
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise ConfigError("no format given", where="--formats", hint=f"e.g. {','.join(FORMATS)}")
    for name in names:
        if name not in FORMATS:
            raise ConfigError(
                f"unknown format '{name}'", where="--formats", hint=f"use {', '.join(FORMATS)}"
            )
    return list(dict.fromkeys(names))


def parse_batches(text: str) -> list[int]:
    """The batch sizes of a comma-separated list.

    Raises:
        ConfigError: an empty list, or a value that is not a whole number from 1.

    Example:
        >>> parse_batches("1,16")
        [1, 16]
    """
    sizes = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise ConfigError(
                f"batch size '{part}' is not a whole number from 1",
                where="--batch",
                hint="e.g. 1,16",
            )
        sizes.append(int(part))
    if not sizes:
        raise ConfigError("no batch size given", where="--batch", hint="e.g. 1,16")
    return list(dict.fromkeys(sizes))


def latency_summary(seconds: Sequence[float], batch: int) -> dict[str, float]:
    """Images per second (all timed calls) and latency percentiles of calls of ``batch``.

    Example:
        >>> round(latency_summary([0.1, 0.1, 0.2, 0.2], batch=2)["images_per_second"], 3)
        13.333
    """
    values = np.asarray(seconds, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no timed calls")
    return {
        "images_per_second": float(batch * values.size / values.sum()),
        "p50_ms": float(np.percentile(values, 50) * 1000),
        "p95_ms": float(np.percentile(values, 95) * 1000),
        "calls": int(values.size),
    }


def interleaved(
    calls: Mapping[str, Callable[[], object]],
    *,
    warmup: int,
    repeats: int,
    rounds: int,
) -> dict[str, list[float]]:
    """Seconds of each timed call, per name.

    Every call first runs ``warmup`` times untimed; then, ``rounds`` times, each runs
    ``repeats`` timed calls in turn, the order rotating by one every round.

    Example:
        >>> times = interleaved({"a": lambda: None, "b": lambda: None},
        ...                     warmup=1, repeats=2, rounds=3)
        >>> [len(v) for v in times.values()]
        [6, 6]
    """
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            call = calls[name]
            for _ in range(repeats):
                started = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - started)
    return times


class GraphBackend:
    """The exported graph module run eagerly: the *eager* network call.

    Args:
        graph: :func:`~mediscope.export.graph.inference_graph` of the run's task.
        outputs: Its output names.
    """

    name = "eager"

    def __init__(self, graph: Any, outputs: Sequence[str]) -> None:
        self.graph = graph.eval()
        self.outputs = list(outputs)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.graph(torch.from_numpy(np.ascontiguousarray(batch)))
        values = out if isinstance(out, tuple | list) else (out,)
        return {n: v.float().numpy() for n, v in zip(self.outputs, values, strict=True)}


@dataclass
class ValidationSet:
    """Validation images prepared as evaluation prepares them, their targets, and the
    decoded images (``H x W x C`` uint8) the predictor starts from."""

    prepared: list[np.ndarray]
    targets: list[Any]
    images: list[np.ndarray]
    ids: list[str] = field(default_factory=list)

    def batch(self, size: int) -> np.ndarray:
        """``size`` prepared images as one ``(N, C, H, W)`` batch (cycled when fewer)."""
        return np.concatenate([self.prepared[i % len(self.prepared)] for i in range(size)])

    def image_list(self, size: int) -> list[np.ndarray]:
        """``size`` decoded images (cycled when fewer)."""
        return [self.images[i % len(self.images)] for i in range(size)]


def validation_set(
    config: Any,
    checkpoint: Path,
    classes: list[str],
    stats: tuple[list[float], list[float]] | None,
    reader: Callable[[str], np.ndarray],
    *,
    limit: int | None = None,
) -> ValidationSet:
    """The run's validation split (:func:`mediscope.engine.restore.split_samples`).

    Args:
        config: The run's config.
        checkpoint: Its checkpoint.
        classes: The checkpoint's classes.
        stats: The checkpoint's normalisation statistics.
        reader: Decodes an image file as the predictor does.
        limit: At most this many images (the first ones).

    Raises:
        DataError: the split is empty or its data is gone.
    """
    from mediscope.engine.restore import split_samples
    from mediscope.errors import DataError

    datamodule, samples = split_samples(config, checkpoint, classes, split="val", stats=stats)
    if limit is not None:
        samples = samples.subset(range(min(limit, len(samples))))
    dataset = datamodule.dataset(samples, train=False)
    if len(dataset) == 0:
        raise DataError(
            "the run's validation split is empty: nothing to measure on",
            where=config.data.path,
            hint="benchmark a run trained with a validation split",
        )
    prepared, targets = [], []
    for index in range(len(dataset)):
        image, target = dataset[index]
        prepared.append(image.unsqueeze(0).numpy().astype(np.float32))
        targets.append(target)
    images = [reader(sample.image) for sample in samples.samples]
    return ValidationSet(prepared, targets, images, samples.ids())


def accuracy(
    task: str,
    classes: list[str],
    backend: Any,
    data: ValidationSet,
    *,
    iou_threshold: float = 0.5,
    ignore_index: int | None = None,
) -> dict[str, Any]:
    """The task's metric of ``backend`` on the prepared validation images, one per call.

    Returns:
        ``metric`` (``accuracy``, ``dice_mean`` or ``map_50``), its ``value`` (None when
        undefined) and ``n_images``.
    """
    outputs = [backend.run(image) for image in data.prepared]
    value: float
    if task == "classification":
        predicted = np.array([int(out["probabilities"][0].argmax()) for out in outputs])
        labels = np.array([int(t) for t in data.targets])
        value = float((predicted == labels).mean())
    elif task == "segmentation":
        from mediscope.metrics.segmentation import ConfusionAccumulator

        confusion = ConfusionAccumulator(len(classes), ignore_index=ignore_index)
        for out, mask in zip(outputs, data.targets, strict=True):
            confusion.update(out["probabilities"][0].argmax(0), np.asarray(mask))
        value = confusion.report(classes)["dice_mean"]
    elif task == "detection":
        from mediscope.metrics.detection import evaluate_detections
        from mediscope.runtime.info import PRE_NMS_TOP
        from mediscope.runtime.pipeline import dense_detections
        from mediscope.tasks.detection import EVAL_MAX_DETECTIONS, EVAL_SCORE_THRESHOLD

        found = []
        for out in outputs:
            boxes, scores, labels = dense_detections(
                out["boxes"][0],
                out["scores"][0],
                score_threshold=EVAL_SCORE_THRESHOLD,
                iou_threshold=iou_threshold,
                max_detections=EVAL_MAX_DETECTIONS,
                pre_nms_top=PRE_NMS_TOP,
            )
            found.append({"boxes": boxes, "scores": scores, "labels": labels})
        targets = [{k: np.asarray(v) for k, v in t.items()} for t in data.targets]
        value = evaluate_detections(found, targets, classes).metrics["map_50"]
    else:
        raise ConfigError(f"no accuracy for the task '{task}'", where="task")
    return {
        "metric": METRICS[task],
        "value": value if np.isfinite(value) else None,
        "n_images": len(outputs),
    }


def export_formats(
    run_dir: Path, formats: Sequence[str], batches: Sequence[int], folder: Path
) -> tuple[dict[tuple[str, bool], Path], dict[str, str]]:
    """Exports the run's model in ``formats`` into ``folder``.

    Returns:
        ``(format, dynamic) -> file`` (``dynamic`` False for batch 1, True for larger
        batches: ONNX files with a symbolic batch axis; TorchScript takes any batch),
        and notes per format: when the dynamic-batch int8 file cannot be made, its
        larger batches run the batch-1 int8 file once per image (:class:`PerImage`),
        and the note says why.
    """
    from mediscope.export.api import export_run

    files: dict[tuple[str, bool], Path] = {}
    notes: dict[str, str] = {}
    quantize = "int8" if "int8" in formats else None
    if "onnx" in formats or "int8" in formats:
        for dynamic in sorted({b > 1 for b in batches}):
            target = folder / ("dynamic" if dynamic else "fixed") / "model.onnx"
            try:
                result = export_run(
                    run_dir, format="onnx", output=target, dynamic_batch=dynamic, quantize=quantize
                )
            except Exception as exc:  # onnxruntime's quantizer raises its own classes
                if not (dynamic and quantize):
                    raise
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                notes["int8"] = (
                    "batches above 1 run the batch-1 int8 file once per image: the "
                    f"dynamic-batch int8 export failed ({type(exc).__name__}: {first[:300]})"
                )
                result = export_run(run_dir, format="onnx", output=target, dynamic_batch=True)
            files["onnx", dynamic] = result.model
            if result.int8_model is not None:
                files["int8", dynamic] = result.int8_model
    if "torchscript" in formats:
        result = export_run(
            run_dir, format="torchscript", output=folder / "torchscript" / "model.pt"
        )
        files["torchscript", False] = files["torchscript", True] = result.model
    return files, notes


class PerImage:
    """A backend of a batch-1 file that takes any batch, one image per call."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.name = backend.name
        self.info = backend.info

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = [self.backend.run(batch[i : i + 1]) for i in range(len(batch))]
        return {key: np.concatenate([o[key] for o in outputs]) for key in outputs[0]}


def machine(threads: int) -> dict[str, Any]:
    """The CPU, threads and library versions a measurement ran with."""
    import torch

    facts: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    try:
        import onnxruntime

        facts["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover - the ONNX formats need it
        facts["onnxruntime"] = None
    return facts


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the system has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - Windows
        return None


@dataclass
class BenchmarkSettings:
    """How :func:`benchmark_run` measures.

    Attributes:
        formats: Of :data:`FORMATS`.
        batches: Batch sizes of the network call and of the predictor.
        warmup: Untimed calls per format before the timed ones.
        repeats: Timed calls per format and round.
        rounds: Rounds of interleaved timed calls.
        threads: torch and onnxruntime intra-op threads; None: the core count.
        predict: Also time ``Predictor.predict_batch`` end to end.
        accuracy: Also measure accuracy on the validation split.
        limit: At most this many validation images.
    """

    formats: Sequence[str] = FORMATS
    batches: Sequence[int] = (1, 16)
    warmup: int = 3
    repeats: int = 10
    rounds: int = 3
    threads: int | None = None
    predict: bool = True
    accuracy: bool = True
    limit: int | None = None

    def check(self) -> None:
        """Raises ConfigError for counts below their minimum."""
        for name, value, low in (
            ("--warmup", self.warmup, 0),
            ("--repeats", self.repeats, 1),
            ("--rounds", self.rounds, 1),
            ("--threads", self.threads if self.threads is not None else 1, 1),
        ):
            if value < low:
                raise ConfigError(f"must be at least {low}, got {value}", where=name)
        parse_formats(",".join(self.formats))
        parse_batches(",".join(str(b) for b in self.batches))


@dataclass
class Prepared:
    """A run's model ready to measure: the restored task, its validation images and the
    exported files (see :func:`prepare`)."""

    run: Path
    config: Any
    checkpoint: Path
    task: Any
    info: Any
    data: ValidationSet
    files: dict[tuple[str, bool], Path]
    formats: list[str]
    eager_predictor: Any
    #: Per format, how it was measured where that differs from the module docstring.
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The task name."""
        return str(self.config.task)

    def networks(self, threads: int) -> dict[tuple[str, bool], Any]:
        """``(format, dynamic) -> backend``; ONNX sessions with ``threads`` intra-op
        threads. ``eager`` is the graph module (for any batch)."""
        from mediscope.export.graph import inference_graph, output_names
        from mediscope.runtime.backends import OnnxBackend, TorchScriptBackend

        backends: dict[tuple[str, bool], Any] = {}
        for (fmt, dynamic), path in self.files.items():
            if fmt == "torchscript":
                backends[fmt, dynamic] = TorchScriptBackend(path)
            else:
                backends[fmt, dynamic] = OnnxBackend(path, threads=threads)
        for fmt in self.formats:
            if (fmt, False) in backends and (fmt, True) not in backends:
                backends[fmt, True] = PerImage(backends[fmt, False])
        graph = GraphBackend(inference_graph(self.task), output_names(self.name))
        backends["eager", False] = backends["eager", True] = graph
        return backends

    def file_bytes(self, fmt: str) -> int | None:
        """The size of the format's batch-1 file (None for eager)."""
        path = self.files.get((fmt, False)) or self.files.get((fmt, True))
        return path.stat().st_size if path is not None else None


def prepare(
    run_dir: str | Path,
    formats: Sequence[str],
    batches: Sequence[int],
    folder: Path,
    *,
    limit: int | None = None,
    log: Callable[[str], None] | None = None,
) -> Prepared:
    """Restores the run's model, reads its validation split and exports ``formats``
    into ``folder``.

    Raises:
        ConfigError: not a run folder, or a model a format cannot hold.
        DataError: the run's validation split is empty or gone.
    """
    from mediscope.engine.restore import task_from_checkpoint
    from mediscope.engine.trainer import quiet_lightning
    from mediscope.export.api import run_checkpoint
    from mediscope.inference.model_info import model_info
    from mediscope.runtime.backends import TorchBackend
    from mediscope.runtime.predictor import Predictor
    from mediscope.tasks.validate import load_config

    say = log or (lambda line: None)
    run = Path(run_dir)
    checkpoint = run_checkpoint(run)
    config = load_config(run / "config.yaml")
    quiet_lightning()
    task, stats = task_from_checkpoint(config, checkpoint)
    classes = list(task.classes)
    info = model_info(config, classes, checkpoint, stats=stats)
    eager = Predictor(TorchBackend(task.model, task=config.task), info)
    data = validation_set(
        config, checkpoint, classes, stats, lambda p: eager.load_image(p)[0], limit=limit
    )
    say(f"{config.task}: {len(data.prepared)} validation images; exporting {', '.join(formats)}")
    files, notes = export_formats(run, formats, batches, folder)
    return Prepared(run, config, checkpoint, task, info, data, files, list(formats), eager, notes)


def measure_speed(
    prepared: Prepared,
    batches: Sequence[int],
    *,
    threads: int,
    warmup: int,
    repeats: int,
    rounds: int,
    predict_batches: Sequence[int] = (),
    log: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Times the formats' network calls at each of ``batches``, and their predictors'
    ``predict_batch`` at each of ``predict_batches``.

    Returns:
        Per format, ``network`` and ``predict``: per batch size (a string key) the
        :func:`latency_summary` with ``speedup``, eager's p50 latency over the
        format's, when eager is among the formats.
    """
    import torch

    from mediscope.runtime.predictor import Predictor

    say = log or (lambda line: None)
    formats = prepared.formats
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        networks = prepared.networks(threads)
        report: dict[str, dict[str, Any]] = {f: {"network": {}, "predict": {}} for f in formats}
        for batch in batches:
            inputs = prepared.data.batch(batch)
            say(f"network call, batch {batch}, {threads} threads")
            calls = {f: _runner(networks[f, batch > 1], inputs) for f in formats}
            times = interleaved(calls, warmup=warmup, repeats=repeats, rounds=rounds)
            for fmt in formats:
                report[fmt]["network"][str(batch)] = latency_summary(times[fmt], batch)
            if batch not in predict_batches:
                continue
            images = prepared.data.image_list(batch)
            say(f"Predictor.predict, batch {batch}, {threads} threads")
            predictors = {
                f: prepared.eager_predictor
                if f == "eager"
                else Predictor(networks[f, batch > 1], networks[f, batch > 1].info)
                for f in formats
            }
            calls = {f: _predicting(predictors[f], images, batch) for f in formats}
            times = interleaved(calls, warmup=warmup, repeats=repeats, rounds=rounds)
            for fmt in formats:
                report[fmt]["predict"][str(batch)] = latency_summary(times[fmt], batch)
    finally:
        torch.set_num_threads(previous)
    _speedups(report)
    return report


def measure_accuracy(prepared: Prepared, *, threads: int) -> dict[str, dict[str, Any]]:
    """:func:`accuracy` of every format on the validation split (batch-1 files)."""
    networks = prepared.networks(threads)
    settings = prepared.info.inference
    return {
        fmt: accuracy(
            prepared.name,
            list(prepared.task.classes),
            networks[fmt, False] if (fmt, False) in networks else networks[fmt, True],
            prepared.data,
            iou_threshold=settings.iou_threshold,
            ignore_index=prepared.config.data.ignore_index,
        )
        for fmt in prepared.formats
    }


def benchmark_run(
    run_dir: str | Path,
    settings: BenchmarkSettings | None = None,
    *,
    workdir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Speed (and accuracy) of a run's model in each format, measured in this process.

    Args:
        run_dir: A run folder written by ``fit``.
        settings: What to measure; default :class:`BenchmarkSettings`.
        workdir: Where the temporary export folder goes (default: the system's).
        log: Called with a line of progress now and then.

    Returns:
        A JSON-ready dict: the run, the settings, the machine and its load average
        before and after, and per format its ``file_bytes``, ``accuracy``, and per
        batch size the ``network`` and ``predict`` timings (``images_per_second``,
        ``p50_ms``, ``p95_ms``, ``calls``, ``speedup`` over eager).

    Raises:
        ConfigError: not a run folder, bad settings, or a model a format cannot hold.
        DataError: the run's validation split is empty or gone.
    """
    settings = settings or BenchmarkSettings()
    settings.check()
    threads = int(settings.threads or os.cpu_count() or 1)
    before = load_average()
    with tempfile.TemporaryDirectory(prefix="mediscope-benchmark-", dir=workdir) as tmp:
        prepared = prepare(
            run_dir, settings.formats, settings.batches, Path(tmp), limit=settings.limit, log=log
        )
        speed = measure_speed(
            prepared,
            settings.batches,
            threads=threads,
            warmup=settings.warmup,
            repeats=settings.repeats,
            rounds=settings.rounds,
            predict_batches=settings.batches if settings.predict else (),
            log=log,
        )
        if settings.accuracy:
            if log is not None:
                log("accuracy on the validation split")
            for fmt, measured in measure_accuracy(prepared, threads=threads).items():
                speed[fmt]["accuracy"] = measured
        result = describe(prepared, settings, threads)
        result["formats"] = {
            fmt: {"name": FORMAT_NAMES[fmt], "file_bytes": prepared.file_bytes(fmt), **speed[fmt]}
            for fmt in prepared.formats
        }
        for fmt, note in prepared.notes.items():
            result["formats"][fmt]["note"] = note
    result["load_average"] = {"before": before, "after": load_average()}
    return result


def describe(prepared: Prepared, settings: BenchmarkSettings, threads: int) -> dict[str, Any]:
    """The run, settings and machine of a measurement (the head of the JSON)."""
    config = prepared.config
    return {
        "benchmark": "inference speed and accuracy per format",
        "run": str(prepared.run),
        "checkpoint": prepared.checkpoint.name,
        "task": prepared.name,
        "model": config.model.name,
        "model_params": dict(config.model.params or {}),
        "classes": list(prepared.task.classes),
        "image_size": list(prepared.info.image_size),
        "validation_images": len(prepared.data.prepared),
        "settings": {
            "formats": list(prepared.formats),
            "batches": list(settings.batches),
            "warmup": settings.warmup,
            "repeats": settings.repeats,
            "rounds": settings.rounds,
            "threads": threads,
            "speedup": "eager's p50 latency over the format's",
            "eager_network": "the exported graph module in torch.inference_mode",
            "eager_predict": "the run's PyTorch model (TorchBackend, as mediscope.load(RUN_DIR))",
            "onnx_files": "batch 1: fixed N=1 (the export default); larger: dynamic batch axis",
            "predict_input": "decoded uint8 images (file reading is not timed)",
        },
        "machine": machine(threads),
    }


def _runner(backend: Any, batch: np.ndarray) -> Callable[[], object]:
    return lambda: backend.run(batch)


def _predicting(predictor: Any, images: list[np.ndarray], batch: int) -> Callable[[], object]:
    return lambda: predictor.predict_batch(images, batch_size=batch)


def _speedups(report: dict[str, dict[str, Any]]) -> None:
    """Adds ``speedup`` (eager's p50 latency over the format's) where eager was measured."""
    eager = report.get("eager")
    if eager is None:
        return
    for entry in report.values():
        for kind in ("network", "predict"):
            for batch, figures in entry[kind].items():
                base = eager[kind].get(batch)
                if base and figures["p50_ms"] > 0:
                    figures["speedup"] = base["p50_ms"] / figures["p50_ms"]
