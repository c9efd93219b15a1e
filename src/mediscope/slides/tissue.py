"""Tissue masks: where on a slide there is tissue rather than glass.

Otsu's threshold on the (log) saturation of a low-resolution view of the slide (glass is grey
or white, stained tissue is coloured), then small specks removed and small holes filled.
Prediction reads only the patches and tiles the mask marks, so background glass costs
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mediscope.files import write_with
from mediscope.slides.reader import Resolution, Slide

#: The lowest saturation (0..255) counted as tissue whatever Otsu says (a slide of
#: glass only would otherwise be split in two by its noise).
MIN_SATURATION = 20


@dataclass
class TissueMask:
    """A boolean tissue mask of a slide at a low resolution.

    Attributes:
        mask: ``(H, W)`` bool, True on tissue.
        resolution: The mask's resolution (its pixels in level-0 pixels: ``downsample``).
        threshold: The saturation threshold used (0..255).
    """

    mask: np.ndarray
    resolution: Resolution
    threshold: float
    _integral: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def fraction(self) -> float:
        """Share of the slide covered by tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    def area_mm2(self) -> float | None:
        """Tissue area in mm² (None without an mpp)."""
        return self.resolution.area_mm2(float(self.mask.sum()))

    def cell_fractions(self, resolution: Resolution, cell: tuple[int, int]) -> np.ndarray:
        """The tissue share of each cell of a grid of ``cell = (height, width)`` pixels at
        ``resolution``, from the slide's top-left corner: ``(rows, cols)`` in 0..1."""
        return self.window_fractions(resolution, cell, cell)

    def window_fractions(
        self, resolution: Resolution, window: tuple[int, int], stride: tuple[int, int]
    ) -> np.ndarray:
        """The tissue share of the windows ``window`` (height, width) placed every
        ``stride`` pixels at ``resolution``, as long as they fit: ``(rows, cols)``."""
        width, height = resolution.size
        rows = max(0, (height - window[0]) // stride[0] + 1)
        cols = max(0, (width - window[1]) // stride[1] + 1)
        tops = np.arange(rows) * stride[0]
        lefts = np.arange(cols) * stride[1]
        return self.region_fractions(resolution, tops, tops + window[0], lefts, lefts + window[1])

    def region_fractions(
        self,
        resolution: Resolution,
        tops: np.ndarray,
        bottoms: np.ndarray,
        lefts: np.ndarray,
        rights: np.ndarray,
    ) -> np.ndarray:
        """Tissue shares of the rectangles ``rows x cols`` (outer product of the row spans
        ``tops..bottoms`` and column spans ``lefts..rights``, pixels of ``resolution``)."""
        factor = resolution.downsample / self.resolution.downsample
        height, width = self.mask.shape
        if self._integral is None:
            import cv2

            self._integral = np.asarray(cv2.integral(self.mask.astype(np.uint8)), np.int64)
        integral = self._integral

        def span(start: np.ndarray, stop: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
            a = np.clip(np.floor(np.asarray(start) * factor).astype(np.int64), 0, limit)
            b = np.clip(np.ceil(np.asarray(stop) * factor).astype(np.int64), 0, limit)
            return a, np.maximum(b, np.minimum(a + 1, limit))

        y0, y1 = span(tops, bottoms, height)
        x0, x1 = span(lefts, rights, width)
        total = (
            integral[y1][:, x1] - integral[y0][:, x1] - integral[y1][:, x0] + integral[y0][:, x0]
        )
        area = np.maximum((y1 - y0)[:, None] * (x1 - x0)[None, :], 1)
        fractions: np.ndarray = total / area
        return fractions

    def save(self, path: str | Path) -> Path:
        """Writes the mask as a PNG (255 tissue, 0 glass)."""
        return write_png(path, self.mask.astype(np.uint8) * 255)


def write_png(path: str | Path, picture: np.ndarray) -> Path:
    """Writes an ``H x W`` or RGB ``H x W x 3`` uint8 picture as a PNG, atomically."""
    import cv2

    array = picture[..., ::-1] if picture.ndim == 3 else picture
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 array
        raise OSError(f"cannot encode {path}")
    return write_with(path, lambda tmp: tmp.write_bytes(encoded.tobytes()))


def detect_tissue(
    thumbnail: np.ndarray,
    *,
    min_area: int = 64,
    max_hole: int = 64,
    threshold: float | None = None,
) -> tuple[np.ndarray, float]:
    """The tissue of an ``H x W x 3`` uint8 RGB view of a slide.

    Args:
        thumbnail: The low-resolution view.
        min_area: Tissue pieces smaller than this (pixels) are dropped.
        max_hole: Holes in tissue smaller than this (pixels) are filled.
        threshold: Saturation threshold (0..255); None: Otsu's, at least
            :data:`MIN_SATURATION`.

    Returns:
        The bool mask and the threshold used.

    Example:
        >>> view = np.full((64, 64, 3), 240, np.uint8)
        >>> view[16:48, 16:48] = (150, 80, 170)
        >>> mask, _ = detect_tissue(view, min_area=10)
        >>> bool(mask[32, 32]), bool(mask[4, 4])
        (True, False)
    """
    import cv2

    hsv = cv2.cvtColor(thumbnail, cv2.COLOR_RGB2HSV)
    saturation = cv2.medianBlur(hsv[..., 1], 3)  # noise out, edges kept
    if threshold is None:
        # Otsu on log saturation: faint tissue (fat, loose stroma, lymphocytes) is nearer
        # to strong stains than to glass there, so the split falls between glass and tissue
        lut = np.round(np.log1p(np.arange(256)) / np.log(256.0) * 255).astype(np.uint8)
        otsu, _ = cv2.threshold(lut[saturation], 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        level = float(np.expm1(otsu / 255 * np.log(256.0)))
        threshold = max(level, float(MIN_SATURATION))
    mask = saturation > threshold
    mask = _drop_small(mask, min_area)
    holes = _drop_small(~mask, max_hole, keep_border=True)
    return ~holes, float(threshold)


def _drop_small(mask: np.ndarray, min_area: int, keep_border: bool = False) -> np.ndarray:
    """``mask`` without its 8-connected pieces smaller than ``min_area`` pixels
    (``keep_border``: pieces touching the border are kept whatever their size)."""
    import cv2

    if min_area <= 1 or not mask.any():
        return mask
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    if keep_border:
        height, width = mask.shape
        left, top = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
        right = left + stats[:, cv2.CC_STAT_WIDTH]
        bottom = top + stats[:, cv2.CC_STAT_HEIGHT]
        keep |= (left == 0) | (top == 0) | (right == width) | (bottom == height)
    keep[0] = False  # the label of everything outside the pieces
    result: np.ndarray = keep[labels] & mask
    return result


def tissue_mask(
    slide: Slide,
    *,
    max_side: int = 2048,
    min_area_mm2: float = 0.01,
    max_hole_mm2: float = 0.01,
    threshold: float | None = None,
) -> tuple[TissueMask, np.ndarray]:
    """The tissue mask of a slide, from a view whose longer side is about ``max_side``.

    Args:
        slide: The slide.
        max_side: Longer side of the low-resolution view the mask is made on.
        min_area_mm2: Tissue pieces smaller than this are dropped (without an mpp in
            the slide: 64 pixels of the view).
        max_hole_mm2: Holes smaller than this are filled (without an mpp: 64 pixels).
        threshold: Saturation threshold (0..255); None: Otsu's.

    Returns:
        The mask and the view it was made on (RGB, for pictures).
    """
    view, resolution = slide.thumbnail(max_side)
    pixel_mm2 = resolution.area_mm2(1.0)
    if pixel_mm2:
        min_area, max_hole = int(min_area_mm2 / pixel_mm2), int(max_hole_mm2 / pixel_mm2)
    else:
        min_area = max_hole = 64
    mask, used = detect_tissue(view, min_area=min_area, max_hole=max_hole, threshold=threshold)
    return TissueMask(mask=mask, resolution=resolution, threshold=used), view
