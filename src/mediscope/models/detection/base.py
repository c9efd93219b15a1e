"""What every detector offers the detection task.

A detector's ``forward(images)`` returns its raw outputs; ``losses(raw, targets,
criterion)`` turns them into named losses (in training *and* validation, so every
detector reports a validation loss) and ``detect(raw, ...)`` into boxes. Targets and
detections are per image: ``boxes`` (N, 4) xyxy in input pixels, ``labels`` (N,) in
0..C-1, and ``scores`` (N,) for detections.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

Target = dict[str, torch.Tensor]


class Detector(nn.Module):
    """Base class of mediscope's detectors."""

    num_classes: int
    #: Whether ``losses`` uses the task's criterion (False: the model's own losses).
    uses_criterion = True

    def losses(
        self, raw: Any, targets: list[Target], criterion: nn.Module | None
    ) -> dict[str, torch.Tensor]:
        """Named losses of a batch; their sum is what is minimised."""
        raise NotImplementedError

    def detect(
        self,
        raw: Any,
        *,
        score_threshold: float = 0.05,
        iou_threshold: float = 0.5,
        max_detections: int = 300,
    ) -> list[Target]:
        """Boxes, scores and labels per image, after per-class NMS."""
        raise NotImplementedError

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, **settings: Any) -> list[Target]:
        """``detect(forward(images))`` without gradients."""
        return self.detect(self(images), **settings)

    def backbone_stages(self) -> list[nn.Module]:
        """The backbone's stages, input to output (for ``model.freeze``)."""
        raise NotImplementedError
