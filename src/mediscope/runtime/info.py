"""What a model needs to be used alone: :class:`ModelInfo`, stored with every export.

An exported file carries it as JSON: in ONNX metadata under the key :data:`METADATA_KEY`,
in a TorchScript file as the extra file :data:`EXTRA_FILE`. A run folder's model gets the
same object from its config and checkpoint, so that eager, TorchScript and ONNX models go
through one pre- and post-processing.

The network's contract (what the exported graph computes, and what the eager backend
returns for the same input):

* input ``image``: float32 ``(N, C, H, W)``, resized to ``image_size`` (segmentation by
  sliding window: windows at full resolution, so H and W vary) and normalised with
  ``mean`` / ``std`` (0..1 scale, as albumentations' ``Normalize`` with
  ``max_pixel_value=255``), after stored values became 0..255 by ``intensity``;
* classification: ``probabilities`` ``(N, K)`` (softmax); the predictor rescales them
  by ``temperature`` (temperature scaling fitted on validation, 1 = none);
* multi-label classification: ``probabilities`` ``(N, L)`` (sigmoid per label); a label
  is present at or above its entry in ``thresholds`` (0.5 without one);
* segmentation: ``probabilities`` ``(N, K, H, W)`` (softmax over classes);
* detection (dense detectors): ``boxes`` ``(N, A, 4)`` xyxy in input pixels, clipped
  to the input, and ``scores`` ``(N, A, C)`` per anchor and class; score threshold,
  top-k and per-class NMS run in NumPy (:mod:`mediscope.runtime.pipeline`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from mediscope.errors import ConfigError

#: The ONNX metadata key holding :meth:`ModelInfo.to_json`.
METADATA_KEY = "mediscope"
#: The TorchScript extra file holding :meth:`ModelInfo.to_json`.
EXTRA_FILE = "mediscope.json"
#: The newest metadata layout read; a newer one is refused with a clear message.
#: Layout 2 added ``intensity``, ``temperature``, ``thresholds`` and the multilabel task;
#: a model that uses none of them is written as layout 1, which older readers still read
#: (a layout-1 reader would silently drop the new keys, so a model that needs them says 2).
FORMAT_VERSION = 2
#: Candidates kept per image before NMS (as the eager detectors do).
PRE_NMS_TOP = 1000

TASKS = ("classification", "segmentation", "detection", "multilabel")


@dataclass
class InferenceSettings:
    """How whole images are predicted (the run config's ``inference`` section, resolved).

    ``score_threshold`` is a number here: ``auto`` in the config becomes the F1-optimal
    threshold found on the validation split (or 0.05 without one).
    """

    window: tuple[int, int] | None = None
    overlap: float = 0.25
    gaussian: bool = True
    tta: bool = False
    batch_size: int = 4
    merge: str = "nms"
    score_threshold: float = 0.05
    iou_threshold: float = 0.5
    max_detections: int = 300
    #: Whole slides: microns per pixel the model sees, or else the pyramid level read.
    mpp: float | None = None
    level: int | None = None


@dataclass
class ModelInfo:
    """A model's task, classes, input and settings: all that using it alone needs.

    Example:
        >>> info = ModelInfo(task="classification", classes=["a", "b"], image_size=(64, 64),
        ...                  channels=3, mean=[0.5] * 3, std=[0.25] * 3)
        >>> ModelInfo.from_json(info.to_json()) == info
        True
    """

    task: str
    classes: list[str]
    image_size: tuple[int, int]
    channels: int
    mean: list[float]
    std: list[float]
    dicom_window: tuple[float, float] | None = None
    #: ``(min, max)``: the stored values shown as 0 and 255 before normalisation
    #: (``data.intensity`` fixed, or percentile as computed on the training split);
    #: None: images beyond 8 bits by their own range (``per_image``).
    intensity: tuple[float, float] | None = None
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    #: Temperature scaling of the probabilities, fitted on validation (1: none).
    temperature: float = 1.0
    #: Per-class decision thresholds chosen on validation (multi-label: a label is
    #: present at or above its threshold).
    thresholds: dict[str, float] = field(default_factory=dict)
    #: Detection graphs: whether the file holds dense outputs (boxes, scores).
    outputs: list[str] = field(default_factory=list)
    mediscope_version: str = ""
    #: The run's config.yaml text.
    config: str = ""
    #: Where the weights came from (the checkpoint's file name), for the model card.
    checkpoint: str = ""
    #: Free-form facts of the export (format, opset, quantization, ...).
    export: dict[str, Any] = field(default_factory=dict)
    #: The layout the metadata was read in (written: :meth:`needed_version`).
    format_version: int = field(default=FORMAT_VERSION, compare=False)

    def needed_version(self) -> int:
        """The oldest metadata layout that holds everything this model needs."""
        if (
            self.intensity is not None
            or self.temperature != 1.0
            or self.thresholds
            or self.task == "multilabel"
        ):
            return 2
        return 1

    def to_json(self) -> str:
        """The info as a JSON string, in the oldest layout that holds it (layout-2 keys
        left out at their defaults, so that readers of layout 1 read such a model)."""
        data = asdict(self)
        data["format_version"] = self.needed_version()
        if data["format_version"] < 2:
            for key in ("intensity", "temperature", "thresholds"):
                del data[key]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, where: str = "model metadata") -> ModelInfo:
        """Reads :meth:`to_json`'s output.

        Raises:
            ConfigError: naming ``where`` when the text is not mediscope's metadata.
        """
        try:
            data = json.loads(text)
            version = int(data.get("format_version", 0))
            if version > FORMAT_VERSION:
                raise ConfigError(
                    f"model metadata version {version} is newer than this mediscope reads "
                    f"({FORMAT_VERSION})",
                    where=where,
                    hint="upgrade mediscope",
                )
            settings = InferenceSettings(**data.pop("inference", {}))
            if settings.window is not None:
                settings.window = (int(settings.window[0]), int(settings.window[1]))
            info = cls(inference=settings, **data)
        except ConfigError:
            raise
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"not mediscope model metadata ({exc.__class__.__name__}: {exc})",
                where=where,
                hint="export the model with `mediscope export`",
            ) from None
        if info.task not in TASKS:
            raise ConfigError(f"unknown task {info.task!r}", where=where)
        info.image_size = (int(info.image_size[0]), int(info.image_size[1]))
        info.temperature = float(info.temperature)
        if not info.temperature > 0:
            raise ConfigError(f"temperature must be positive, got {info.temperature}", where=where)
        info.thresholds = {str(k): float(v) for k, v in dict(info.thresholds).items()}
        if info.dicom_window is not None:
            info.dicom_window = (float(info.dicom_window[0]), float(info.dicom_window[1]))
        if info.intensity is not None:
            info.intensity = (float(info.intensity[0]), float(info.intensity[1]))
        return info
