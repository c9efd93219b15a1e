"""Resizing an image and its mask to the same size without mixing classes in the mask."""

from __future__ import annotations

import cv2
import numpy as np


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes an ``H x W x C`` uint8 image to ``size x size``.

    Shrinking averages the source pixels (area), which keeps fine texture from aliasing;
    enlarging interpolates bilinearly.
    """
    height, width = image.shape[:2]
    shrink = size * size < height * width
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    resized: np.ndarray = cv2.resize(image, (size, size), interpolation=interpolation)
    return resized


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resizes an ``H x W`` mask of class indices to ``size x size`` by nearest neighbour.

    Every output pixel takes the value of one source pixel, so no value that is not a
    class (or the ignore value) appears. ``INTER_NEAREST_EXACT`` samples pixel centres;
    plain ``INTER_NEAREST`` is shifted by half a pixel.
    """
    resized: np.ndarray = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST_EXACT)
    return resized
