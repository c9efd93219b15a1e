"""Any input size for networks whose sides must divide by a multiple (``2 ** depth``, 32).

The input is padded at the bottom and right to the next multiple, and the output is
cropped back, so a model maps ``(B, C, H, W)`` to ``(B, num_classes, H, W)`` for every
``H, W >= 1``. Padding only at the bottom and right keeps the pooling grid anchored at
the top-left pixel, so cropping is a plain slice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def padded_side(side: int, multiple: int, *, min_side: int = 1) -> int:
    """The smallest multiple of ``multiple`` that is at least ``side`` and ``min_side``.

    Example:
        >>> padded_side(37, 16), padded_side(64, 16), padded_side(20, 32, min_side=128)
        (48, 64, 128)
    """
    target = max(side, min_side)
    return -(-target // multiple) * multiple


def pad_to_multiple(x: torch.Tensor, multiple: int, *, min_side: int = 1) -> torch.Tensor:
    """Pads the last two dimensions of ``x`` up to :func:`padded_side` (bottom and right).

    Reflection continues the image's texture into the border, which a convolution sees
    as more natural than a black band. Reflection needs the pad to be shorter than the
    side, so tiny inputs are padded by repeating their edge pixels instead.
    """
    height, width = x.shape[-2:]
    pad_h = padded_side(height, multiple, min_side=min_side) - height
    pad_w = padded_side(width, multiple, min_side=min_side) - width
    if not (pad_h or pad_w):
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def crop_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The top-left ``height`` x ``width`` window of ``x`` (undoes :func:`pad_to_multiple`)."""
    return x[..., :height, :width]
