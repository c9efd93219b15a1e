"""The exported network: a task's model wrapped to compute exactly the runtime contract.

:func:`inference_graph` returns a module whose ``forward(image)`` takes the normalised
float32 batch ``(N, C, H, W)`` and returns what :mod:`mediscope.runtime.info` promises:

* classification: ``probabilities`` ``(N, K)``, the softmax of the logits;
* segmentation: ``probabilities`` ``(N, K, H, W)``, for any ``H, W`` (the padding the
  network needs is part of the graph, written with tensor operations so that a trace
  keeps H and W symbolic);
* detection (dense detectors: ``retinanet``, ``fcos``): ``boxes`` ``(N, A, 4)`` xyxy in
  input pixels, clipped to the input, and ``scores`` ``(N, A, C)``, for inputs of the
  training size (the anchors of that size are a constant of the graph). Score threshold,
  top-k and NMS are left to NumPy: they are cheap there, and an ONNX NMS would tie the
  file to one threshold.

The same module runs eagerly, traced (TorchScript) and exported (ONNX), so the three
give the same numbers.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from mediscope.errors import ConfigError
from mediscope.tasks import BaseTask

#: Output names of the graph, by task.
OUTPUTS: dict[str, tuple[str, ...]] = {
    "classification": ("probabilities",),
    "multilabel": ("probabilities",),
    "segmentation": ("probabilities",),
    "detection": ("boxes", "scores"),
}


def output_names(task: str) -> list[str]:
    """The graph's output names for ``task``.

    Example:
        >>> output_names("detection")
        ['boxes', 'scores']
    """
    if task not in OUTPUTS:
        raise ConfigError(
            f"task '{task}' cannot be exported",
            where="task",
            hint=f"export works for {', '.join(OUTPUTS)}",
        )
    return list(OUTPUTS[task])


class ClassificationGraph(nn.Module):
    """``softmax(model(image))``: class probabilities ``(N, K)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(image)
        return logits.softmax(dim=1)


class MultiLabelGraph(nn.Module):
    """``sigmoid(model(image))``: independent label probabilities ``(N, L)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(image)
        return logits.sigmoid()


def _arange(end: torch.Tensor) -> torch.Tensor:
    """``0 .. end - 1`` for a 0-d tensor ``end`` (traced as a symbolic Range)."""
    return torch.arange(end, device=end.device)  # type: ignore[call-overload]


def _padding_index(side: torch.Tensor, padded: torch.Tensor, reflect: torch.Tensor) -> torch.Tensor:
    """Source rows (or columns) of a side padded at the end from ``side`` to ``padded``:
    the reflection of the last ones (as ``F.pad(mode="reflect")``) or the last repeated."""
    index = _arange(padded)
    last = side - 1
    mirrored = torch.where(index > last, 2 * last - index, index)
    repeated = torch.minimum(index, last)
    return torch.where(reflect, mirrored, repeated)


class ScatterUnpool2d(nn.Module):
    """``nn.MaxUnpool2d`` with kernel = stride and no padding, as a scatter.

    torch's tracer cannot record ``max_unpool2d`` (its output-size check turns traced
    sizes into booleans); scattering the values to their indices in a zero map of
    ``k`` times the size is the same operation, in ops the tracer and ONNX keep.
    """

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        zeros = torch.zeros_like(x).repeat(1, 1, self.kernel, self.kernel)
        values = zeros.flatten(2).scatter(2, indices.flatten(2), x.flatten(2))
        return values.reshape(zeros.shape)


def _traceable(model: nn.Module) -> nn.Module:
    """``model``, or a copy whose non-overlapping ``MaxUnpool2d`` layers scatter."""
    names = []
    for name, module in model.named_modules():
        if isinstance(module, nn.MaxUnpool2d):
            kernel, stride, padding = (
                nn.modules.utils._pair(v)
                for v in (module.kernel_size, module.stride, module.padding)
            )
            if kernel == stride and kernel[0] == kernel[1] and padding == (0, 0):
                names.append((name, int(kernel[0])))
    if not names:
        return model
    model = copy.deepcopy(model)
    for name, kernel in names:
        parent_name, _, attribute = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attribute, ScatterUnpool2d(kernel))
    return model


class SegmentationGraph(nn.Module):
    """``softmax(model(image))`` over classes: probabilities ``(N, K, H, W)``, any H, W.

    mediscope's segmentation networks pad their input to a multiple of their output
    stride (and to ``min_side``) and crop the output back (see
    :mod:`mediscope.models.segmentation.padding`). Those pads are Python numbers and a
    trace would freeze them at the example's size, so here the padding comes first,
    as index gathers computed from the input's shape (the same reflection, or edge
    repetition for tiny inputs); the network then sees a side it needs no padding for.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = _traceable(model)
        self.multiple = int(getattr(model, "multiple", 1))
        self.min_side = int(getattr(model, "min_side", 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.multiple == 1 and self.min_side <= 1:
            logits: torch.Tensor = self.model(image)
            return logits.softmax(dim=1)
        shape = torch._shape_as_tensor(image)  # traced: H and W stay symbolic
        height, width = shape[2], shape[3]
        multiple = self.multiple
        padded_h = (torch.clamp(height, min=self.min_side) + multiple - 1) // multiple * multiple
        padded_w = (torch.clamp(width, min=self.min_side) + multiple - 1) // multiple * multiple
        reflect = ((padded_h - height) < height) & ((padded_w - width) < width)
        rows = _padding_index(height, padded_h, reflect)
        columns = _padding_index(width, padded_w, reflect)
        padded = image.index_select(2, rows).index_select(3, columns)
        logits = self.model(padded)
        logits = logits.index_select(2, _arange(height)).index_select(3, _arange(width))
        return logits.softmax(dim=1)


def _clip(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``boxes`` (..., 4) xyxy clipped to ``[0, width] x [0, height]``."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(
        [x1.clamp(0, width), y1.clamp(0, height), x2.clamp(0, width), y2.clamp(0, height)],
        dim=-1,
    )


class RetinaNetGraph(nn.Module):
    """Dense outputs of ``retinanet``: decoded, clipped boxes and per-class scores.

    The anchors of ``image_size`` are computed once and kept as a buffer.
    """

    anchors: torch.Tensor

    def __init__(self, model: nn.Module, image_size: tuple[int, int], channels: int) -> None:
        super().__init__()
        self.model = model
        self.image_size = (int(image_size[0]), int(image_size[1]))
        with torch.no_grad():
            raw = model(torch.zeros(1, channels, *self.image_size))
        self.register_buffer("anchors", raw.anchors.detach().clone(), persistent=False)
        self.score_mode = raw.score_mode

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from mediscope.models.detection.anchors import decode
        from mediscope.models.detection.retinanet import class_scores

        raw = self.model(image)
        scores = class_scores(raw.cls_logits, raw.quality, self.score_mode)
        boxes = _clip(decode(raw.box_deltas, self.anchors), *self.image_size)
        return boxes, scores


class FCOSGraph(nn.Module):
    """Dense outputs of torchvision's FCOS: boxes of every point and their scores.

    Scores are torchvision's ``sqrt(sigmoid(class) * sigmoid(centre-ness))``. The input is
    padded (zeros, bottom and right) to a multiple of the coarsest stride as the model's
    input transform does, and the points of that size are a buffer.

    torchvision keeps the best ``topk_candidates`` points per level before NMS; the
    runtime keeps the best :data:`~mediscope.runtime.info.PRE_NMS_TOP` of all levels
    together, which differs only when more candidates than that pass the threshold.
    """

    anchors: torch.Tensor
    model: Any

    def __init__(self, model: Any, image_size: tuple[int, int], channels: int) -> None:
        super().__init__()
        self.model = model
        self.image_size = (int(image_size[0]), int(image_size[1]))
        divisible = int(model.net.transform.size_divisible)
        height, width = self.image_size
        self.pad = (0, -width % divisible, 0, -height % divisible)
        with torch.no_grad():
            raw = model(torch.zeros(1, channels, *self.image_size))
        self.register_buffer("anchors", raw.anchors[0].detach().clone(), persistent=False)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.model.net
        if any(self.pad):
            image = nn.functional.pad(image, self.pad)
        features = list(net.backbone(image).values())
        head = net.head(features)
        scores = torch.sqrt(torch.sigmoid(head["cls_logits"]) * torch.sigmoid(head["bbox_ctrness"]))
        boxes = _decode_linear(head["bbox_regression"], self.anchors)
        return _clip(boxes, *self.image_size), scores


def _decode_linear(codes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """torchvision's ``BoxLinearCoder(normalize_by_size=True).decode`` for ``(N, A, 4)``
    distances (left, top, right, bottom in anchor sides) from ``(A, 4)`` anchors."""
    cx = 0.5 * (anchors[:, 0] + anchors[:, 2])
    cy = 0.5 * (anchors[:, 1] + anchors[:, 3])
    w = anchors[:, 2] - anchors[:, 0]
    h = anchors[:, 3] - anchors[:, 1]
    left, top, right, bottom = codes.unbind(-1)
    return torch.stack([cx - left * w, cy - top * h, cx + right * w, cy + bottom * h], dim=-1)


def inference_graph(task: BaseTask) -> nn.Module:
    """The module an export traces: ``task``'s model computing the runtime contract.

    Args:
        task: A restored task (:func:`mediscope.engine.restore.task_from_checkpoint`).

    Returns:
        A module in eval mode whose ``forward(image)`` returns ``probabilities``, or
        ``(boxes, scores)`` for a detector (see the module docstring).

    Raises:
        ConfigError: for a detector without dense outputs (``faster_rcnn``) or a task
            that cannot be exported.
    """
    name = task.config.task
    output_names(name)
    model = task.model.eval()
    graph: nn.Module
    if name == "classification":
        graph = ClassificationGraph(model)
    elif name == "multilabel":
        graph = MultiLabelGraph(model)
    elif name == "segmentation":
        graph = SegmentationGraph(model)
    else:
        graph = _detection_graph(task)
    return graph.eval()


def _detection_graph(task: BaseTask) -> nn.Module:
    from mediscope.models.detection.retinanet import RetinaNet
    from mediscope.models.detection.torchvision_models import TorchvisionFCOS

    model: Any = task.model
    data = task.config.data
    size = (int(data.image_size[0]), int(data.image_size[1]))
    if isinstance(model, RetinaNet):
        return RetinaNetGraph(model, size, data.channels)
    if isinstance(model, TorchvisionFCOS):
        return FCOSGraph(model, size, data.channels)
    raise ConfigError(
        f"{task.config.model.name} cannot be exported: its boxes come from a second stage "
        "on proposals, not from dense outputs per anchor",
        where="model.name",
        hint="export a retinanet or fcos model, or predict with 'mediscope predict'",
    )
