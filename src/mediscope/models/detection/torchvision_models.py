"""``fcos`` and ``faster_rcnn``: torchvision's detectors over mediscope's timm backbones.

The timm backbone (:class:`TimmBackbone`) feeds torchvision's ``FeaturePyramidNetwork``;
its levels go to torchvision's FCOS head or to its region proposal network and RoI
heads. The networks train with their own losses (``uses_criterion = False``): FCOS's
focal, GIoU and centre-ness losses; Faster R-CNN's RPN objectness and box losses and
its RoI classification and box losses.

torchvision's image transform is replaced by :class:`InputTransform`, which neither
normalises nor resizes (mediscope's images arrive normalised, at their final size) and
only pads the batch to a multiple of the coarsest stride, so boxes in targets and
detections are in input pixels.

The task calls ``losses`` in training and, under ``model.eval()`` and ``no_grad``, in
validation. torchvision computes losses only when its heads are in training mode, so
``losses`` sets the ``training`` flags of the RPN and RoI heads modules themselves (not of
their children, which hold no batch-dependent layers) for the call: the backbone's
BatchNorm and Dropout layers stay in the mode of the model and validation changes no
running statistics.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.fcos import (
    FCOSClassificationHead,
    FCOSHead,
    FCOSRegressionHead,
)
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign

from mediscope.errors import ConfigError
from mediscope.models.detection.backbone import TimmBackbone
from mediscope.models.detection.base import Detector, Target
from mediscope.registry import MODELS

#: torchvision's FCOS loss names → mediscope's.
FCOS_LOSSES = {
    "classification": "loss_cls",
    "bbox_regression": "loss_box",
    "bbox_ctrness": "loss_ctr",
}
#: torchvision's Faster R-CNN loss names → mediscope's (``obj``: the RPN's objectness).
FASTER_RCNN_LOSSES = {
    "loss_objectness": "loss_obj",
    "loss_rpn_box_reg": "loss_rpn_box",
    "loss_classifier": "loss_cls",
    "loss_box_reg": "loss_box",
}
#: Side of the RoI-aligned features of Faster R-CNN's box head.
ROI_SIZE = 7


class BackboneFPN(nn.Module):
    """A timm backbone and torchvision's FPN, as torchvision's detectors want them.

    Returns an ``OrderedDict`` of the levels, fine to coarse, named ``"0"``, ``"1"``...,
    each with ``out_channels`` channels.
    """

    def __init__(self, body: TimmBackbone, channels: int) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(body.channels, channels)
        self.out_channels = channels
        self.names = [str(i) for i in range(len(body.channels))]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features = OrderedDict(zip(self.names, self.body(x), strict=True))
        result: OrderedDict[str, torch.Tensor] = self.fpn(features)
        return result


class InputTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform without normalisation and resizing.

    Images are batched (padded right and bottom to a multiple of ``size_divisible``);
    their sizes, and so the boxes, stay those of the input.
    """

    def __init__(self, size_divisible: int) -> None:
        super().__init__(
            min_size=1,
            max_size=1,
            image_mean=[0.0],
            image_std=[1.0],
            size_divisible=size_divisible,
        )

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return image

    def resize(
        self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        return image, target

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size_divisible={self.size_divisible})"


@contextmanager
def heads_training(modules: Sequence[nn.Module], training: bool) -> Iterator[None]:
    """Sets the ``training`` flag of ``modules`` only (not their children) for a while."""
    before = [m.training for m in modules]
    for m in modules:
        m.training = training
    try:
        yield
    finally:
        for m, flag in zip(modules, before, strict=True):
            m.training = flag


def torchvision_targets(
    targets: list[Target], device: torch.device, *, label_offset: int = 0
) -> list[Target]:
    """mediscope targets as torchvision's: float boxes, int64 labels (+ ``label_offset``).

    Boxes without area are left out: they cannot be regressed (log of a zero side).
    """
    result = []
    for target in targets:
        boxes = target["boxes"].to(device=device, dtype=torch.float32).reshape(-1, 4)
        labels = target["labels"].to(device=device, dtype=torch.int64).reshape(-1)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        result.append({"boxes": boxes[keep], "labels": labels[keep] + label_offset})
    return result


def named_losses(parts: dict[str, torch.Tensor], names: dict[str, str]) -> dict[str, torch.Tensor]:
    """``loss`` (the sum, with gradients) and the parts, detached, under mediscope's names."""
    total = torch.stack(list(parts.values())).sum()
    return {"loss": total, **{names[key]: value.detach() for key, value in parts.items()}}


def _group_norm(channels: int) -> partial[nn.GroupNorm]:
    groups = 32 if channels % 32 == 0 else 8 if channels % 8 == 0 else 1
    return partial(nn.GroupNorm, groups)


@dataclass
class FCOSOutputs:
    """FCOS's raw outputs for a batch, with the anchor points they refer to."""

    head_outputs: dict[str, torch.Tensor]  # cls_logits (B, A, C), bbox_regression, bbox_ctrness
    anchors: list[torch.Tensor]  # per image (A, 4), xyxy input pixels
    num_anchors_per_level: list[int]
    image_sizes: list[tuple[int, int]]


class TorchvisionFCOS(Detector):
    """torchvision's FCOS (anchor-free, one point per cell) over a timm backbone and FPN.

    Args:
        num_classes: Object classes (no background).
        in_chans: Input channels.
        pretrained: Backbone weights: False, True (ImageNet) or a local file.
        backbone: timm backbone name (as for ``retinanet``).
        channels: Channels of the FPN and the head.
        levels: timm feature indices (2, 3, 4: strides 8, 16, 32). A point learns a
            box when its largest distance to the box's sides is within its level's
            range: up to 8 strides on the finest level (64 px at stride 8), 4-8
            strides on the middle ones, beyond 4 strides on the coarsest.
        head_depth: Convolutions (GroupNorm, ReLU) per head tower.
        center_sampling_radius: Points within this many strides of a box centre (and
            inside the box) are its positives.
        topk_candidates: Best-scoring points per level kept before NMS.

    The score threshold, NMS IoU and boxes per image are ``detect``'s arguments (the
    task's settings), not keywords of the model.
    """

    uses_criterion = False

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int = 3,
        pretrained: bool | str | Path = False,
        backbone: str = "efficientnet_b0",
        channels: int = 64,
        levels: Sequence[int] = (2, 3, 4),
        head_depth: int = 4,
        center_sampling_radius: float = 1.5,
        topk_candidates: int = 1000,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        body = TimmBackbone(
            backbone, in_chans=in_chans, pretrained=pretrained, out_indices=tuple(levels)
        )
        strides = body.strides
        # FCOS's "anchors" are points; their side is the stride (scale ranges, radius).
        points = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
        norm = _group_norm(channels)
        head = FCOSHead(channels, 1, num_classes, num_convs=head_depth)
        head.classification_head = FCOSClassificationHead(
            channels, 1, num_classes, head_depth, norm_layer=norm
        )
        head.regression_head = FCOSRegressionHead(channels, 1, head_depth, norm_layer=norm)
        self.net = FCOS(
            BackboneFPN(body, channels),
            num_classes,
            anchor_generator=points,
            head=head,
            center_sampling_radius=center_sampling_radius,
            topk_candidates=topk_candidates,
        )
        self.net.transform = InputTransform(max(strides))

    def forward(self, images: torch.Tensor) -> FCOSOutputs:
        image_list: ImageList = self.net.transform(list(images))[0]
        features = list(self.net.backbone(image_list.tensors).values())
        return FCOSOutputs(
            head_outputs=self.net.head(features),
            anchors=self.net.anchor_generator(image_list, features),
            num_anchors_per_level=[int(f.shape[-2] * f.shape[-1]) for f in features],
            image_sizes=list(image_list.image_sizes),
        )

    def losses(
        self, raw: Any, targets: list[Target], criterion: nn.Module | None
    ) -> dict[str, torch.Tensor]:
        # FCOS's loss does not depend on the mode: nothing to switch.
        device = raw.head_outputs["cls_logits"].device
        parts = self.net.compute_loss(
            torchvision_targets(targets, device),
            raw.head_outputs,
            raw.anchors,
            raw.num_anchors_per_level,
        )
        return named_losses(parts, FCOS_LOSSES)

    def detect(
        self,
        raw: Any,
        *,
        score_threshold: float = 0.05,
        iou_threshold: float = 0.5,
        max_detections: int = 300,
    ) -> list[Target]:
        counts = raw.num_anchors_per_level
        split_outputs = {k: list(v.split(counts, dim=1)) for k, v in raw.head_outputs.items()}
        split_anchors = [list(a.split(counts)) for a in raw.anchors]
        self.net.score_thresh = score_threshold
        self.net.nms_thresh = iou_threshold
        self.net.detections_per_img = max_detections
        detections: list[Target] = self.net.postprocess_detections(
            split_outputs, split_anchors, raw.image_sizes
        )
        return detections

    def backbone_stages(self) -> list[nn.Module]:
        return self.net.backbone.body.stages()


@dataclass
class RCNNFeatures:
    """Faster R-CNN's raw output: the FPN levels (the heads need the targets)."""

    images: ImageList
    features: OrderedDict[str, torch.Tensor]


def anchor_sides(
    sizes: Sequence[float | Sequence[float]] | None, strides: list[int]
) -> tuple[tuple[float, ...], ...]:
    """Anchor sides per level: one or several per level, as many on every level."""
    if sizes is None:
        return tuple((float(s), 2.0 * s) for s in strides)
    per_level = tuple(
        tuple(float(x) for x in size) if isinstance(size, Sequence) else (float(size),)
        for size in sizes
    )
    if len(per_level) != len(strides) or len({len(p) for p in per_level}) != 1:
        raise ConfigError(
            f"anchor_sizes {list(sizes)} do not fit {len(strides)} levels",
            where="model.params.anchor_sizes",
            hint=f"give one side per level, or a list of sides per level (as many on "
            f"each), e.g. {[[s, 2 * s] for s in strides]}",
        )
    return per_level


class TorchvisionFasterRCNN(Detector):
    """torchvision's Faster R-CNN (RPN, RoIAlign, two-layer box head) over a timm backbone.

    Args:
        num_classes: Object classes (no background; torchvision's class 0 is added).
        in_chans: Input channels.
        pretrained: Backbone weights: False, True (ImageNet) or a local file.
        backbone: timm backbone name (as for ``retinanet``).
        channels: FPN channels.
        levels: timm feature indices (2, 3, 4: strides 8, 16, 32).
        anchor_sizes: Anchor sides in input pixels per level: a number per level or a
            list per level (as many on each). Default: the stride and twice the stride,
            8-64 px for strides 8, 16, 32 (small cells, bacteria, colonies).
        aspect_ratios: Anchor height / width ratios, on every level.
        rpn_batch_size: Anchors sampled per image for the RPN loss (half positive at
            most).
        roi_batch_size: Proposals sampled per image for the box head's loss (a quarter
            positive at most).
        representation_size: Width of the box head's two fully connected layers.

    The score threshold, NMS IoU and boxes per image are ``detect``'s arguments.
    """

    uses_criterion = False

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int = 3,
        pretrained: bool | str | Path = False,
        backbone: str = "efficientnet_b0",
        channels: int = 64,
        levels: Sequence[int] = (2, 3, 4),
        anchor_sizes: Sequence[float | Sequence[float]] | None = None,
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        rpn_batch_size: int = 256,
        roi_batch_size: int = 512,
        representation_size: int = 1024,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        body = TimmBackbone(
            backbone, in_chans=in_chans, pretrained=pretrained, out_indices=tuple(levels)
        )
        features = BackboneFPN(body, channels)
        sides = anchor_sides(anchor_sizes, body.strides)
        anchors = AnchorGenerator(sides, (tuple(float(r) for r in aspect_ratios),) * len(sides))
        self.net = FasterRCNN(
            features,
            rpn_anchor_generator=anchors,
            rpn_batch_size_per_image=rpn_batch_size,
            box_roi_pool=MultiScaleRoIAlign(features.names, output_size=ROI_SIZE, sampling_ratio=2),
            box_head=TwoMLPHead(channels * ROI_SIZE**2, representation_size),
            box_predictor=FastRCNNPredictor(representation_size, num_classes + 1),
            box_batch_size_per_image=roi_batch_size,
        )
        self.net.transform = InputTransform(max(body.strides))

    def forward(self, images: torch.Tensor) -> RCNNFeatures:
        image_list: ImageList = self.net.transform(list(images))[0]
        return RCNNFeatures(image_list, self.net.backbone(image_list.tensors))

    def _heads(self) -> tuple[nn.Module, nn.Module]:
        return self.net.rpn, self.net.roi_heads

    def losses(
        self, raw: Any, targets: list[Target], criterion: nn.Module | None
    ) -> dict[str, torch.Tensor]:
        images, features = raw.images, raw.features
        tv_targets = torchvision_targets(targets, images.tensors.device, label_offset=1)
        with heads_training(self._heads(), True):
            proposals, rpn_losses = self.net.rpn(images, features, tv_targets)
            _, roi_losses = self.net.roi_heads(features, proposals, images.image_sizes, tv_targets)
        return named_losses({**rpn_losses, **roi_losses}, FASTER_RCNN_LOSSES)

    def detect(
        self,
        raw: Any,
        *,
        score_threshold: float = 0.05,
        iou_threshold: float = 0.5,
        max_detections: int = 300,
    ) -> list[Target]:
        images, features = raw.images, raw.features
        roi_heads = self.net.roi_heads
        roi_heads.score_thresh = score_threshold
        roi_heads.nms_thresh = iou_threshold
        roi_heads.detections_per_img = max_detections
        with heads_training(self._heads(), False):
            proposals, _ = self.net.rpn(images, features)
            detections, _ = roi_heads(features, proposals, images.image_sizes)
        return [
            {"boxes": d["boxes"], "scores": d["scores"], "labels": d["labels"] - 1}
            for d in detections
        ]

    def backbone_stages(self) -> list[nn.Module]:
        return self.net.backbone.body.stages()


def _build(cls: type[Detector], name: str, **kwargs: Any) -> Detector:
    """``cls(**kwargs)``; keywords it does not take are a ConfigError listing its own."""
    fixed = {"self", "num_classes", "in_chans", "pretrained"}
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in fixed]
    unknown = sorted(set(kwargs) - fixed - set(valid))
    if unknown:
        raise ConfigError(
            f"{name}: unknown keyword{'s' if len(unknown) > 1 else ''} "
            + ", ".join(f"'{k}'" for k in unknown),
            where="model.params",
            hint="keywords: " + ", ".join(valid),
        )
    return cls(**kwargs)


@MODELS.register(
    "fcos",
    task="detection",
    description="torchvision's FCOS (anchor-free) over a timm backbone and FPN",
)
def build_fcos(
    *, num_classes: int, in_chans: int = 3, pretrained: bool | str | Path = False, **params: Any
) -> Detector:
    """Builds :class:`TorchvisionFCOS`; ``model.params`` are its keywords."""
    return _build(
        TorchvisionFCOS,
        "fcos",
        num_classes=num_classes,
        in_chans=in_chans,
        pretrained=pretrained,
        **params,
    )


@MODELS.register(
    "faster_rcnn",
    task="detection",
    description="torchvision's Faster R-CNN (two-stage) over a timm backbone and FPN",
)
def build_faster_rcnn(
    *, num_classes: int, in_chans: int = 3, pretrained: bool | str | Path = False, **params: Any
) -> Detector:
    """Builds :class:`TorchvisionFasterRCNN`; ``model.params`` are its keywords."""
    return _build(
        TorchvisionFasterRCNN,
        "faster_rcnn",
        num_classes=num_classes,
        in_chans=in_chans,
        pretrained=pretrained,
        **params,
    )
