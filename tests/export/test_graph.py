"""The inference graph computes the runtime contract, eagerly, traced and in ONNX.

No training here: models have random weights; the trained runs are in test_export_run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from helpers import tiny_detection_config
from mediscope.errors import ConfigError
from mediscope.export.graph import ClassificationGraph, SegmentationGraph, inference_graph
from mediscope.export.onnx_export import export_onnx, session
from mediscope.export.torchscript import export_torchscript, read_info
from mediscope.models import build_model
from mediscope.runtime.info import ModelInfo
from mediscope.runtime.pipeline import dense_detections
from mediscope.tasks import BaseTask, build_task
from mediscope.tasks.validate import config_from_dict

pytest.importorskip("onnxruntime")

CLASSES = ["cocci", "bacilli", "yeast"]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def segmenter(name: str, **params: Any) -> nn.Module:
    model: nn.Module = build_model(name, task="segmentation", num_classes=3, **params)
    return model.eval()


SEGMENTERS = {
    "unet": {"width": 4, "depth": 3},
    "segnet": {"width": 4, "depth": 2},
    "smp:Unet": {"encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 8, 8]},
    "smp:PAN": {"encoder": "resnet18"},  # pads small inputs up to 128 px
}
# odd sizes, a multiple, and sides so small the network's padding repeats the edge
SIZES = [(32, 32), (37, 53), (3, 2), (9, 40)]


@pytest.mark.parametrize("name", SEGMENTERS)
def test_segmentation_graph_is_the_softmax_of_the_model_at_any_size(name: str) -> None:
    model = segmenter(name, **SEGMENTERS[name])
    graph = SegmentationGraph(model).eval()
    example = torch.randn(1, 3, 32, 32)
    traced = torch.jit.trace(graph, (example,), check_trace=False)
    for size in SIZES:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            expected = model(x).softmax(1)
            eager, from_trace = graph(x), traced(x)
        assert eager.shape == (2, 3, *size)
        torch.testing.assert_close(eager, expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(from_trace, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", SEGMENTERS)
def test_segmentation_onnx_takes_any_size(name: str, tmp_path: Path) -> None:
    model = segmenter(name, **SEGMENTERS[name])
    graph = SegmentationGraph(model).eval()
    info = ModelInfo(
        task="segmentation",
        classes=["a", "b", "c"],
        image_size=(32, 32),
        channels=3,
        mean=[0.5] * 3,
        std=[0.25] * 3,
        outputs=["probabilities"],
    )
    info = export_onnx(graph, info, tmp_path / "m.onnx", opset=13)
    assert info.export["input_shape"] == [1, 3, "height", "width"]
    runner = session((tmp_path / "m.onnx").read_bytes())
    for size in SIZES:
        x = torch.randn(1, 3, *size)
        (probs,) = runner.run(None, {"image": x.numpy()})
        with torch.no_grad():
            expected = model(x).softmax(1).numpy()
        np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-5, err_msg=str(size))


def detection_task(name: str, smears: Path, tmp_path: Path, size: int = 64) -> BaseTask:
    params: dict[str, Any] = {"backbone": "resnet18", "channels": 16, "head_depth": 1}
    if name == "fcos":
        params["channels"] = 32  # GroupNorm groups
    if name == "faster_rcnn":
        params = {"backbone": "resnet18", "channels": 16, "representation_size": 32}
    raw = tiny_detection_config(
        smears, tmp_path, model={"name": name, "params": params}, data={"image_size": size}
    )
    if name != "retinanet":
        raw.pop("loss", None)
    torch.manual_seed(0)
    return build_task(config_from_dict(raw), CLASSES).eval()


def info_of(task: BaseTask) -> ModelInfo:
    outputs = ["boxes", "scores"] if task.config.task == "detection" else ["probabilities"]
    data = task.config.data
    return ModelInfo(
        task=task.config.task,
        classes=list(task.classes),
        image_size=(int(data.image_size[0]), int(data.image_size[1])),
        channels=3,
        mean=[0.5] * 3,
        std=[0.25] * 3,
        outputs=outputs,
    )


@pytest.mark.parametrize(("name", "size"), [("retinanet", 64), ("fcos", 64), ("fcos", 72)])
def test_dense_detection_outputs_give_the_models_own_detections(
    name: str, size: int, tiny_smears: Path, tmp_path: Path
) -> None:
    task = detection_task(name, tiny_smears, tmp_path, size)
    graph = inference_graph(task)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        boxes, scores = graph(x)
        # random weights score low: a threshold that keeps ~100 candidates per image
        threshold = float(scores.flatten().sort().values[-200])
        expected = task.model.predict(x, score_threshold=threshold, iou_threshold=0.5)
    assert boxes.shape[:2] == scores.shape[:2] and scores.shape[2] == len(CLASSES)
    assert float(boxes.min()) >= 0 and float(boxes.max()) <= size  # clipped to the input
    for i, want in enumerate(expected):
        found_boxes, found_scores, found_labels = dense_detections(
            boxes[i].numpy(),
            scores[i].numpy(),
            score_threshold=threshold,
            iou_threshold=0.5,
            max_detections=300,
        )
        assert len(found_boxes) == len(want["boxes"]) > 0
        order = np.argsort(-want["scores"].numpy(), kind="stable")
        np.testing.assert_allclose(found_scores, want["scores"].numpy()[order], atol=1e-6)
        np.testing.assert_allclose(found_boxes, want["boxes"].numpy()[order], atol=1e-4)
        assert found_labels.tolist() == want["labels"].numpy()[order].tolist()


@pytest.mark.parametrize("name", ["retinanet", "fcos"])
def test_detection_graph_in_onnx_and_torchscript(
    name: str, tiny_smears: Path, tmp_path: Path
) -> None:
    task = detection_task(name, tiny_smears, tmp_path)
    graph = inference_graph(task)
    info = export_onnx(graph, info_of(task), tmp_path / "m.onnx", dynamic_batch=True)
    assert info.export["dynamic_batch"] and info.export["input_shape"] == ["batch", 3, 64, 64]
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        boxes, scores = graph(x)
    got_boxes, got_scores = session((tmp_path / "m.onnx").read_bytes()).run(
        None, {"image": x.numpy()}
    )
    np.testing.assert_allclose(got_boxes, boxes.numpy(), atol=1e-3, rtol=1e-5)
    np.testing.assert_allclose(got_scores, scores.numpy(), atol=1e-5)
    export_torchscript(graph, info_of(task), tmp_path / "m.pt")
    traced = torch.jit.load(str(tmp_path / "m.pt"))
    with torch.no_grad():
        ts_boxes, ts_scores = traced(x)
    torch.testing.assert_close(ts_boxes, boxes, rtol=0, atol=1e-4)
    torch.testing.assert_close(ts_scores, scores, rtol=0, atol=1e-6)
    assert read_info(tmp_path / "m.pt").outputs == ["boxes", "scores"]


def test_faster_rcnn_is_refused_with_a_reason(tiny_smears: Path, tmp_path: Path) -> None:
    task = detection_task("faster_rcnn", tiny_smears, tmp_path)
    with pytest.raises(ConfigError) as caught:
        inference_graph(task)
    message = str(caught.value)
    assert "faster_rcnn cannot be exported" in message and "\n" not in message
    assert "retinanet or fcos" in message


def test_fixed_batch_onnx_takes_one_image(tmp_path: Path) -> None:
    model = build_model("simple_cnn", task="classification", num_classes=3, width=8, depth=2)

    config = config_from_dict(
        {
            "task": "classification",
            "data": {"format": "imagefolder", "path": str(tmp_path), "image_size": 24},
            "model": {"name": "simple_cnn"},
        }
    )
    task: Any = SimpleNamespace(config=config, classes=["a", "b", "c"], model=model)
    graph = inference_graph(task)
    info = export_onnx(graph, info_of(task), tmp_path / "m.onnx")
    assert info.export["input_shape"] == [1, 3, 24, 24] and info.export["opset"] == 17
    runner = session((tmp_path / "m.onnx").read_bytes())
    x = torch.randn(1, 3, 24, 24)
    (probs,) = runner.run(None, {"image": x.numpy()})
    with torch.no_grad():
        expected = model.eval()(x).softmax(1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    with pytest.raises(Exception, match="(?i)dimension|shape|index"):
        runner.run(None, {"image": torch.randn(2, 3, 24, 24).numpy()})


def test_a_model_onnxruntime_cannot_run_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mediscope.export import onnx_export

    def refuse(model_bytes: bytes) -> Any:
        raise RuntimeError("Opset 17 is under development and support for this is limited.")

    monkeypatch.setattr(onnx_export, "session", refuse)
    model = build_model("simple_cnn", task="classification", num_classes=2, width=4, depth=1)
    info = ModelInfo(
        task="classification",
        classes=["a", "b"],
        image_size=(16, 16),
        channels=3,
        mean=[0.5] * 3,
        std=[0.25] * 3,
        outputs=["probabilities"],
    )
    with pytest.raises(ConfigError, match="cannot run the exported opset 17 model") as caught:
        export_onnx(ClassificationGraph(model.eval()), info, tmp_path / "m.onnx")
    assert "choose a lower --opset" in str(caught.value)
    assert not (tmp_path / "m.onnx").exists()
