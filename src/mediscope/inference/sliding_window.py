"""Sliding-window inference: overlapping windows blended with a Gaussian weight.

For images larger than the training size (whole dermoscopy photographs, slides), the
network sees one window at a time. Every pixel is predicted by all the windows that cover
it; each window's prediction is weighted by a Gaussian centred on the window (a window's
border sees less context than its centre, so it counts less) and the sum is divided by the
summed weights. Windows are equally spaced along each axis, the first at the top-left
corner and the last flush with the bottom-right border, so the overlap is at least the one
asked for. An image smaller than the window is padded (border pixels repeated) and the
result cropped back.

Example:
    >>> net = torch.nn.Conv2d(3, 2, kernel_size=1)
    >>> probs = predict_mask(net, torch.rand(3, 300, 517), window=(128, 128), tta=True)
    >>> probs.shape
    torch.Size([2, 300, 517])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

from mediscope.errors import ConfigError
from mediscope.inference.tta import flip_tta
from mediscope.runtime.pipeline import check_window, window_starts

Forward = Callable[[torch.Tensor], torch.Tensor]

#: The smallest weight of a window pixel, relative to the centre's 1: every pixel of a
#: window counts a little, so pixels seen only by window borders (the image's own border)
#: still get a well-defined, non-zero total weight.
MIN_WEIGHT = 1e-3


def gaussian_weight(window: tuple[int, int], sigma_scale: float = 0.125) -> torch.Tensor:
    """The ``(h, w)`` importance map of a window: 1 at the centre, falling towards the border.

    A separable Gaussian with sigma ``sigma_scale`` times the window side on each axis,
    clamped below at :data:`MIN_WEIGHT`.
    """
    axes = []
    for side in window:
        offsets = torch.arange(side, dtype=torch.float32) - (side - 1) / 2
        sigma = side * sigma_scale
        axes.append(torch.exp(-(offsets**2) / (2 * sigma**2)))
    weight = axes[0][:, None] * axes[1][None, :]
    return (weight / weight.max()).clamp(min=MIN_WEIGHT)


def _check(window: tuple[int, int], overlap: float, batch_size: int, sigma_scale: float) -> None:
    check_window(window, overlap, batch_size)
    if sigma_scale <= 0:
        raise ConfigError(
            f"sigma scale must be positive, got {sigma_scale}",
            where="inference.sigma_scale",
            hint="0.125 (an eighth of the window) is usual",
        )


@torch.no_grad()
def sliding_window_logits(
    forward: Forward,
    image: torch.Tensor,
    *,
    window: tuple[int, int],
    overlap: float = 0.25,
    batch_size: int = 4,
    gaussian: bool = True,
    sigma_scale: float = 0.125,
    output: Literal["logits", "probs"] = "logits",
) -> torch.Tensor:
    """Predicts ``image`` window by window and blends the windows' maps.

    Memory: the blend is accumulated in float32 on the image's device, and at most
    ``batch_size`` windows go through ``forward`` at a time.

    Args:
        forward: Maps windows ``(N, C, h, w)`` to maps ``(N, K, h, w)``: the network, or a
            wrapper such as :func:`mediscope.inference.tta.flip_tta`.
        image: ``(C, H, W)`` or ``(B, C, H, W)``, normalised as in training.
        window: Window height and width.
        overlap: Share of a window shared with the next one, in [0, 1).
        batch_size: Windows per ``forward`` call.
        gaussian: Weigh window centres more than borders; False weighs all pixels alike.
        sigma_scale: The Gaussian's sigma as a share of the window side.
        output: ``"logits"`` blends what ``forward`` returns as it is (logits, or
            probabilities when ``forward`` already returns them, as ``flip_tta`` does);
            ``"probs"`` applies a softmax over classes to every window first, so that
            probabilities are averaged (the usual choice; ``forward`` must return logits).

    Returns:
        ``(B, K, H, W)`` float32 blended maps at the image's size.

    Raises:
        ConfigError: A window, overlap, batch size or sigma scale out of range.
    """
    _check(window, overlap, batch_size, sigma_scale)
    if output not in ("logits", "probs"):
        raise ConfigError(f"unknown output {output!r}", where="output", hint="logits or probs")
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4:
        raise ValueError(f"expected an image (C, H, W) or (B, C, H, W), got {tuple(image.shape)}")
    height, width = image.shape[-2:]
    win_h, win_w = int(window[0]), int(window[1])
    pad_h, pad_w = max(0, win_h - height), max(0, win_w - width)
    if pad_h or pad_w:
        # repeated border pixels look more like the image than a constant band would
        image = F.pad(image, (0, pad_w, 0, pad_h), mode="replicate")
    full_h, full_w = image.shape[-2:]

    if gaussian:
        weight = gaussian_weight((win_h, win_w), sigma_scale).to(image.device)
    else:
        weight = torch.ones(win_h, win_w, device=image.device)
    positions = [
        (y, x)
        for y in window_starts(full_h, win_h, overlap)
        for x in window_starts(full_w, win_w, overlap)
    ]
    norm = torch.zeros(full_h, full_w, device=image.device)
    for y, x in positions:
        norm[y : y + win_h, x : x + win_w] += weight

    tiles = [(b, y, x) for b in range(image.shape[0]) for y, x in positions]
    total: torch.Tensor | None = None
    for first in range(0, len(tiles), batch_size):
        chunk = tiles[first : first + batch_size]
        batch = torch.stack([image[b, :, y : y + win_h, x : x + win_w] for b, y, x in chunk])
        maps = forward(batch).float()
        if maps.ndim != 4 or maps.shape[0] != len(chunk) or maps.shape[-2:] != (win_h, win_w):
            raise ValueError(
                f"forward must map {tuple(batch.shape)} to (N, K, {win_h}, {win_w}); "
                f"it returned {tuple(maps.shape)}"
            )
        if output == "probs":
            maps = maps.softmax(dim=1)
        if total is None:
            total = torch.zeros(image.shape[0], maps.shape[1], full_h, full_w, device=image.device)
        for (b, y, x), tile_map in zip(chunk, maps, strict=True):
            total[b, :, y : y + win_h, x : x + win_w] += tile_map * weight
    assert total is not None  # there is always at least one window
    return (total / norm)[..., :height, :width]


@torch.inference_mode()
def predict_mask(
    forward: Forward,
    image: torch.Tensor,
    *,
    window: tuple[int, int] | None = None,
    overlap: float = 0.25,
    tta: bool = False,
    batch_size: int = 4,
    gaussian: bool = True,
) -> torch.Tensor:
    """Class probabilities of one image: whole, or by sliding window, with optional flips.

    Probabilities (softmax of the logits) are what gets averaged, over flips and over
    overlapping windows alike.

    Args:
        forward: The network: ``(N, C, h, w)`` to logits ``(N, K, h, w)``.
        image: ``(C, H, W)`` (or ``(1, C, H, W)``), normalised as in training.
        window: Window height and width; None predicts the whole image in one pass.
        overlap: Share of a window shared with the next one, in [0, 1).
        tta: Also average over horizontal, vertical and both flips.
        batch_size: Windows per forward pass.
        gaussian: Gaussian window weights (centre counts more than border).

    Returns:
        ``(K, H, W)`` float32 probabilities on the image's device; ``argmax(0)`` is the mask.
    """
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"expected one image (C, H, W), got {tuple(image.shape)}")
    probs_forward = flip_tta(forward) if tta else _softmax(forward)
    if window is None:
        return probs_forward(image)[0].float()
    blended = sliding_window_logits(
        probs_forward,
        image,
        window=window,
        overlap=overlap,
        batch_size=batch_size,
        gaussian=gaussian,
    )
    return blended[0]


def _softmax(forward: Forward) -> Forward:
    def probs(x: torch.Tensor) -> torch.Tensor:
        return forward(x).float().softmax(dim=1)

    return probs
