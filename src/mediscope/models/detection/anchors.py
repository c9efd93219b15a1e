"""Anchors per feature level and the box coding between anchors and boxes."""

from __future__ import annotations

import math

import torch
from torch import nn

#: exp() of a regressed log-size is clamped here (as torchvision does).
MAX_LOG_RATIO = math.log(1000.0 / 16)


class AnchorGenerator(nn.Module):
    """Anchors of every level, centred on the cells of each feature map.

    Args:
        strides: Stride of each level in input pixels.
        size: Base anchor side as a multiple of the stride (RetinaNet uses 4).
        scales: Side multipliers per cell (RetinaNet: 2^0, 2^(1/3), 2^(2/3)).
        ratios: Height / width ratios per cell (0.5, 1, 2: rods lie either way).
    """

    def __init__(
        self,
        strides: list[int],
        *,
        size: float = 4.0,
        scales: tuple[float, ...] = (1.0, 2 ** (1 / 3), 2 ** (2 / 3)),
        ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
    ) -> None:
        super().__init__()
        self.strides = list(strides)
        self.size = size
        self.scales = tuple(scales)
        self.ratios = tuple(ratios)
        self._cache: dict[tuple[tuple[int, int], ...], tuple[torch.Tensor, list[int]]] = {}

    @property
    def per_cell(self) -> int:
        """Anchors per feature-map cell."""
        return len(self.scales) * len(self.ratios)

    def cell_anchors(self, stride: int) -> torch.Tensor:
        """The (per_cell, 4) anchors of one cell centred on 0, xyxy."""
        rows = []
        for ratio in self.ratios:
            for scale in self.scales:
                side = self.size * stride * scale
                w, h = side / math.sqrt(ratio), side * math.sqrt(ratio)
                rows.append([-w / 2, -h / 2, w / 2, h / 2])
        return torch.tensor(rows, dtype=torch.float32)

    def forward(self, shapes: list[tuple[int, int]]) -> tuple[torch.Tensor, list[int]]:
        """All anchors (A, 4) in level, row, column, anchor order; anchors per level."""
        key = tuple(shapes)
        if key not in self._cache:
            levels, counts = [], []
            for (h, w), stride in zip(shapes, self.strides, strict=True):
                ys = (torch.arange(h, dtype=torch.float32) + 0.5) * stride
                xs = (torch.arange(w, dtype=torch.float32) + 0.5) * stride
                cy, cx = torch.meshgrid(ys, xs, indexing="ij")
                centres = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)
                anchors = (centres + self.cell_anchors(stride).reshape(1, -1, 4)).reshape(-1, 4)
                levels.append(anchors)
                counts.append(anchors.shape[0])
            self._cache[key] = (torch.cat(levels), counts)
        return self._cache[key]


def encode(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Regression targets (dx, dy, dw, dh) of ``boxes`` relative to ``anchors``."""
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + aw / 2, anchors[:, 1] + ah / 2
    bw = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-3)
    bh = (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-3)
    bx, by = boxes[:, 0] + bw / 2, boxes[:, 1] + bh / 2
    return torch.stack(
        [(bx - ax) / aw, (by - ay) / ah, torch.log(bw / aw), torch.log(bh / ah)], dim=1
    )


def decode(deltas: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Boxes xyxy from regression outputs (..., A, 4) and anchors (A, 4)."""
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + aw / 2, anchors[:, 1] + ah / 2
    dx, dy = deltas[..., 0], deltas[..., 1]
    dw = deltas[..., 2].clamp(max=MAX_LOG_RATIO)
    dh = deltas[..., 3].clamp(max=MAX_LOG_RATIO)
    cx, cy = ax + dx * aw, ay + dy * ah
    w, h = aw * torch.exp(dw), ah * torch.exp(dh)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
