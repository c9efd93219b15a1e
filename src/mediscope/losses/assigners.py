"""Label assignment: which anchors learn which object.

Each assigner maps one image's anchors and ground truth to an :class:`Assignment`:
foreground anchors with their object and a quality target in [0, 1], background, and
anchors ignored by the losses.

- ``maxiou``: RetinaNet's IoU thresholds (>= 0.5 object, < 0.4 background, between
  ignored), and every object's best anchor kept (low-quality matches).
- ``atss``: adaptive training sample selection (Zhang et al. 2020): per object and
  level the k anchors nearest its centre; the IoU threshold is their mean + std.
- ``tal``: task-aligned assignment (TOOD, Feng et al. 2021): anchors inside an object
  ranked by ``score^alpha * IoU^beta`` of their *predictions*; the top k learn it,
  with a soft target normalised by the best IoU of the object.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_iou

from mediscope.errors import ConfigError
from mediscope.params import check_keywords
from mediscope.registry import unknown_name_hint


@dataclass
class Assignment:
    """Per-anchor training targets of one image."""

    foreground: torch.Tensor  # (A,) bool
    ignore: torch.Tensor  # (A,) bool
    gt_index: torch.Tensor  # (A,) long, valid where foreground
    quality: torch.Tensor  # (A,) float target of foreground anchors, 0 elsewhere


def _empty(num_anchors: int, device: torch.device) -> Assignment:
    false = torch.zeros(num_anchors, dtype=torch.bool, device=device)
    return Assignment(
        false,
        false.clone(),
        torch.zeros(num_anchors, dtype=torch.long, device=device),
        torch.zeros(num_anchors, device=device),
    )


def _centres_inside(anchors: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(A, N): whether anchor centre a lies inside box n."""
    cx = ((anchors[:, 0] + anchors[:, 2]) / 2).unsqueeze(1)
    cy = ((anchors[:, 1] + anchors[:, 3]) / 2).unsqueeze(1)
    return (cx > boxes[:, 0]) & (cx < boxes[:, 2]) & (cy > boxes[:, 1]) & (cy < boxes[:, 3])


class MaxIoUAssigner:
    """RetinaNet's assignment by anchor IoU thresholds."""

    def __init__(self, *, pos_iou: float = 0.5, neg_iou: float = 0.4, low_quality: bool = True):
        self.pos_iou, self.neg_iou, self.low_quality = pos_iou, neg_iou, low_quality

    def __call__(
        self,
        anchors: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_labels: torch.Tensor,
        *,
        level_counts: list[int],
        pred_scores: torch.Tensor | None = None,
        pred_boxes: torch.Tensor | None = None,
    ) -> Assignment:
        if gt_boxes.numel() == 0:
            return _empty(anchors.shape[0], anchors.device)
        iou = box_iou(anchors, gt_boxes)  # (A, N)
        best, index = iou.max(dim=1)
        foreground = best >= self.pos_iou
        ignore = (best >= self.neg_iou) & ~foreground
        if self.low_quality:
            # every object keeps the anchors that overlap it most, however little
            top = iou.max(dim=0).values
            rows, cols = torch.nonzero(
                (iou == top.unsqueeze(0)) & (top.unsqueeze(0) > 0), as_tuple=True
            )
            foreground[rows] = True
            ignore[rows] = False
            index[rows] = cols
        quality = foreground.float()
        return Assignment(foreground, ignore, index, quality)


class ATSSAssigner:
    """Adaptive training sample selection."""

    def __init__(self, *, topk: int = 9):
        self.topk = topk

    def __call__(
        self,
        anchors: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_labels: torch.Tensor,
        *,
        level_counts: list[int],
        pred_scores: torch.Tensor | None = None,
        pred_boxes: torch.Tensor | None = None,
    ) -> Assignment:
        num_anchors = anchors.shape[0]
        if gt_boxes.numel() == 0:
            return _empty(num_anchors, anchors.device)
        iou = box_iou(anchors, gt_boxes)  # (A, N)
        a_centre = (anchors[:, :2] + anchors[:, 2:]) / 2
        g_centre = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        distance = torch.cdist(a_centre, g_centre)  # (A, N)
        candidates = []
        start = 0
        for count in level_counts:
            k = min(self.topk, count)
            nearest = distance[start : start + count].topk(k, dim=0, largest=False).indices
            candidates.append(nearest + start)
            start += count
        candidate_idx = torch.cat(candidates, dim=0)  # (L*k, N)
        candidate_iou = iou.gather(0, candidate_idx)
        threshold = candidate_iou.mean(0) + candidate_iou.std(0, unbiased=False)
        is_pos = candidate_iou >= threshold.unsqueeze(0)
        inside = _centres_inside(anchors, gt_boxes).gather(0, candidate_idx)
        is_pos &= inside
        allowed = torch.zeros_like(iou, dtype=torch.bool)
        allowed.scatter_(0, candidate_idx, is_pos)
        masked = torch.where(allowed, iou, torch.full_like(iou, -1.0))
        best, index = masked.max(dim=1)
        foreground = best > -1
        ignore = torch.zeros_like(foreground)
        return Assignment(foreground, ignore, index, foreground.float())


class TaskAlignedAssigner:
    """TOOD's task-aligned assignment over the current predictions."""

    def __init__(self, *, topk: int = 13, alpha: float = 1.0, beta: float = 6.0):
        self.topk, self.alpha, self.beta = topk, alpha, beta

    def __call__(
        self,
        anchors: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_labels: torch.Tensor,
        *,
        level_counts: list[int],
        pred_scores: torch.Tensor | None = None,
        pred_boxes: torch.Tensor | None = None,
    ) -> Assignment:
        num_anchors = anchors.shape[0]
        if gt_boxes.numel() == 0:
            return _empty(num_anchors, anchors.device)
        if pred_scores is None or pred_boxes is None:
            raise ValueError("task-aligned assignment needs the predictions")
        iou = box_iou(pred_boxes, gt_boxes).clamp(min=0)  # (A, N)
        score = pred_scores[:, gt_labels]  # (A, N)
        inside = _centres_inside(anchors, gt_boxes)
        align = score.pow(self.alpha) * iou.pow(self.beta) * inside
        k = min(self.topk, num_anchors)
        top = align.topk(k, dim=0).indices  # (k, N)
        chosen = torch.zeros_like(inside)
        chosen.scatter_(0, top, True)
        chosen &= inside & (align > 0)
        # Objects with no usable prediction yet (early training): the anchors whose
        # centres are inside, ranked by anchor IoU, so that every object is learnt.
        anchor_iou = box_iou(anchors, gt_boxes)
        starved = ~chosen.any(0)
        if starved.any():
            fallback = (anchor_iou * inside).topk(min(3, num_anchors), dim=0).indices
            extra = torch.zeros_like(inside)
            extra.scatter_(0, fallback, True)
            extra &= inside | (anchor_iou >= anchor_iou.max(0, keepdim=True).values)
            chosen |= extra & starved.unsqueeze(0)
        masked = torch.where(chosen, iou + anchor_iou * 1e-6, torch.full_like(iou, -1.0))
        best, index = masked.max(dim=1)
        foreground = best > -1
        # soft target: alignment normalised per object, scaled by its best IoU
        fg_align = align.gather(1, index.unsqueeze(1)).squeeze(1) * foreground
        per_gt_max_align = torch.zeros(gt_boxes.shape[0], device=anchors.device)
        per_gt_max_iou = torch.zeros(gt_boxes.shape[0], device=anchors.device)
        fg_iou = iou.gather(1, index.unsqueeze(1)).squeeze(1)
        per_gt_max_align.scatter_reduce_(0, index[foreground], fg_align[foreground], "amax")
        per_gt_max_iou.scatter_reduce_(0, index[foreground], fg_iou[foreground], "amax")
        quality = fg_align / per_gt_max_align[index].clamp(min=1e-9) * per_gt_max_iou[index]
        quality = torch.where(foreground, quality.clamp(0, 1), torch.zeros_like(quality))
        # a starved object's anchors still learn it fully
        quality = torch.where(foreground & (fg_align <= 0), torch.ones_like(quality), quality)
        return Assignment(foreground, torch.zeros_like(foreground), index, quality)


Assigner = MaxIoUAssigner | ATSSAssigner | TaskAlignedAssigner
ASSIGNERS: dict[str, type[Assigner]] = {
    "maxiou": MaxIoUAssigner,
    "atss": ATSSAssigner,
    "tal": TaskAlignedAssigner,
}


def build_assigner(name: str, **params: float) -> Assigner:
    """An assigner by name (maxiou, atss, tal) with its keywords."""
    if name not in ASSIGNERS:
        raise ConfigError(
            f"unknown label assignment '{name}'",
            where="loss.params.assigner",
            hint=unknown_name_hint(name, list(ASSIGNERS)),
        )
    cls = ASSIGNERS[name]
    check_keywords(cls, params, owner=name, section="loss.params.assigner_params")
    return cls(**params)  # type: ignore[arg-type]
