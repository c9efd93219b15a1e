"""The models a server offers: found in the given paths, loaded once at start.

A source is a run folder (``config.yaml`` and ``checkpoints/best.ckpt``), an exported
model (``.onnx``, TorchScript ``.pt``), or a folder searched for run folders and
``.onnx`` files. Each is loaded with :func:`mediscope.load`; one that fails is listed
with its error (and answers 409) rather than stopping the server.

Each model also shows its validation metrics with their bootstrap intervals (the run
folder's ``val_metrics.json``; for an exported file, that of the run folder it sits in)
and its model card (``model_card.md`` beside an exported file; for a run folder, written
on the fly by :func:`mediscope.export.card.model_card`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mediscope.engine.run_dir import BEST, CHECKPOINTS
from mediscope.errors import ConfigError, MediscopeError
from mediscope.runtime.drawing import class_colors
from mediscope.runtime.outputs import EXPORTED_SUFFIXES
from mediscope.runtime.predictor import Predictor
from mediscope.serve.limits import ApiError, ModelQueue
from mediscope.yamlsafe import load_yaml

#: Keys of a metrics file that are bookkeeping, not metrics.
NOT_METRICS = frozenset(
    {
        "n_samples",
        "n_images",
        "epoch",
        "bootstrap_resamples",
        "bootstrap_groups",
        "bootstrap_unit",
        "confidence",
        "score_threshold_f1",
        "count_threshold",
        "temperature",
        "op_target_sensitivity",
        "op_target_specificity",
    }
)
CI_LOW, CI_HIGH = "ci_low/", "ci_high/"
METRICS_FILES = (("val_metrics.json", "validation"), ("test_metrics.json", "test"))


@dataclass(eq=False)
class ServedModel:
    """One model of the server.

    Attributes:
        id: Its id in the API (unique, URL-safe).
        name: Its display name.
        source: Where it was loaded from.
        predictor: The loaded model (None when it failed to load).
        error: Why it failed to load, one line (None when it loaded).
        metrics: Its validation metrics with intervals (see :func:`read_metrics`).
        card: Its model card, Markdown.
        queue: Its prediction queue.
    """

    id: str
    name: str
    source: Path
    predictor: Predictor | None = None
    error: str | None = None
    metrics: dict[str, Any] | None = None
    card: str | None = None
    queue: ModelQueue | None = field(default=None, repr=False)

    @property
    def task(self) -> str | None:
        """The model's task (None when it failed to load)."""
        return self.predictor.task if self.predictor is not None else None

    def describe(self) -> dict[str, Any]:
        """The model as ``/api/models`` lists it."""
        predictor = self.predictor
        if predictor is None:
            return {
                "id": self.id,
                "name": self.name,
                "task": None,
                "classes": [],
                "colors": [],
                "format": None,
                "image_size": None,
                "score_threshold": None,
                "cam": False,
                "metrics": self.metrics,
                "card": self.card,
                "error": self.error,
            }
        info = predictor.info
        detection = info.task == "detection"
        # segmentation colours include the background's; detection boxes use the others
        colors = class_colors(len(info.classes) + (1 if detection else 0))
        if detection:
            colors = colors[1:]
        return {
            "id": self.id,
            "name": self.name,
            "task": info.task,
            "classes": list(info.classes),
            "colors": colors.tolist(),
            "format": predictor.format,
            "image_size": list(info.image_size),
            "score_threshold": float(info.inference.score_threshold) if detection else None,
            "cam": info.task == "classification" and predictor.format == "eager",
            "metrics": self.metrics,
            "card": self.card,
            "error": None,
        }


# -- finding the sources -------------------------------------------------------------------


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` is a run folder with a best checkpoint."""
    return (path / "config.yaml").is_file() and (path / CHECKPOINTS / BEST).is_file()


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def find_sources(paths: list[Path]) -> list[Path]:
    """The models of ``paths``: run folders and exported files as they are, other folders
    searched (recursively, hidden folders left out) for run folders and ``.onnx`` files.

    Raises:
        ConfigError: no paths, a path that does not exist, or a folder holding no model.
    """
    if not paths:
        raise ConfigError(
            "no models to serve",
            where="mediscope serve",
            hint="give run folders, exported .onnx files, or folders holding them",
        )
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise ConfigError("not found", where=path, hint="give a run folder or a model file")
        if path.is_file() or is_run_folder(path):
            found.append(path)
            continue
        inside = sorted(
            {p.parent for p in path.rglob("config.yaml") if is_run_folder(p.parent)}
            | {p for p in path.rglob("*.onnx") if p.is_file()}
        )
        inside = [p for p in inside if not _hidden(p, path)]
        if not inside:
            raise ConfigError(
                "no run folders (config.yaml and checkpoints/best.ckpt) or .onnx files in "
                "this folder",
                where=path,
                hint="train a model (mediscope fit) or export one (mediscope export)",
            )
        found.extend(inside)
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path.resolve(), None)
    return list(unique)


# -- names -------------------------------------------------------------------------------


def slug(text: str) -> str:
    """A URL-safe id.

    Example:
        >>> slug("Gram stain (ONNX) v2")
        'gram-stain-onnx-v2'
    """
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return cleaned[:60] or "model"


def _run_name(predictor: Predictor) -> str | None:
    try:
        config = load_yaml(predictor.info.config) if predictor.info.config else None
    except Exception:  # a name is a nicety: any unreadable config gives none
        return None
    run = config.get("run") if isinstance(config, dict) else None
    name = run.get("name") if isinstance(run, dict) else None
    return str(name) if name else None


def _looks_like_stamp(name: str) -> bool:
    return re.fullmatch(r"[0-9][0-9-]*", name) is not None


def names_of(source: Path, predictor: Predictor | None) -> tuple[str, str]:
    """``(id, display name)`` of a model, before the id is made unique."""
    exported = source.is_file()
    folder = source.parent if exported else source
    fallback = folder.parent.name if _looks_like_stamp(folder.name) else folder.name
    if exported and folder.name != "export" and source.stem != "model":
        fallback = source.stem
    elif exported and folder.name == "export":
        run = folder.parent
        fallback = run.parent.name if _looks_like_stamp(run.name) else run.name
    run_name = (_run_name(predictor) if predictor is not None else None) or fallback
    if not exported:
        return slug(run_name), run_name
    stem = source.name[: -len(source.suffix)]
    kind = predictor.format if predictor is not None else source.suffix.lstrip(".").lower()
    quantized = ".int8" in source.name.lower()
    ident = f"{run_name}-{kind}" + ("-int8" if quantized else "")
    return slug(ident), f"{run_name} ({stem}{source.suffix})"


# -- metrics and card ---------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        return float(value)
    return None


def read_metrics(run: Path) -> dict[str, Any] | None:
    """A run folder's validation metrics (else its test metrics) with their intervals:
    ``{"split": "validation", "images": N, "confidence": 0.95, "values": {key: {"value",
    "low", "high"}}}``, overall metrics only (per-class keys hold a ``/``); None without a
    readable metrics file."""
    for file, split in METRICS_FILES:
        try:
            data = json.loads((run / file).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        keys = [
            key
            for key in data
            if "/" not in key
            and key not in NOT_METRICS
            and (_number(data[key]) is not None or data[key] is None)
        ]
        with_interval = [key for key in keys if CI_LOW + key in data]
        values = {
            key: {
                "value": _number(data.get(key)),
                "low": _number(data.get(CI_LOW + key)),
                "high": _number(data.get(CI_HIGH + key)),
            }
            for key in (with_interval or keys)
        }
        count = _number(data.get("n_samples", data.get("n_images")))
        return {
            "split": split,
            "images": int(count) if count is not None else None,
            "confidence": _number(data.get("confidence")),
            "values": values,
        }
    return None


def run_folder_of(source: Path) -> Path | None:
    """The run folder of a source: itself, or the one an exported file sits in
    (``RUN/model.onnx`` or ``RUN/export/model.onnx``)."""
    if source.is_dir():
        return source
    for folder in (source.parent, source.parent.parent):
        if (folder / "config.yaml").is_file():
            return folder
    return None


def _without_section(card: str, title: str) -> str:
    """The Markdown without the ``## title`` section."""
    lines = card.splitlines()
    out: list[str] = []
    skipping = False
    for line in lines:
        if line.startswith("## "):
            skipping = line.strip() == f"## {title}"
        if not skipping:
            out.append(line)
    return "\n".join(out) + "\n"


def card_of(source: Path, predictor: Predictor | None) -> str | None:
    """The model card: ``model_card.md`` beside an exported file; for a run folder, the
    card :func:`mediscope.export.card.model_card` writes (without its section on the
    exported file); None when there is none or it cannot be made."""
    if source.is_file():
        try:
            return (source.parent / "model_card.md").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
    if predictor is None:
        return None
    try:
        from mediscope.engine.checkpoints import checkpoint_meta, read_checkpoint
        from mediscope.export.card import CardInputs, model_card
        from mediscope.tasks.validate import load_config

        checkpoint = source / CHECKPOINTS / BEST
        stored = read_checkpoint(checkpoint)
        epoch = stored.get("epoch")
        inputs = CardInputs(
            run_dir=source,
            config=load_config(source / "config.yaml"),
            info=predictor.info,
            model_file=checkpoint,
            class_counts=checkpoint_meta(stored).get("class_counts"),
            epoch=int(epoch) if isinstance(epoch, int) else None,
        )
        return _without_section(model_card(inputs), "Exported model")
    except Exception:  # the card is a nicety: a run that cannot make one shows none
        return None


# -- loading -------------------------------------------------------------------------------


def one_line(exc: BaseException) -> str:
    """An exception as one line (a mediscope error's own text)."""
    text = str(exc) if isinstance(exc, MediscopeError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def load_models(
    paths: list[Path], *, queue: int = 4, threads: int | None = None
) -> list[ServedModel]:
    """Finds and loads the models of ``paths``; a model that fails keeps its error.

    Args:
        paths: Run folders, exported files, or folders holding them.
        queue: Predictions that may wait per model.
        threads: onnxruntime intra-op threads per model (default: all cores).

    Raises:
        ConfigError: see :func:`find_sources`.
    """
    from mediscope.api.loading import load

    served: list[ServedModel] = []
    taken: set[str] = set()
    for source in find_sources(paths):
        predictor: Predictor | None = None
        error = None
        try:
            options: dict[str, Any] = {}
            if source.is_file() and source.suffix.lower() == ".onnx":
                options["threads"] = threads
            elif source.is_file() and source.suffix.lower() not in EXPORTED_SUFFIXES:
                raise ConfigError(
                    "not a run folder or an exported model (.onnx, .pt)", where=source
                )
            predictor = load(source, **options)
        except Exception as exc:  # a model that fails is listed with its error
            error = one_line(exc)
        ident, name = names_of(source, predictor)
        unique, n = ident, 1
        while unique in taken:
            n += 1
            unique = f"{ident}-{n}"
        taken.add(unique)
        run = run_folder_of(source)
        served.append(
            ServedModel(
                id=unique,
                name=name,
                source=source,
                predictor=predictor,
                error=error,
                metrics=read_metrics(run) if run is not None else None,
                card=card_of(source, predictor),
                queue=ModelQueue(unique, queue) if predictor is not None else None,
            )
        )
    return served


class Registry:
    """The served models by id."""

    def __init__(self, models: list[ServedModel]) -> None:
        self.models = models
        self._by_id = {model.id: model for model in models}

    def __len__(self) -> int:
        return len(self.models)

    @property
    def loaded(self) -> list[ServedModel]:
        """The models that loaded."""
        return [model for model in self.models if model.predictor is not None]

    def get(self, ident: str) -> ServedModel:
        """The model ``ident``, ready to predict.

        Raises:
            ApiError: 404 for an unknown id, 409 for a model that failed to load.
        """
        model = self._by_id.get(ident)
        if model is None:
            known = ", ".join(sorted(self._by_id)) or "none"
            raise ApiError(404, f"no model {ident[:80]!r}", hint=f"the models are: {known}")
        if model.predictor is None:
            raise ApiError(
                409,
                f"the model {ident!r} failed to load: {model.error}",
                hint="fix or remove it and restart the server",
            )
        return model

    def close(self) -> None:
        """Stops the models' queues."""
        for model in self.models:
            if model.queue is not None:
                model.queue.close()
