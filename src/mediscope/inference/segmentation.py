"""Whole-image segmentation: an image file → class probabilities at its own resolution.

Two ways, set by the config's ``inference`` section:

- whole image (default): resized to ``data.image_size`` as in training, predicted, and the
  probabilities resized back to the image's size;
- sliding window (``inference.window``): overlapping windows at full resolution, blended
  with a Gaussian weight, for images larger than the training size.

Either can average over flips (``inference.tta``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mediscope.config.schema import Config
from mediscope.data.transforms import build_normalize, build_transform
from mediscope.inference.sliding_window import sliding_window_logits
from mediscope.inference.tta import flip_tta
from mediscope.tasks import BaseTask, data_module

Forward = Callable[[torch.Tensor], torch.Tensor]


class SegmentationPredictor:
    """Predicts per-pixel class probabilities of whole images.

    Build it from a run's config with :meth:`from_config`.

    Args:
        model: The segmentation network (logits ``(B, K, H, W)``).
        image_size: ``H, W`` the whole image is resized to (the training size).
        mean: Per-channel input mean (0..1), as in training.
        std: Per-channel input std (0..1).
        window: Sliding-window size ``H, W`` at full resolution; None resizes the whole
            image to ``image_size``.
        overlap: Share of a window shared with the next.
        gaussian: Weight window centres more than their borders.
        batch_size: Windows per forward pass.
        tta: Average over horizontal and vertical flips.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        image_size: tuple[int, int],
        mean: Sequence[float],
        std: Sequence[float],
        window: tuple[int, int] | None = None,
        overlap: float = 0.25,
        gaussian: bool = True,
        batch_size: int = 4,
        tta: bool = False,
    ) -> None:
        self.model = model.eval()
        self.window = window
        self.overlap = overlap
        self.gaussian = gaussian
        self.batch_size = batch_size
        self.tta = tta
        # Whole images go through evaluation's plain pipeline (resize, normalise);
        # sliding windows are cut at full resolution, so those images are only normalised.
        self.resized = build_transform(image_size=image_size, mean=mean, std=std)
        self.full = build_normalize(mean, std)
        self.device = next(model.parameters()).device

    @classmethod
    def from_config(
        cls,
        task: BaseTask,
        config: Config,
        *,
        stats: tuple[list[float], list[float]] | None = None,
    ) -> SegmentationPredictor:
        """The predictor of ``task``'s model as ``config`` sets it up.

        Args:
            task: The restored task (its model predicts).
            config: The run's config: ``data.image_size`` and the ``inference`` section.
            stats: Normalisation mean and std (the checkpoint's); default: the data
                module's for ``config``.
        """
        mean, std = stats or data_module(config).normalization_stats()
        settings = config.inference
        return cls(
            task.model,
            image_size=config.data.image_size,
            mean=mean,
            std=std,
            window=settings.window,
            overlap=settings.overlap,
            gaussian=settings.gaussian,
            batch_size=settings.batch_size,
            tta=settings.tta,
        )

    def _forward(self) -> Forward:
        def logits(x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.model(x)
            return out

        return flip_tta(logits) if self.tta else _softmax(logits)

    @torch.inference_mode()
    def probabilities(self, image: np.ndarray) -> torch.Tensor:
        """``(K, H, W)`` float32 probabilities of an ``H x W x C`` uint8 image."""
        height, width = image.shape[:2]
        forward = self._forward()
        if self.window is not None:
            x = self.full(image=image)["image"].to(self.device)
            probs = sliding_window_logits(
                forward,
                x,
                window=self.window,
                overlap=self.overlap,
                batch_size=self.batch_size,
                gaussian=self.gaussian,
            )[0]
        else:
            x = self.resized(image=image)["image"].to(self.device)[None]
            probs = forward(x)
            if probs.shape[-2:] != (height, width):
                probs = F.interpolate(probs, size=(height, width), mode="bilinear")
            probs = probs[0]
        return probs.float().cpu()

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The class-index mask ``(H, W)`` and probabilities ``(K, H, W)`` of an image."""
        probs = self.probabilities(image)
        return probs.argmax(dim=0).numpy().astype(np.uint8), probs.numpy()


def _softmax(forward: Forward) -> Forward:
    def probs(x: torch.Tensor) -> torch.Tensor:
        return forward(x).softmax(dim=1)

    return probs
