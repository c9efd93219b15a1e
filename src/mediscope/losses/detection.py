"""``DetectionLoss``: label assignment plus classification, objectness and box losses.

``loss.params`` choose the parts (S1 used max-IoU assignment, cross-entropy with class
weights for the class, focal loss for objectness and SmoothL1 for boxes):

- ``assigner``: ``maxiou`` | ``atss`` | ``tal`` (keywords in ``assigner_params``).
- ``classification``: ``ce`` (softmax cross-entropy on object anchors, class-weighted
  by ``loss.class_weights``) or ``focal`` (sigmoid focal loss over every anchor).
- ``objectness``: ``focal`` | ``bce`` | ``none`` (object vs background per anchor).
- ``box``: ``smooth_l1`` (on anchor deltas), ``giou`` (on decoded boxes) or ``both``.
- ``weights``: ``{cls, obj, box}`` multipliers; ``focal_alpha``, ``focal_gamma``.

Every part is normalised by the number of object anchors in the batch.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from mediscope.errors import ConfigError
from mediscope.losses.assigners import build_assigner
from mediscope.models.detection.anchors import decode, encode
from mediscope.models.detection.base import Target

CLASSIFICATION = ("ce", "focal")
OBJECTNESS = ("focal", "bce", "none")
BOX = ("smooth_l1", "giou", "both")


class DetectionLoss(nn.Module):
    """Assignment and losses of an anchor-based detector (see the module doc).

    Args:
        num_classes: Object classes.
        assigner: ``maxiou``, ``atss`` or ``tal``.
        assigner_params: Keywords of the assigner (e.g. ``topk``, ``alpha``, ``beta``).
        classification: ``ce`` or ``focal``.
        objectness: ``focal``, ``bce`` or ``none``.
        box: ``smooth_l1``, ``giou`` or ``both``.
        class_weights: One weight per class (cross-entropy), or None.
        weights: Multipliers of the parts, keys ``cls``, ``obj``, ``box``.
        focal_alpha: Focal loss alpha (the weight of the positive side).
        focal_gamma: Focal loss gamma.
        smooth_l1_beta: SmoothL1 transition point (RetinaNet: 1/9).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        assigner: str = "atss",
        assigner_params: dict[str, float] | None = None,
        classification: Literal["ce", "focal"] = "focal",
        objectness: Literal["focal", "bce", "none"] = "focal",
        box: Literal["smooth_l1", "giou", "both"] = "giou",
        class_weights: torch.Tensor | None = None,
        weights: dict[str, float] | None = None,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        smooth_l1_beta: float = 1 / 9,
    ) -> None:
        super().__init__()
        for key, value, allowed in (
            ("classification", classification, CLASSIFICATION),
            ("objectness", objectness, OBJECTNESS),
            ("box", box, BOX),
        ):
            if value not in allowed:
                raise ConfigError(
                    f"unknown {key} loss '{value}'",
                    where=f"loss.params.{key}",
                    hint=f"use one of {', '.join(allowed)}",
                )
        unknown = set(weights or {}) - {"cls", "obj", "box"}
        if unknown:
            raise ConfigError(
                f"unknown loss weights {sorted(unknown)}",
                where="loss.params.weights",
                hint="keys: cls, obj, box",
            )
        self.num_classes = num_classes
        self.assigner_name = assigner
        self.assigner = build_assigner(assigner, **(assigner_params or {}))
        self.classification = classification
        self.objectness = objectness
        self.box = box
        self.weights = {"cls": 1.0, "obj": 1.0, "box": 1.0, **(weights or {})}
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.smooth_l1_beta = smooth_l1_beta
        self.class_weights: torch.Tensor | None
        self.register_buffer("class_weights", class_weights, persistent=False)

    @property
    def score_mode(self) -> Literal["softmax", "sigmoid", "sigmoid_only"]:
        """How the detector combines its branches into class scores for this loss."""
        if self.classification == "ce":
            return "softmax"
        return "sigmoid" if self.objectness != "none" else "sigmoid_only"

    def _focal(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return sigmoid_focal_loss(
            logits, targets, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="none"
        )

    def forward(self, raw: Any, targets: list[Target]) -> dict[str, torch.Tensor]:
        # In float32 whatever the model computed in (mixed precision): the targets are.
        cls_logits, deltas = raw.cls_logits.float(), raw.box_deltas.float()
        quality = raw.quality.float()
        anchors = raw.anchors.float()
        with torch.no_grad():
            pred_boxes = decode(deltas.detach(), anchors)
            pred_scores = raw.class_scores().detach() if self.assigner_name == "tal" else None
        device = cls_logits.device
        zero = cls_logits.sum() * 0.0
        cls_total, obj_total, box_total = zero, zero, zero
        num_fg = 0.0
        for i, target in enumerate(targets):
            gt_boxes = target["boxes"].to(device, torch.float32)
            gt_labels = target["labels"].to(device, torch.long)
            assignment = self.assigner(
                anchors,
                gt_boxes,
                gt_labels,
                level_counts=raw.level_counts,
                pred_scores=pred_scores[i] if pred_scores is not None else None,
                pred_boxes=pred_boxes[i],
            )
            fg, valid = assignment.foreground, ~assignment.ignore
            num_fg += float(fg.sum())
            soft = assignment.quality
            labels = gt_labels[assignment.gt_index[fg]] if fg.any() else gt_labels[:0]
            # -- classification
            if self.classification == "ce":
                if fg.any():
                    cls_total = cls_total + F.cross_entropy(
                        cls_logits[i, fg], labels, weight=self.class_weights, reduction="sum"
                    )
            else:
                onehot = torch.zeros_like(cls_logits[i])
                if fg.any():
                    onehot[fg.nonzero().squeeze(1), labels] = soft[fg]
                per = self._focal(cls_logits[i][valid], onehot[valid])
                if self.class_weights is not None:
                    per = per * self.class_weights.unsqueeze(0)
                cls_total = cls_total + per.sum()
            # -- objectness
            if self.objectness != "none":
                obj_target = torch.where(fg, soft, torch.zeros_like(soft))
                if self.objectness == "focal":
                    obj_total = obj_total + self._focal(quality[i][valid], obj_target[valid]).sum()
                else:
                    obj_total = obj_total + F.binary_cross_entropy_with_logits(
                        quality[i][valid], obj_target[valid], reduction="sum"
                    ) / max(1, int(valid.sum())) * max(1.0, float(fg.sum()))
            # -- boxes
            if fg.any():
                matched = gt_boxes[assignment.gt_index[fg]]
                if self.box in ("smooth_l1", "both"):
                    box_total = box_total + F.smooth_l1_loss(
                        deltas[i, fg],
                        encode(matched, anchors[fg]),
                        beta=self.smooth_l1_beta,
                        reduction="sum",
                    )
                if self.box in ("giou", "both"):
                    decoded = decode(deltas[i, fg], anchors[fg])
                    box_total = box_total + generalized_box_iou_loss(
                        decoded, matched, reduction="sum"
                    )
        norm = max(1.0, num_fg)
        parts = {
            "cls": cls_total / norm,
            "obj": obj_total / norm,
            "box": box_total / norm,
        }
        total = sum(self.weights[k] * v for k, v in parts.items())
        assert isinstance(total, torch.Tensor)
        return {"loss": total, **{f"loss_{k}": v.detach() for k, v in parts.items()}}
