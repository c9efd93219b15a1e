"""Test-time augmentation by flips: predict flipped copies, flip the maps back, average.

Probabilities are averaged, not logits: a softmax of averaged logits lets one confident
copy outvote the others, while the mean of probabilities stays a probability and is what
the blend of sliding windows expects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Forward = Callable[[torch.Tensor], torch.Tensor]

#: The tensor dimensions each flip reverses in ``(N, C, H, W)``.
FLIP_DIMS: dict[str, tuple[int, ...]] = {"h": (-1,), "v": (-2,), "hv": (-2, -1)}


def flip_tta(forward: Forward, flips: Sequence[str] = ("h", "v", "hv")) -> Forward:
    """A forward that averages softmax probabilities over the input and its flips.

    Each flipped copy is predicted separately (memory stays that of one pass) and its
    probability map flipped back before averaging. The result composes with
    :func:`mediscope.inference.sliding_window.sliding_window_logits`, which then blends
    probabilities.

    Args:
        forward: Maps ``(N, C, H, W)`` to logits ``(N, K, H, W)``.
        flips: Flips besides the unflipped input: ``h`` (left-right), ``v`` (up-down),
            ``hv`` (both, a half turn).

    Returns:
        A function giving the mean probabilities ``(N, K, H, W)`` in float32.

    Example:
        >>> net = torch.nn.Conv2d(3, 2, kernel_size=1)
        >>> flip_tta(net)(torch.rand(1, 3, 8, 8)).sum(dim=1).allclose(torch.ones(1, 8, 8))
        True
    """
    unknown = [f for f in flips if f not in FLIP_DIMS]
    if unknown:
        raise ValueError(f"unknown flips {unknown}; valid: {', '.join(FLIP_DIMS)}")
    chosen = tuple(flips)

    def averaged(x: torch.Tensor) -> torch.Tensor:
        total = forward(x).float().softmax(dim=1)
        for flip in chosen:
            dims = FLIP_DIMS[flip]
            total = total + forward(x.flip(dims)).float().softmax(dim=1).flip(dims)
        return total / (1 + len(chosen))

    return averaged
