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
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mediscope.errors import ConfigError

#: The ONNX metadata key holding :meth:`ModelInfo.to_json`.
METADATA_KEY = "mediscope"
#: The TorchScript extra file holding :meth:`ModelInfo.to_json`.
EXTRA_FILE = "mediscope.json"
#: The newest metadata layout read; a newer one is refused with a clear message.
#: Layout 2 added ``intensity``, ``temperature``, ``thresholds``, the multilabel task and
#: the settings in :data:`LAYOUT_2_SETTINGS` and the ``edge`` tile merge;
#: a model that uses none of them is written as layout 1, which older readers still read
#: (a layout-1 reader would silently drop the new keys, so a model that needs them says 2).
FORMAT_VERSION = 2
#: Candidates kept per image before NMS (as the eager detectors do).
PRE_NMS_TOP = 1000

TASKS = ("classification", "segmentation", "detection", "multilabel")


#: Detection score threshold of a model without a calibrated one (``inference.score_threshold:
#: auto`` and no ``score_threshold_f1`` in the run's ``val_metrics.json``). Detection tools
#: use 0.25 to 0.5 when counting or drawing without calibration (ultralytics 0.25,
#: MMDetection's demos 0.3, detectron2's 0.5); 0.05 and below are for mAP, which ranks
#: boxes, and count every faint duplicate.
DEFAULT_SCORE_THRESHOLD = 0.3

#: Where a detection score threshold comes from: the F1-optimal one on the run's
#: validation split, set (config, ``--score-threshold``, ``mediscope.load``), or
#: :data:`DEFAULT_SCORE_THRESHOLD` for want of both ("" in files exported before it was
#: recorded).
THRESHOLD_SOURCES = ("calibrated", "set", "default")


@dataclass
class InferenceSettings:
    """How whole images are predicted (the run config's ``inference`` section, resolved).

    ``score_threshold`` is a number here: ``auto`` in the config becomes the F1-optimal
    threshold found on the validation split (or :data:`DEFAULT_SCORE_THRESHOLD` without
    one); ``score_threshold_source`` says which (see :data:`THRESHOLD_SOURCES`).
    ``agnostic_nms`` is false here, as in files exported before it existed; a run's
    config sets it (``inference.agnostic_nms``, true by default).
    """

    window: tuple[int, int] | None = None
    overlap: float = 0.25
    gaussian: bool = True
    tta: bool = False
    batch_size: int = 4
    merge: str = "nms"
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    iou_threshold: float = 0.5
    max_detections: int = 300
    #: Whole slides: microns per pixel the model sees, or else the pyramid level read.
    mpp: float | None = None
    level: int | None = None
    agnostic_nms: bool = False
    score_threshold_source: str = ""

    def threshold_note(self) -> str:
        """Where the score threshold comes from, in words.

        Example:
            >>> InferenceSettings(score_threshold_source="set").threshold_note()
            'set by --score-threshold or inference.score_threshold'
        """
        return THRESHOLD_NOTES.get(self.score_threshold_source, "as the exported model records it")

    @property
    def uncalibrated(self) -> bool:
        """Whether the score threshold is the default for want of a calibrated one."""
        return self.score_threshold_source == "default"

    def with_detection(
        self,
        *,
        score_threshold: float | None = None,
        iou_threshold: float | None = None,
        agnostic_nms: bool | None = None,
    ) -> InferenceSettings:
        """These settings with other detection thresholds (None keeps a setting).

        Example:
            >>> settings = InferenceSettings().with_detection(score_threshold=0.5)
            >>> settings.score_threshold, settings.score_threshold_source
            (0.5, 'set')

        Raises:
            ConfigError: a threshold out of range, naming its option.
        """
        changes: dict[str, Any] = {}
        if score_threshold is not None:
            if not 0 <= score_threshold <= 1:
                raise ConfigError(
                    f"must be in [0, 1], got {score_threshold}",
                    where="--score-threshold",
                    hint="boxes scoring less are dropped; e.g. 0.3",
                )
            changes.update(score_threshold=float(score_threshold), score_threshold_source="set")
        if iou_threshold is not None:
            if not 0 < iou_threshold <= 1:
                raise ConfigError(
                    f"must be in (0, 1], got {iou_threshold}",
                    where="--iou-threshold",
                    hint="boxes overlapping more are one object; e.g. 0.5",
                )
            changes["iou_threshold"] = float(iou_threshold)
        if agnostic_nms is not None:
            changes["agnostic_nms"] = bool(agnostic_nms)
        return replace(self, **changes)


#: :meth:`InferenceSettings.threshold_note` by source.
THRESHOLD_NOTES = {
    "calibrated": "the best F1 on the run's validation split (score_threshold_f1)",
    "set": "set by --score-threshold or inference.score_threshold",
    "default": "the default: this model has no calibrated threshold (no score_threshold_f1 "
    "in the run's val_metrics.json; `mediscope validate` computes it)",
}


#: The ``inference`` settings layout 2 added, at the values that mean "as before".
#: The tile merges a layout-1 reader knows (``edge`` came with layout 2).
LAYOUT_1_MERGES = ("nms", "wbf")
LAYOUT_2_SETTINGS: dict[str, Any] = {
    "mpp": None,
    "level": None,
    "agnostic_nms": False,
    "score_threshold_source": "",
}


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
        settings = asdict(self.inference)
        if (
            self.intensity is not None
            or self.temperature != 1.0
            or self.thresholds
            or self.task == "multilabel"
            or any(settings[key] != value for key, value in LAYOUT_2_SETTINGS.items())
            or self.inference.merge not in LAYOUT_1_MERGES
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
            for key in LAYOUT_2_SETTINGS:
                del data["inference"][key]
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
