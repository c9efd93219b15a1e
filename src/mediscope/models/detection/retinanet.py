"""``retinanet``: the one-stage detector of the Gram-stain study.

timm backbone → FPN (or an hourglass without skip connections) → decoupled head
(classification, box regression and objectness/quality branches) over anchors at
every level. Label assignment and losses are the task's (see
:mod:`mediscope.losses.detection`): max-IoU, ATSS or task-aligned assignment; focal,
cross-entropy, SmoothL1 and GIoU losses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torchvision.ops import batched_nms, clip_boxes_to_image

from mediscope.errors import ConfigError
from mediscope.models.detection.anchors import AnchorGenerator, decode
from mediscope.models.detection.backbone import TimmBackbone
from mediscope.models.detection.base import Detector, Target
from mediscope.models.detection.heads import DecoupledHead
from mediscope.models.detection.necks import FPN
from mediscope.params import forwards_keywords
from mediscope.registry import MODELS

#: How class probabilities are formed from the branches (set by the loss).
ScoreMode = Literal["softmax", "sigmoid", "sigmoid_only"]
#: Candidates kept per image before NMS.
PRE_NMS_TOP = 1000


@dataclass
class RawDetections:
    """What the network outputs for a batch, with the anchors it refers to."""

    cls_logits: torch.Tensor  # (B, A, C)
    box_deltas: torch.Tensor  # (B, A, 4)
    quality: torch.Tensor  # (B, A) objectness / quality logits
    anchors: torch.Tensor  # (A, 4) xyxy input pixels
    level_counts: list[int]
    image_size: tuple[int, int]  # H, W of the input
    score_mode: ScoreMode

    def class_scores(self) -> torch.Tensor:
        """Per-anchor class scores (B, A, C) in [0, 1]."""
        return class_scores(self.cls_logits, self.quality, self.score_mode)

    def boxes(self) -> torch.Tensor:
        """Decoded boxes (B, A, 4)."""
        return decode(self.box_deltas, self.anchors)


def class_scores(cls: torch.Tensor, quality: torch.Tensor, mode: ScoreMode) -> torch.Tensor:
    """Objectness x class probability (softmax), their geometric mean (sigmoid), or cls."""
    if mode == "softmax":
        return cls.softmax(-1) * quality.sigmoid().unsqueeze(-1)
    if mode == "sigmoid":
        return (cls.sigmoid() * quality.sigmoid().unsqueeze(-1)).sqrt()
    return cls.sigmoid()


class RetinaNet(Detector):
    """A one-stage anchor-based detector.

    Args:
        num_classes: Object classes (no background).
        in_chans: Input channels.
        pretrained: Backbone weights: False, True (ImageNet) or a local file.
        backbone: timm backbone name (efficientnet_b0, efficientnet_b2, efficientnet_b7,
            efficientnet_lite0, resnet18/34/50, mobilenet_v2, or any timm name).
        neck: ``fpn`` (skip connections to the backbone) or ``hourglass`` (none).
        channels: Channels of the neck and head.
        head_depth: Convolutions per head tower.
        levels: timm feature indices used (2, 3, 4: strides 8, 16, 32; 2 alone gives
            the 40x40 grid of a 320 px input).
        anchor_size: Base anchor side in strides.
        anchor_scales: Side multipliers per cell.
        anchor_ratios: Height / width ratios per cell.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int = 3,
        pretrained: bool | str | Path = False,
        backbone: str = "efficientnet_b0",
        neck: Literal["fpn", "hourglass"] = "fpn",
        channels: int = 64,
        head_depth: int = 2,
        levels: tuple[int, ...] | list[int] = (2, 3, 4),
        anchor_size: float = 4.0,
        anchor_scales: tuple[float, ...] | list[float] = (1.0, 2 ** (1 / 3), 2 ** (2 / 3)),
        anchor_ratios: tuple[float, ...] | list[float] = (0.5, 1.0, 2.0),
    ) -> None:
        super().__init__()
        if neck not in ("fpn", "hourglass"):
            raise ConfigError(
                f"unknown neck '{neck}'", where="model.params.neck", hint="use fpn or hourglass"
            )
        self.num_classes = num_classes
        self.backbone = TimmBackbone(
            backbone, in_chans=in_chans, pretrained=pretrained, out_indices=tuple(levels)
        )
        self.neck = FPN(self.backbone.channels, channels, skip=neck == "fpn")
        self.anchor_generator = AnchorGenerator(
            self.backbone.strides,
            size=anchor_size,
            scales=tuple(anchor_scales),
            ratios=tuple(anchor_ratios),
        )
        self.head = DecoupledHead(
            channels, num_classes, self.anchor_generator.per_cell, depth=head_depth
        )
        self.score_mode: ScoreMode = "softmax"

    def forward(self, images: torch.Tensor) -> RawDetections:
        features = self.neck(self.backbone(images))
        cls, box, quality = self.head(features)
        shapes = [(int(f.shape[-2]), int(f.shape[-1])) for f in features]
        anchors, counts = self.anchor_generator(shapes)
        return RawDetections(
            cls_logits=cls,
            box_deltas=box,
            quality=quality,
            anchors=anchors.to(images.device),
            level_counts=counts,
            image_size=(int(images.shape[-2]), int(images.shape[-1])),
            score_mode=self.score_mode,
        )

    def losses(
        self, raw: Any, targets: list[Target], criterion: nn.Module | None
    ) -> dict[str, torch.Tensor]:
        if criterion is None:
            raise ConfigError("retinanet needs a detection loss", where="loss.name")
        result: dict[str, torch.Tensor] = criterion(raw, targets)
        return result

    def detect(
        self,
        raw: Any,
        *,
        score_threshold: float = 0.05,
        iou_threshold: float = 0.5,
        max_detections: int = 300,
    ) -> list[Target]:
        scores_all = raw.class_scores()
        num_classes = scores_all.shape[-1]
        results = []
        for i in range(scores_all.shape[0]):
            scores = scores_all[i].flatten()
            keep = torch.nonzero(scores > score_threshold).squeeze(1)
            if keep.numel() > PRE_NMS_TOP:
                keep = keep[scores[keep].topk(PRE_NMS_TOP).indices]
            anchor_idx = torch.div(keep, num_classes, rounding_mode="floor")
            labels = keep % num_classes
            boxes = decode(raw.box_deltas[i, anchor_idx], raw.anchors[anchor_idx])
            boxes = clip_boxes_to_image(boxes, raw.image_size)
            picked = batched_nms(boxes, scores[keep], labels, iou_threshold)[:max_detections]
            results.append(
                {"boxes": boxes[picked], "scores": scores[keep][picked], "labels": labels[picked]}
            )
        return results

    def backbone_stages(self) -> list[nn.Module]:
        return self.backbone.stages()


@MODELS.register(
    "retinanet",
    task="detection",
    description="one-stage detector: timm backbone, FPN, decoupled head, anchors (S1)",
)
@forwards_keywords(RetinaNet)
def build_retinanet(
    *, num_classes: int, in_chans: int = 3, pretrained: bool | str | Path = False, **params: Any
) -> RetinaNet:
    """Builds :class:`RetinaNet`; ``model.params`` are its keywords."""
    return RetinaNet(num_classes=num_classes, in_chans=in_chans, pretrained=pretrained, **params)
