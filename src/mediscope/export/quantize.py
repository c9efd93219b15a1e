"""int8 ONNX models, and what quantizing cost on the run's validation split.

Static quantization in QDQ format is used: weights int8 per channel, activations uint8
with ranges calibrated (min-max) on the run's validation images, preprocessed as the
data module does for evaluation. Dynamic quantization (weights only, activations
quantized at run time) was measured too, on the three demo models (onnxruntime 1.32,
CPU, 2 busy cores; ms per image, fixed batch 1; validation split)::

    model                          float32         static QDQ       dynamic
    simple_cnn, 64 px  (accuracy)  3.6 ms  0.9708  2.0 ms  0.9708   29.8 ms  0.9708
    unet, 96 px        (Dice)      24 ms   0.9740  16 ms   0.9740   159 ms   0.9740
    retinanet-lite0, 256 (mAP@.5)  66 ms   0.6407  37 ms   0.6446   525 ms   0.5977

Dynamic quantization turns every convolution into ``ConvInteger`` plus run-time
quantization of its input, which onnxruntime runs 8 to 10 times *slower* than float32
(these CNNs are convolutions end to end: there is no MatMul for it to speed up), and it
lost 0.043 mAP@.5 on the detector (84 % of its boxes found again, against 99 % for
static). With static QDQ, onnxruntime fuses each DequantizeLinear -> Conv ->
QuantizeLinear into an int8 convolution: 1.5 to 1.8 times as fast as float32, a
quarter of the size, with no measurable loss here. So static it is; ``model.int8.json``
holds the change measured on each exported model (:func:`measure`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mediscope.config.schema import Config
from mediscope.errors import ConfigError, DataError
from mediscope.export.onnx_export import INPUT_NAME, quiet_export, require, session, set_metadata
from mediscope.files import write_json_atomic, write_with
from mediscope.runtime.info import PRE_NMS_TOP, ModelInfo
from mediscope.runtime.pipeline import dense_detections
from mediscope.tasks.detection import EVAL_MAX_DETECTIONS, EVAL_SCORE_THRESHOLD

#: Validation images the activation ranges are calibrated on (at most).
CALIBRATION_IMAGES = 128
QUANTIZATION = "int8 static QDQ (weights int8 per channel, activations uint8, min-max)"


@dataclass
class ValidationData:
    """The run's validation images ``(1, C, H, W)`` float32 and their targets."""

    images: list[np.ndarray]
    targets: list[Any]
    ids: list[str] = field(default_factory=list)


def validation_data(
    config: Config,
    checkpoint: Path,
    classes: list[str],
    stats: tuple[list[float], list[float]] | None,
) -> ValidationData:
    """The validation split of the run, preprocessed as evaluation does.

    Raises:
        DataError: when the run's data is gone or the split is empty.
    """
    from mediscope.engine.restore import split_samples

    datamodule, samples = split_samples(config, checkpoint, classes, split="val", stats=stats)
    dataset = datamodule.dataset(samples, train=False)
    if len(dataset) == 0:
        raise DataError(
            "the run's validation split is empty: nothing to calibrate int8 on",
            where=config.data.path,
            hint="export without --quantize",
        )
    images, targets = [], []
    for index in range(len(dataset)):
        image, target = dataset[index]
        images.append(image.unsqueeze(0).numpy().astype(np.float32))
        targets.append(target)
    return ValidationData(images, targets, samples.ids())


def calibration_reader(images: list[np.ndarray]) -> Any:
    """onnxruntime's calibration data reader over ``images`` (one per call)."""
    base = require("onnxruntime.quantization").CalibrationDataReader

    class Reader(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            self._items: Iterator[np.ndarray] = iter(images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self._items, None)
            return None if image is None else {INPUT_NAME: image}

    return Reader()


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    """Holds back onnxruntime's quantizer log lines (on the root logger): e.g. that a
    GroupNorm scale vector has no channel axis to quantize per channel, so it is
    quantized per tensor."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_model(
    source: Path, target: Path, data: ValidationData, info: ModelInfo, *, method: str = "static"
) -> ModelInfo:
    """Writes the int8 model of the float ONNX file ``source`` to ``target`` (atomically).

    Args:
        source: The float32 ONNX file.
        target: The int8 file to write.
        data: Validation images to calibrate on (the first :data:`CALIBRATION_IMAGES`).
        info: The float model's info; a copy with ``export["quantization"]`` goes into
            the int8 file's metadata.
        method: ``static`` (QDQ, calibrated) or ``dynamic`` (weights only; measured
            slower on these CNNs, kept for comparison).

    Returns:
        The int8 model's info.
    """
    onnx = require("onnx")
    quantization = require("onnxruntime.quantization")
    reader_images = data.images[:CALIBRATION_IMAGES]
    with (
        tempfile.TemporaryDirectory(prefix="mediscope-int8-") as tmp,
        quiet_export(),
        quiet_quantizer(),
    ):
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quantization.quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        if method == "static":
            quantization.quantize_static(
                str(prepared),
                str(quantized),
                calibration_reader(reader_images),
                quant_format=quantization.QuantFormat.QDQ,
                per_channel=True,
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                calibrate_method=quantization.CalibrationMethod.MinMax,
            )
            described = QUANTIZATION + f", calibrated on {len(reader_images)} validation images"
        else:
            quantization.quantize_dynamic(
                str(prepared), str(quantized), weight_type=quantization.QuantType.QInt8
            )
            described = "int8 dynamic (weights int8, activations quantized at run time)"
        model = onnx.load(str(quantized))
    quantized_info = ModelInfo.from_json(info.to_json())
    quantized_info.export = {**info.export, "quantization": described}
    set_metadata(model, quantized_info)
    write_with(target, lambda path: onnx.save(model, str(path)))
    return quantized_info


def _outputs(runner: Any, images: list[np.ndarray]) -> list[list[np.ndarray]]:
    return [runner.run(None, {INPUT_NAME: image}) for image in images]


def measure(
    info: ModelInfo, float_file: Path, int8_file: Path, data: ValidationData
) -> dict[str, Any]:
    """Runs both files on the validation images and compares them with the truth and
    with each other.

    Returns:
        ``metric`` and its ``float32`` and ``int8`` values and ``change`` (int8 less
        float32), ``n_images``, and per task: classification ``agreement`` (same top
        class) and ``max_abs_probability_difference``; segmentation ``pixel_accuracy``
        of both and ``mask_agreement`` (share of pixels with the same class);
        detection ``map_50`` (boxes down to score 0.001, 100 per image, as the run's
        evaluation) and ``matched_boxes`` (share of the float model's boxes at its
        counting threshold that the int8 model finds with IoU >= 0.5 and the same
        class).
    """
    float_out = _outputs(session(float_file.read_bytes()), data.images)
    int8_out = _outputs(session(int8_file.read_bytes()), data.images)
    if info.task == "classification":
        result = _classification(info, float_out, int8_out, data)
    elif info.task == "multilabel":
        result = _multilabel(info, float_out, int8_out, data)
    elif info.task == "segmentation":
        result = _segmentation(info, float_out, int8_out, data)
    elif info.task == "detection":
        result = _detection(info, float_out, int8_out, data)
    else:  # pragma: no cover - the graph refuses other tasks
        raise ConfigError(f"cannot measure a {info.task} model", where="task")
    result["change"] = result["int8"] - result["float32"]
    return {"split": "val", "n_images": len(data.images), **_finite(result)}


def _finite(value: Any) -> Any:
    """``value`` with NaN (an undefined metric) as None, as the JSON file holds it."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _classification(
    info: ModelInfo, a: list[list[np.ndarray]], b: list[list[np.ndarray]], data: ValidationData
) -> dict[str, Any]:
    probs_a = np.concatenate([o[0] for o in a])
    probs_b = np.concatenate([o[0] for o in b])
    labels = np.array([int(t) for t in data.targets])
    return {
        "metric": "accuracy",
        "float32": float((probs_a.argmax(1) == labels).mean()),
        "int8": float((probs_b.argmax(1) == labels).mean()),
        "agreement": float((probs_a.argmax(1) == probs_b.argmax(1)).mean()),
        "max_abs_probability_difference": float(np.abs(probs_a - probs_b).max()),
    }


def _multilabel(
    info: ModelInfo, a: list[list[np.ndarray]], b: list[list[np.ndarray]], data: ValidationData
) -> dict[str, Any]:
    """Share of image-label decisions right, at the thresholds chosen on validation."""
    probs_a = np.concatenate([o[0] for o in a])
    probs_b = np.concatenate([o[0] for o in b])
    cut = np.array([info.thresholds.get(c, 0.5) for c in info.classes])
    truth = np.stack([np.asarray(t) for t in data.targets]).astype(bool)
    called_a, called_b = probs_a >= cut, probs_b >= cut
    return {
        "metric": "label accuracy",
        "float32": float((called_a == truth).mean()),
        "int8": float((called_b == truth).mean()),
        "agreement": float((called_a == called_b).mean()),
        "max_abs_probability_difference": float(np.abs(probs_a - probs_b).max()),
    }


def _segmentation(
    info: ModelInfo, a: list[list[np.ndarray]], b: list[list[np.ndarray]], data: ValidationData
) -> dict[str, Any]:
    from mediscope.metrics.segmentation import ConfusionAccumulator

    ignore = _ignore_index(info)
    k = len(info.classes)
    float_cm, int8_cm = ConfusionAccumulator(k, ignore_index=ignore), ConfusionAccumulator(k)
    int8_cm.ignore_index = ignore
    same = total = 0
    for out_a, out_b, mask in zip(a, b, data.targets, strict=True):
        pred_a, pred_b = out_a[0][0].argmax(0), out_b[0][0].argmax(0)
        truth = np.asarray(mask)
        float_cm.update(pred_a, truth)
        int8_cm.update(pred_b, truth)
        same += int((pred_a == pred_b).sum())
        total += pred_a.size
    float_report, int8_report = float_cm.report(info.classes), int8_cm.report(info.classes)
    return {
        "metric": "dice_mean",
        "float32": float_report["dice_mean"],
        "int8": int8_report["dice_mean"],
        "pixel_accuracy": {
            "float32": float_report["pixel_accuracy"],
            "int8": int8_report["pixel_accuracy"],
        },
        "mask_agreement": same / total if total else float("nan"),
        "max_abs_probability_difference": float(
            max(np.abs(x[0] - y[0]).max() for x, y in zip(a, b, strict=True))
        ),
    }


def _ignore_index(info: ModelInfo) -> int | None:
    import yaml

    try:
        value = yaml.safe_load(info.config)["data"].get("ignore_index")
    except (yaml.YAMLError, TypeError, KeyError, AttributeError):
        return None
    return int(value) if isinstance(value, int) else None


def _detect(
    info: ModelInfo,
    outputs: list[list[np.ndarray]],
    threshold: float,
    max_detections: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """Boxes per image as the runtime finds them (threshold, top-k, per-class NMS)."""
    settings = info.inference
    found = []
    for boxes, scores in outputs:
        kept = dense_detections(
            boxes[0],
            scores[0],
            score_threshold=threshold,
            iou_threshold=settings.iou_threshold,
            max_detections=max_detections or settings.max_detections,
            pre_nms_top=PRE_NMS_TOP,
        )
        found.append(dict(zip(("boxes", "scores", "labels"), kept, strict=True)))
    return found


def _detection(
    info: ModelInfo, a: list[list[np.ndarray]], b: list[list[np.ndarray]], data: ValidationData
) -> dict[str, Any]:
    from mediscope.metrics.detection import box_iou, evaluate_detections

    targets = [{k: v.numpy() for k, v in target.items()} for target in data.targets]
    # mAP as the run's evaluation computes it: low-scoring boxes kept, 100 per image
    low_a = _detect(info, a, EVAL_SCORE_THRESHOLD, EVAL_MAX_DETECTIONS)
    low_b = _detect(info, b, EVAL_SCORE_THRESHOLD, EVAL_MAX_DETECTIONS)
    map_a = evaluate_detections(low_a, targets, info.classes).metrics["map_50"]
    map_b = evaluate_detections(low_b, targets, info.classes).metrics["map_50"]
    threshold = info.inference.score_threshold
    found = matched = 0
    for x, y in zip(_detect(info, a, threshold), _detect(info, b, threshold), strict=True):
        found += len(x["boxes"])
        if len(x["boxes"]) and len(y["boxes"]):
            iou = box_iou(x["boxes"], y["boxes"])
            same_class = x["labels"][:, None] == y["labels"][None, :]
            matched += int(((iou >= 0.5) & same_class).any(axis=1).sum())
    return {
        "metric": "map_50",
        "float32": float(map_a),
        "int8": float(map_b),
        "score_threshold": threshold,
        "boxes_float32": found,
        "matched_boxes": matched / found if found else float("nan"),
        "max_abs_score_difference": float(
            max(np.abs(x[1] - y[1]).max() for x, y in zip(a, b, strict=True))
        ),
    }


def write_measurement(path: Path, measured: dict[str, Any]) -> Path:
    """Writes the measured change beside the int8 file (``model.int8.json``)."""
    return write_json_atomic(path, measured)
