"""Pydantic schemas of a mediscope config file.

The top level has the sections of the contract: ``task``, ``seed``, ``data``, ``model``,
``loss``, ``optimizer``, ``scheduler``, ``augment``, ``trainer``, ``checkpoint``,
``logging`` and ``run``. Every section forbids unknown keys; every field has a default
where one makes sense, so that a ten-line config is valid.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

#: Largest image, crop or window side in pixels: far beyond any real image (a larger
#: value is a typo, and would exhaust memory or overflow the image libraries).
MAX_SIDE = 65536

#: Longest ``run.name``: a folder name, with room for suffixes such as ``-study``.
MAX_RUN_NAME = 200


def _sides(value: tuple[int, int] | None) -> tuple[int, int] | None:
    """``value`` (H W in pixels) when both sides are in 8 .. :data:`MAX_SIDE`."""
    if value is not None and not all(8 <= side <= MAX_SIDE for side in value):
        raise ValueError(f"sides must be at least 8 pixels and at most {MAX_SIDE}")
    return value


log = logging.getLogger(__name__)

#: The deprecation message of the old ``data.window`` key.
WINDOW_RENAMED = "data.window is renamed data.dicom_window; the old name still works for now"


class Section(BaseModel):
    """A config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SplitConfig(Section):
    """How the training data is split into train and validation.

    ``auto`` uses the data's own split column when it has one, else ``holdout``.
    Samples with a patient id (``group``) are always split by patient.
    """

    method: Literal["auto", "holdout", "column", "kfold"] = Field(
        "auto",
        description="auto: the data's own split column when it has one, else holdout; holdout: "
        "a random val_fraction for validation; column: the data's split column; kfold: "
        "k-fold cross-validation (folds, fold)",
    )
    val_fraction: float = Field(0.2, gt=0, lt=1, description="share of samples for validation")
    train_size: float | None = Field(
        None, gt=0, lt=1, description="share kept for training (1 - val_fraction)"
    )
    stratify: bool = Field(True, description="keep class proportions in both splits")
    folds: int = Field(5, ge=2, description="k of k-fold")
    fold: int = Field(0, ge=0, description="the k-fold fold used for validation")

    @model_validator(mode="after")
    def _sizes(self) -> SplitConfig:
        if self.train_size is not None:
            # Written to __dict__: assignment would re-run this validator.
            self.__dict__["val_fraction"] = round(1.0 - self.train_size, 10)
            self.__dict__["train_size"] = None
        if self.fold >= self.folds:
            raise ValueError(f"fold {self.fold} does not exist in {self.folds} folds (0..)")
        return self


class NormalizeStats(Section):
    """Explicit per-channel normalisation statistics (0..1 scale)."""

    mean: list[float] = Field(description="per-channel means, 0..1 scale")
    std: list[float] = Field(description="per-channel standard deviations (> 0), 0..1 scale")

    def problem(self, channels: int | None) -> str | None:
        """What makes these statistics unusable for images of ``channels``, if anything.

        Checked by :class:`DataConfig` on the parsed value: an error raised inside this
        union member would be reported as "not one of auto, imagenet, ...".
        """
        mean, std = self.mean, self.std
        if len(mean) != len(std) or not mean:
            return (
                f"gives {len(mean)} means and {len(std)} standard deviations: give one mean "
                "and one std per channel"
            )
        if not all(math.isfinite(v) for v in mean):
            return "every mean must be a finite number"
        if not all(math.isfinite(v) and v > 0 for v in std):
            return (
                "every std must be greater than 0 (images are divided by it); "
                "use normalize: none to leave images as they are"
            )
        if channels is not None and len(mean) != channels:
            plural = "s" if len(mean) > 1 else ""
            return (
                f"gives the statistics of {len(mean)} channel{plural} but data.channels is "
                f"{channels}: give one mean and one std per channel"
            )
        return None


#: The largest image decoded whole by default (``data.max_pixels``): Pillow's own refusal
#: point (twice ``PIL.Image.MAX_IMAGE_PIXELS``), its guard against decompression bombs.
DEFAULT_MAX_PIXELS = 178_956_970


class IntensityConfig(Section):
    """How stored image values (16-bit, float, 8-bit) become the network's 0..255 scale.

    ``per_image`` scales an image beyond 8 bits by its own min and max (8-bit images stay
    as they are); ``fixed`` maps ``min``..``max`` of every image to 0..255, as a CT window
    does; ``percentile`` is ``fixed`` with ``min`` and ``max`` the ``low`` and ``high``
    percentiles of the training split's values, computed once when training starts and
    written into the run's config.yaml.
    """

    mode: Literal["per_image", "fixed", "percentile"] = Field(
        "per_image",
        description="per_image: each image beyond 8 bits by its own range, 8-bit images as "
        "they are; fixed: the window min..max for every image; percentile: the window of "
        "the training split's low..high percentiles, computed once and stored in the run",
    )
    min: float | None = Field(
        None, description="fixed: the stored value shown as 0 (percentile: filled in by training)"
    )
    max: float | None = Field(
        None,
        description="fixed: the stored value shown as 255 (percentile: filled in by training)",
    )
    low: float = Field(0.5, ge=0, le=100, description="percentile: the lower percentile")
    high: float = Field(99.5, ge=0, le=100, description="percentile: the upper percentile")

    @model_validator(mode="before")
    @classmethod
    def _mode_only(cls, data: Any) -> Any:
        return {"mode": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _window(self) -> IntensityConfig:
        lo, hi = self.min, self.max
        if self.mode == "per_image" and (lo is not None or hi is not None):
            raise ValueError("min and max are for mode fixed (or percentile, filled in by fit)")
        if self.mode == "fixed" and (lo is None or hi is None):
            raise ValueError("mode fixed needs min and max, e.g. {mode: fixed, min: 0, max: 4095}")
        if (lo is None) != (hi is None):
            raise ValueError("give both min and max, or neither")
        finite = lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi)
        if lo is not None and hi is not None and not (finite and lo < hi):
            raise ValueError(f"min must be less than max, got min {lo} and max {hi}")
        if self.mode == "percentile" and not self.low < self.high:
            raise ValueError(f"low must be less than high, got {self.low} and {self.high}")
        return self

    def window(self) -> tuple[float, float] | None:
        """``(min, max)`` of a fixed or computed window; None for ``per_image`` (and for
        ``percentile`` before training computed it)."""
        if self.mode == "per_image" or self.min is None or self.max is None:
            return None
        return float(self.min), float(self.max)


class DataConfig(Section):
    """Where the data is and how it is loaded."""

    format: str = Field(
        "imagefolder",
        description="the dataset format: imagefolder (ROOT/<class>/<image>), csv, npz or dicom "
        "for classification, masks for segmentation, yolo, coco or voc for detection "
        "(mediscope list formats)",
    )
    path: Path = Field(description="the training data: a folder or file, as the format reads it")
    test_path: Path | None = Field(
        None, description="held-out test data in the same format (mediscope test)"
    )
    classes: list[str] | None = Field(
        None, description="class names in index order; default: sorted folder names"
    )
    split: SplitConfig = Field(
        default_factory=SplitConfig,
        description="how train and validation are drawn from data.path",
    )
    image_size: tuple[int, int] = Field((224, 224), description="H W, or one number")
    channels: Literal[1, 3] = Field(3, description="3 (RGB) or 1 (gray)")
    normalize: Literal["auto", "imagenet", "dataset", "none"] | NormalizeStats = Field(
        "auto",
        description="auto: the pretrained weights' statistics (ImageNet unless the model "
        "says otherwise); dataset: computed on the training split",
    )
    root: Path | None = Field(None, description="images root for paths in a CSV manifest")
    dicom_window: tuple[float, float] | None = Field(
        None,
        description="DICOM intensity window (centre, width); default: the file's own. "
        "Formerly data.window, which still works with a deprecation warning",
    )
    intensity: IntensityConfig = Field(
        default_factory=IntensityConfig,
        description="how stored values (16-bit, float) map to 0..255: {mode: per_image}, "
        "{mode: fixed, min, max} or {mode: percentile, low, high}",
    )
    max_pixels: int = Field(
        DEFAULT_MAX_PIXELS,
        ge=1,
        description="the largest image (width x height) decoded whole; larger PNG, JPEG, ... "
        "are refused, larger TIFFs read through tifffile. Raises Pillow's limit too",
    )
    sampler: Literal["random", "weighted"] = Field(
        "random", description="weighted: draw classes equally often"
    )
    batch_size: int = Field(32, ge=1, description="images per batch")
    num_workers: int = Field(
        0, ge=0, description="data-loader worker processes; 0 loads in the main process"
    )
    persistent_workers: bool = Field(
        True,
        description="with num_workers: keep the worker processes between epochs (no restart "
        "at every training and validation epoch)",
    )
    pin_memory: bool | Literal["auto"] = Field(
        "auto",
        description="page-locked batches for faster copies to the GPU; auto: on when "
        "training on a CUDA GPU",
    )
    prefetch_factor: int = Field(
        2, ge=1, description="with num_workers: batches each worker loads ahead"
    )
    # -- segmentation masks ------------------------------------------------------------
    img_suffix: str | None = Field(
        None, description="masks: image file ending, e.g. .jpg; default any image suffix"
    )
    mask_suffix: str = Field(".png", description="masks: mask file ending, e.g. _mask.png")
    mask_mode: Literal["auto", "index", "binary", "palette"] = Field(
        "auto",
        description="masks: index (class-index PNG), binary (0/255 or 0/1), palette (RGB); "
        "auto decides per file",
    )
    palette: dict[str, tuple[int, int, int]] | None = Field(
        None, description="masks: RGB colour of each class, {class: [r, g, b]}"
    )
    ignore_index: int | None = Field(
        None, ge=0, le=255, description="mask value that losses and metrics ignore (e.g. 255)"
    )
    exclude: Path | None = Field(
        None, description="a text file of samples to drop, one image name or stem per line"
    )
    # -- detection labels ---------------------------------------------------------------
    on_bad_label: Literal["error", "skip"] = Field(
        "error",
        description="detection: a malformed label line (bad class id, field count, "
        "coordinates) stops with an error naming file and line, or is skipped with a warning",
    )
    crop_size: tuple[int, int] | None = Field(
        None,
        description="detection: train on random crops of this size H W (or one number) of "
        "large images, then resized to image_size; none: whole images",
    )
    crop_object_prob: float = Field(
        0.8, ge=0, le=1, description="detection: share of random crops centred on an object"
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_window(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "window" not in data:
            return data
        if "dicom_window" in data:
            raise ValueError(
                "data.window is the old name of data.dicom_window: give only dicom_window"
            )
        data = dict(data)
        value = data.pop("window")
        data["dicom_window"] = value
        # Run folders written before the rename hold ``window: null``: nothing to tell.
        if value is not None:
            warnings.warn(WINDOW_RENAMED, DeprecationWarning, stacklevel=2)
            log.warning(WINDOW_RENAMED)
        return data

    @field_validator("image_size", "crop_size", mode="before")
    @classmethod
    def _square(cls, value: Any) -> Any:
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            return (value, value)
        return value

    @field_validator("image_size", "crop_size")
    @classmethod
    def _positive(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        return _sides(value)

    @field_validator("normalize")
    @classmethod
    def _stats(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, NormalizeStats):
            problem = value.problem(info.data.get("channels"))
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("classes")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if len(value) < 2:
                raise ValueError("at least two classes are needed")
            dupes = sorted({c for c in value if value.count(c) > 1})
            if dupes:
                raise ValueError(f"class names repeat: {', '.join(dupes)}")
        return value

    @model_validator(mode="after")
    def _palette_classes(self) -> DataConfig:
        if self.palette is not None and self.classes is not None:
            unknown = [name for name in self.palette if name not in self.classes]
            if unknown:
                raise ValueError(
                    f"palette names {', '.join(unknown)} are not in data.classes "
                    f"({', '.join(self.classes)})"
                )
        return self


class ModelConfig(Section):
    """Which network, with which weights, and what to freeze."""

    name: str = Field(
        description="the network: a mediscope model (mediscope list models), timm:<name> for "
        "any timm model, or smp:<Arch> for a segmentation_models_pytorch architecture"
    )
    pretrained: bool | Path = Field(False, description="true (download), false, or a file")
    freeze: Literal["none", "all"] | int = Field(
        "none", description="none, all (backbone), or the number of first backbone stages"
    )
    unfreeze_epoch: int | None = Field(None, ge=0, description="epoch at which to unfreeze")
    encoder: str | None = Field(
        None, description="smp:<Arch> models: the encoder, e.g. resnet34 or tu-efficientnet_b0"
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="extra builder keywords, e.g. drop_rate"
    )
    channels_last: bool = Field(
        False,
        description="train in the channels-last memory layout (faster convolutions with "
        "mixed precision on recent GPUs)",
    )

    @field_validator("freeze")
    @classmethod
    def _stages(cls, value: Any) -> Any:
        if isinstance(value, int) and value < 0:
            raise ValueError("the number of frozen stages cannot be negative")
        return value


class LossConfig(Section):
    """The loss by name (a torch.nn loss or one of mediscope's) and its keywords."""

    name: str | None = Field(
        None,
        description="any torch.nn loss that fits the task, or FocalLoss, DiceLoss, TverskyLoss, "
        "ComboLoss, DiceCELoss, DetectionLoss (mediscope list losses); default: the task's "
        "usual loss, CrossEntropyLoss, DiceCELoss for segmentation, DetectionLoss for "
        "detection",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="the loss's keywords, e.g. {alpha: 0.3, beta: 0.7} for TverskyLoss or "
        "{ce: 1, dice: 3} for ComboLoss",
    )
    class_weights: Literal["balanced", "inverse", "inverse_sqrt"] | list[float] | None = Field(
        None,
        description="balanced / inverse: inverse class frequency of the training split "
        "(pixels for segmentation), inverse_sqrt: its square root; normalised to mean 1; "
        "or a list of one weight (>= 0, not all 0) per class",
    )

    @field_validator("class_weights")
    @classmethod
    def _weights(cls, value: Any) -> Any:
        if isinstance(value, list):
            bad = [w for w in value if not (math.isfinite(w) and w >= 0)]
            if bad:
                raise ValueError(f"class weights must be finite and 0 or more, not {bad[0]}")
            if value and not any(value):
                raise ValueError("class weights are all zero: no class would be learned")
        return value


class OptimizerConfig(Section):
    """Any torch.optim optimizer by name."""

    name: str = Field(
        "AdamW", description="any torch.optim optimizer by name (mediscope list optimizers)"
    )
    lr: float = Field(1e-3, gt=0, description="learning rate")
    weight_decay: float = Field(0.0, ge=0, description="weight decay")
    params: dict[str, Any] = Field(default_factory=dict, description="e.g. momentum, betas")


class SchedulerConfig(Section):
    """Any torch.optim.lr_scheduler by name, PolyLR, and an optional linear warm-up."""

    name: str | None = Field(
        None,
        description="any torch.optim.lr_scheduler by name, or PolyLR (mediscope list "
        "schedulers); none: a constant learning rate",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="the scheduler's keywords; lengths such as T_max default to the run's length",
    )
    interval: Literal["epoch", "step"] = Field(
        "epoch", description="step the scheduler after every epoch or every optimizer step"
    )
    monitor: str | None = Field(None, description="metric for ReduceLROnPlateau")
    warmup_epochs: int = Field(
        0, ge=0, description="epochs of linear warm-up before the schedule; 0: none"
    )
    warmup_start_factor: float = Field(
        0.1, gt=0, le=1, description="share of optimizer.lr the warm-up starts from"
    )


class AugmentConfig(Section):
    """Training augmentations (probabilities and ranges); none by default."""

    hflip: float = Field(0.0, ge=0, le=1, description="horizontal flip probability")
    vflip: float = Field(0.0, ge=0, le=1, description="vertical flip probability")
    rotate90: float = Field(0.0, ge=0, le=1, description="probability of a 90° rotation")
    rotate: float = Field(0.0, ge=0, le=180, description="max rotation angle, degrees")
    brightness: float = Field(0.0, ge=0, le=1, description="max relative brightness change")
    contrast: float = Field(0.0, ge=0, le=1, description="max relative contrast change")
    saturation: float = Field(0.0, ge=0, le=1, description="max relative saturation change")
    hue: float = Field(0.0, ge=0, le=0.5, description="max hue shift, share of the hue circle")
    blur: float = Field(0.0, ge=0, le=1, description="probability of a Gaussian blur")
    equalize: float = Field(0.0, ge=0, le=1, description="probability of histogram equalisation")
    sharpen: float = Field(0.0, ge=0, le=1, description="probability of sharpening")
    grayscale: float = Field(0.0, ge=0, le=1, description="probability of a gray copy")
    invert: float = Field(0.0, ge=0, le=1, description="probability of inverting")
    crop_scale: tuple[float, float] | None = Field(
        None,
        description="random scale and crop: the range of the crop's share of the image area, "
        "e.g. [0.5, 1.0], resized to data.image_size",
    )
    until_epoch: int | None = Field(None, ge=0, description="no augmentation from this epoch")

    @field_validator("crop_scale")
    @classmethod
    def _crop_range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0 < value[0] <= value[1] <= 1:
            raise ValueError("give [low, high] with 0 < low <= high <= 1, e.g. [0.5, 1.0]")
        return value


class InferenceConfig(Section):
    """How a model predicts whole images (test, predict): windows, TTA, box merging."""

    window: tuple[int, int] | None = Field(
        None,
        description="sliding-window size H W (or one number); none: the whole image resized "
        "to data.image_size. Detection: none falls back to data.crop_size, so a model "
        "trained on crops predicts large images in tiles of that size",
    )
    overlap: float = Field(0.25, ge=0, lt=1, description="share of a window shared with the next")
    gaussian: bool = Field(True, description="weight window centres more than their borders")
    tta: bool = Field(
        False,
        description="test-time augmentation: segmentation averages over horizontal and "
        "vertical flips; detection lets the image and its three flips vote on each object's "
        "class and score (four passes per tile); classification does not use it",
    )
    batch_size: int = Field(4, ge=1, description="windows per forward pass")
    # -- detection ----------------------------------------------------------------------
    score_threshold: float | Literal["auto"] = Field(
        "auto",
        description="detection: boxes scoring less are dropped from predictions, counts and "
        "overlays; auto: the threshold with the best F1 on the run's validation split "
        "(0.3 when the run has none, with a warning)",
    )

    @field_validator("score_threshold")
    @classmethod
    def _unit(cls, value: float | str) -> float | str:
        if not isinstance(value, str) and not 0 <= value <= 1:
            raise ValueError("give a number in [0, 1] or auto")
        return value

    iou_threshold: float = Field(
        0.5, gt=0, le=1, description="detection: IoU above which NMS / WBF merge boxes"
    )
    max_detections: int = Field(
        300, ge=1, description="detection: boxes kept per image, or per window when tiled"
    )
    merge: Literal["nms", "wbf", "edge"] = Field(
        "edge",
        description="detection: how boxes of overlapping windows are merged: nms, wbf, or "
        "edge (one box per object: pieces of an object cut by a window edge are merged "
        "across windows by intersection over the smaller box)",
    )
    # -- whole slides -------------------------------------------------------------------
    mpp: float | None = Field(
        None,
        gt=0,
        description="whole slides: microns per pixel the model sees (the pyramid level and "
        "scale are chosen from the slide's metadata); none: the level in inference.level",
    )
    level: int | None = Field(
        None,
        ge=0,
        description="whole slides without inference.mpp: the pyramid level read "
        "(none: 0, full resolution)",
    )
    agnostic_nms: bool = Field(
        True,
        description="detection: after NMS within each class, boxes of different classes "
        "overlapping by more than iou_threshold are one object (the best-scored box is "
        "kept), so a cell the model "
        "hesitates over is counted once; false: suppression within each class only "
        "(COCO's convention; allows two classes on one object)",
    )

    @field_validator("window", mode="before")
    @classmethod
    def _square(cls, value: Any) -> Any:
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            return (value, value)
        return value

    @field_validator("window")
    @classmethod
    def _window_sides(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        return _sides(value)


class EarlyStoppingConfig(Section):
    """Stop when the monitored metric has not improved for ``patience`` epochs."""

    monitor: str = Field("auto", description="metric watched; auto: checkpoint.monitor")
    patience: int = Field(10, ge=1, description="epochs without improvement before stopping")
    mode: Literal["auto", "min", "max"] = Field(
        "auto", description="min or max; auto: losses and errors go down, other metrics up"
    )
    min_delta: float = Field(0.0, ge=0, description="smallest change that counts as improving")


class TrainerConfig(Section):
    """What Lightning's Trainer gets."""

    max_epochs: int = Field(10, ge=1, description="epochs to train")
    accelerator: str = Field("auto", description="cpu, gpu, mps, ..., or auto (Lightning's)")
    devices: int | str | list[int] = Field(
        "auto", description="how many devices (at least 1), a list of their ids, or auto"
    )
    strategy: str = Field("auto", description="Lightning's strategy, e.g. ddp; auto")
    num_nodes: int = Field(1, ge=1, description="machines of a multi-node run")
    precision: Literal[
        "32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true"
    ] = Field("32-true", description="numeric precision, e.g. 16-mixed or bf16-mixed")
    gradient_clip_val: float | None = Field(
        None, gt=0, description="clip gradients at this norm (or value); none: no clipping"
    )
    gradient_clip_algorithm: Literal["norm", "value"] = Field(
        "norm", description="clip the gradients' norm or each value"
    )
    accumulate_grad_batches: int = Field(
        1, ge=1, description="batches whose gradients add up to one optimizer step"
    )
    deterministic: bool = Field(
        False, description="deterministic algorithms: two CPU runs write identical metrics.csv"
    )
    limit_train_batches: int | float | None = Field(
        None, description="training batches per epoch: a count, or a share if a float; none: all"
    )
    limit_val_batches: int | float | None = Field(
        None, description="validation batches per epoch: a count, or a share; none: all"
    )
    limit_test_batches: int | float | None = Field(
        None, description="test batches: a count, or a share; none: all"
    )
    log_every_n_steps: int = Field(10, ge=1, description="log training steps this often")
    test_after_fit: bool = Field(
        True,
        description="fit ends by evaluating best.ckpt on the test data (data.test_path or the "
        "data's test split) when there is any, writing what mediscope test writes",
    )
    early_stopping: EarlyStoppingConfig | None = Field(
        None, description="stop when the monitored metric stops improving; none: never"
    )
    ema: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="keep an exponential moving average of the weights with this decay "
        "(e.g. 0.999, warmed up as min(decay, (1 + n) / (10 + n)) after n steps); "
        "validation, checkpoints, test and export use the average; none: off",
    )
    compile: bool = Field(
        False,
        description="compile the network with torch.compile (needs a C++ compiler on a CPU); "
        "checkpoints stay those of the plain network",
    )

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: int | str | list[int]) -> int | str | list[int]:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, str) and value != "auto":
            raise ValueError("give a number of devices, a list of device ids, or auto")
        if isinstance(value, int) and value < 1:
            raise ValueError("give at least 1 device, a list of device ids, or auto")
        if isinstance(value, list) and (
            not value or min(value) < 0 or len(set(value)) < len(value)
        ):
            raise ValueError("give a non-empty list of distinct device ids (0, 1, ...)")
        return value

    @field_validator(
        "limit_train_batches", "limit_val_batches", "limit_test_batches", mode="before"
    )
    @classmethod
    def _batches(cls, value: Any) -> Any:
        # Lightning reads an int as a count and a float as a share; 0 would skip training
        # (or validation, which picks best.ckpt) and still report success.
        count = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        share = isinstance(value, float) and 0 < value <= 1
        if value is None or isinstance(value, str) or count or share:
            return value
        raise ValueError(
            "give a number of batches (an integer, at least 1), a share of them (a float in "
            "(0, 1]), or none for all"
        )


class CheckpointConfig(Section):
    """Which checkpoints are kept: ``epoch=NNN.ckpt``, ``best.ckpt``, ``last.ckpt``."""

    monitor: str = Field(
        "auto",
        description="metric for best.ckpt; auto = the task's main one (val/f1_macro, "
        "val/dice_mean, val/map_50)",
    )
    mode: Literal["auto", "min", "max"] = Field(
        "auto", description="min or max; auto: the task's, or from the monitored metric's name"
    )
    every_n_epochs: int = Field(
        0,
        ge=0,
        description="also keep epoch=NNN.ckpt every N epochs (each as large as best.ckpt); "
        "0: only best.ckpt and last.ckpt",
    )


LoggerName = Literal["csv", "tensorboard", "wandb", "mlflow", "clearml"]
DEFAULT_LOGGERS: tuple[LoggerName, ...] = ("csv", "tensorboard")


def progress_interval(value: Any) -> float | str:
    """``logging.progress_every`` as seconds (a float) or a share of an epoch (``"N%"``).

    Examples:
        >>> progress_interval("30s"), progress_interval(12), progress_interval(" 10 %")
        (30.0, 12.0, '10%')
    """
    if isinstance(value, bool):
        raise ValueError("give seconds (e.g. 30) or a share of an epoch (e.g. '10%')")
    text = str(value).strip().lower().replace(" ", "")
    percent = text.endswith("%")
    try:
        number = float(text[:-1] if percent else text.removesuffix("s"))
    except ValueError:
        raise ValueError(
            "give seconds (e.g. 30) or a share of an epoch (e.g. '10%'), or 0 for none"
        ) from None
    if percent:
        if not 0 < number <= 100:
            raise ValueError("a share of an epoch is more than 0% and at most 100%")
        return f"{number:g}%"
    if not (math.isfinite(number) and number >= 0):
        raise ValueError("seconds are 0 (no lines within an epoch) or more")
    return number


class LoggingConfig(Section):
    """Loggers, experiment trackers and terminal progress."""

    loggers: list[LoggerName] = Field(
        default_factory=lambda: list(DEFAULT_LOGGERS),
        description="csv (metrics.csv) and tensorboard write into the run folder; wandb, "
        "mlflow and clearml are experiment trackers (pip install 'mediscope[tracking]')",
    )
    progress: Literal["auto", "rich", "plain", "none"] = Field(
        "auto",
        description="terminal progress; auto: a live bar on a terminal, plain lines otherwise "
        "(output to a file or a pipe: SLURM, nohup, CI)",
    )
    progress_every: float | str = Field(
        30.0,
        description="plain progress: a line within an epoch (batches done, loss, images/s, "
        "ETA) at most every this many seconds, or every N % of an epoch as 'N%'; 0: only the "
        "line at the end of each epoch",
    )
    project: str | None = Field(
        None,
        description="trackers: the W&B project, MLflow experiment or ClearML project; "
        "default run.name",
    )
    offline: Literal["auto"] | bool = Field(
        "auto",
        description="W&B and ClearML: true keeps them offline (files in the run folder); auto: "
        "offline unless a server is configured (W&B: WANDB_API_KEY or WANDB_MODE; ClearML: "
        "CLEARML_API_HOST or a clearml.conf)",
    )
    mlflow_uri: str | None = Field(
        None,
        description="MLflow tracking server or store, e.g. http://host:5000; default "
        "MLFLOW_TRACKING_URI, else the local file store <run.dir>/mlruns",
    )

    @field_validator("progress_every", mode="before")
    @classmethod
    def _every(cls, value: Any) -> float | str:
        return progress_interval(value)

    @field_validator("loggers")
    @classmethod
    def _once(cls, value: list[str]) -> list[str]:
        dupes = sorted({name for name in value if value.count(name) > 1})
        if dupes:
            raise ValueError(f"loggers repeat: {', '.join(dupes)}")
        return value


class OperatingPointConfig(Section):
    """A target for the thresholds chosen on validation: one of the two."""

    sensitivity: float | None = Field(
        None, gt=0, le=1, description="the sensitivity the threshold must reach on validation"
    )
    specificity: float | None = Field(
        None, gt=0, le=1, description="the specificity the threshold must reach on validation"
    )

    @model_validator(mode="after")
    def _one_target(self) -> OperatingPointConfig:
        if (self.sensitivity is None) == (self.specificity is None):
            raise ValueError(
                "give exactly one of sensitivity and specificity, e.g. {sensitivity: 0.95}"
            )
        return self

    def target(self) -> dict[str, float]:
        """``{"sensitivity": x}`` or ``{"specificity": x}``."""
        if self.sensitivity is not None:
            return {"sensitivity": float(self.sensitivity)}
        return {"specificity": float(self.specificity or 0.0)}


class ReportConfig(Section):
    """What evaluations measure beyond the metrics and what ``report.html`` shows."""

    bootstrap: int = Field(
        1000,
        ge=0,
        description="bootstrap resamples of the evaluated images for the confidence "
        "intervals of every metric; 0 turns them off",
    )
    confidence: float = Field(0.95, gt=0, lt=1, description="level of the intervals")
    gradcam: int = Field(
        8, ge=0, description="classification: images shown with their Grad-CAM heatmap"
    )
    gallery: int = Field(
        8, ge=0, description="segmentation, detection: images in each best and worst gallery"
    )
    html: bool = Field(True, description="write report.html after fit, validate and test")
    surface_tolerance: float = Field(
        2.0,
        gt=0,
        description="segmentation: tolerance of the normalised surface Dice (nsd), in "
        "pixels, or in µm when report.pixel_spacing is set",
    )
    pixel_spacing: float | None = Field(
        None,
        gt=0,
        description="segmentation: pixel size in µm; HD95, ASSD and the NSD tolerance are "
        "then in µm (null: in pixels)",
    )
    object_metrics: Literal["auto"] | bool = Field(
        "auto",
        description="segmentation: per-object precision, recall, F1 and count errors "
        "(connected components matched at IoU > 0.5); auto: when the ground truth of some "
        "class has at least 2 objects per image on average (nuclei, bacteria)",
    )
    calibrate: Literal["none", "temperature"] = Field(
        "none",
        description="classification: temperature scaling fitted on the validation split "
        "(stored in the run's calibration.json, used by test, predict and export; ECE and "
        "reliability before and after in the report)",
    )
    operating_point: OperatingPointConfig | Literal["youden"] | None = Field(
        None,
        description="classification: per-class thresholds chosen on validation, e.g. "
        "{sensitivity: 0.95} or {specificity: 0.9} (plus Youden's J), or youden alone; "
        "sensitivity and specificity at them are reported with intervals",
    )


class RunConfig(Section):
    """Where the run directory goes: ``<dir>/<name>/<timestamp>/``."""

    name: str = Field(
        "run",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description=f"the run's name: its folder below run.dir (at most {MAX_RUN_NAME} characters)",
    )
    dir: Path = Field(Path("runs"), description="the folder that holds the runs")

    @field_validator("name")
    @classmethod
    def _fits(cls, value: str) -> str:
        # Folder names end at 255 bytes (the pattern allows ASCII only); a suffix such
        # as the study folder's -study must still fit.
        if len(value) > MAX_RUN_NAME:
            raise ValueError(
                f"a run name names a folder and may have at most {MAX_RUN_NAME} characters "
                f"(folder names end at 255 bytes); this one has {len(value)}"
            )
        return value


class DatasetConfig(Section):
    """What a config says of its data: the task, the seed and the ``data`` section.

    The dataset doctor (``mediscope check``) needs no more; :class:`Config` adds the
    model and everything about training.
    """

    task: str = Field(
        description="what the model learns: classification, segmentation or detection "
        "(any registered task)"
    )
    seed: int = Field(
        42,
        ge=0,
        lt=2**32,
        description="seeds Python, NumPy, torch, shuffling and augmentation (0 .. 2**32 - 1)",
    )
    data: DataConfig = Field(description="where the data is and how it is loaded")

    # Where the config came from (file, lines, overrides), for error messages.
    _source: Any = PrivateAttr(default=None)


class Config(DatasetConfig):
    """A whole mediscope config."""

    model: ModelConfig = Field(description="the network, its weights and what is frozen")
    loss: LossConfig = Field(default_factory=LossConfig, description="the loss")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="the optimizer")
    scheduler: SchedulerConfig = Field(
        default_factory=SchedulerConfig, description="the learning-rate schedule"
    )
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig, description="training augmentations"
    )
    trainer: TrainerConfig = Field(
        default_factory=TrainerConfig, description="what Lightning's Trainer gets"
    )
    checkpoint: CheckpointConfig = Field(
        default_factory=CheckpointConfig, description="which checkpoints are kept"
    )
    logging: LoggingConfig = Field(
        default_factory=LoggingConfig, description="loggers, trackers and terminal progress"
    )
    inference: InferenceConfig = Field(
        default_factory=InferenceConfig, description="how whole images are predicted"
    )
    report: ReportConfig = Field(
        default_factory=ReportConfig, description="confidence intervals and report.html"
    )
    run: RunConfig = Field(default_factory=RunConfig, description="where the run folder goes")


def metric_mode(metric: str) -> Literal["min", "max"]:
    """Losses and errors go down; every other metric goes up."""
    leaf = metric.rsplit("/", 1)[-1]
    return "min" if "loss" in leaf or "error" in leaf else "max"
