"""Reading whole slides a region at a time, at the pyramid level a resolution asks for.

:class:`Slide` opens a slide through ``tiffslide`` (SVS, NDPI, generic pyramidal TIFF,
...) or, for what tiffslide does not read, ``openslide`` when it is installed. Regions
are read in the coordinates of a :class:`Resolution` (a level and a scale chosen from
microns per pixel, or an explicit level), so that a model trained on 0.5 µm/px patches
sees 0.5 µm/px patches whatever the scanner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mediscope.errors import ConfigError, DataError

#: Suffixes read as slides whatever their content.
SLIDE_SUFFIXES = (".svs", ".ndpi", ".scn", ".mrxs", ".vms", ".vmu", ".bif", ".svslide")
#: TIFF suffixes: a slide when the file holds a pyramid (several levels).
TIFF_SUFFIXES = (".tif", ".tiff")
#: A level is used for a resolution when its pixels are at most this much coarser.
MPP_TOLERANCE = 0.02
#: Upsampling the finest level by more than this is refused.
MAX_UPSAMPLE = 1.1
#: Bytes of one level read at a time when making a thumbnail.
STRIPE_BYTES = 32 << 20

INSTALL_HINT = "install the wsi extra: pip install 'mediscope[wsi]'"


def is_slide(path: str | Path) -> bool:
    """Whether ``path`` is a whole slide: a slide format (``.svs``, ``.ndpi``, ...) or a
    TIFF with several pyramid levels. A plain TIFF image is not a slide.

    Example:
        >>> is_slide("smear.png")
        False
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SLIDE_SUFFIXES:
        return True
    if suffix not in TIFF_SUFFIXES or not path.is_file():
        return False
    try:
        import tifffile
    except ImportError:
        return False
    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_svs or tif.is_ndpi or tif.is_scn or tif.is_bif:
                return True
            return len(tif.series) > 0 and len(tif.series[0].levels) > 1
    except Exception:  # an unreadable TIFF is the image reader's business
        return False


@dataclass(frozen=True)
class Resolution:
    """Where regions are read: a pyramid ``level`` and a further ``scale``.

    Attributes:
        level: The pyramid level read.
        scale: Level pixels per output pixel (1: the level as is; 2: halved again).
        downsample: Level-0 pixels per output pixel.
        mpp: Microns per output pixel (None when the slide does not say).
        size: The slide's ``(width, height)`` in output pixels.
    """

    level: int
    scale: float
    downsample: float
    mpp: float | None
    size: tuple[int, int]

    def area_mm2(self, pixels: float) -> float | None:
        """The area of ``pixels`` output pixels in mm² (None without an mpp)."""
        return None if self.mpp is None else pixels * (self.mpp / 1000.0) ** 2


class Slide:
    """A whole slide, read region by region.

    Args:
        path: The slide file.

    Raises:
        ConfigError: when no slide reader is installed.
        DataError: when the file cannot be read as a slide.

    Example:
        >>> with Slide("slide.svs") as slide:  # doctest: +SKIP
        ...     res = slide.resolution(mpp=0.5)
        ...     patch = slide.read(res, 0, 0, 224, 224)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError("no such slide", where=self.path)
        self._handle, self.backend = _open(self.path)
        handle = self._handle
        self.level_count: int = int(handle.level_count)
        self.level_dimensions: list[tuple[int, int]] = [
            (int(w), int(h)) for w, h in handle.level_dimensions
        ]
        self.level_downsamples: list[float] = [float(d) for d in handle.level_downsamples]
        self.mpp: float | None = _mpp(handle.properties, self.backend)

    @property
    def dimensions(self) -> tuple[int, int]:
        """``(width, height)`` of level 0."""
        return self.level_dimensions[0]

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the file."""
        self._handle.close()

    def __repr__(self) -> str:
        width, height = self.dimensions
        mpp = f"{self.mpp:.3f} µm/px" if self.mpp else "no mpp"
        return f"Slide({self.path.name}: {width}x{height}, {self.level_count} levels, {mpp})"

    # --- resolutions -------------------------------------------------------------------

    def level_mpp(self, level: int) -> float | None:
        """Microns per pixel of a level (None when the slide does not say)."""
        return None if self.mpp is None else self.mpp * self.level_downsamples[level]

    def resolution(
        self, mpp: float | None = None, level: int | None = None, *, downsample: float = 1.0
    ) -> Resolution:
        """The level and scale that give ``mpp`` microns per pixel, or ``level`` as is
        (further halved etc. by ``downsample``); neither: level 0.

        Raises:
            ConfigError: for an mpp on a slide without one in its metadata, an mpp finer
                than the slide's, or a level it does not have.
        """
        if mpp is not None and level is not None:
            raise ConfigError(
                "give a resolution (mpp) or a level, not both",
                where="inference.mpp",
                hint="set inference.level=null or inference.mpp=null",
            )
        if mpp is not None:
            if mpp <= 0:
                raise ConfigError(f"mpp must be positive, got {mpp}", where="inference.mpp")
            if self.mpp is None:
                raise ConfigError(
                    "the slide's metadata gives no microns per pixel",
                    where=self.path,
                    hint="set inference.mpp=null and inference.level=N (a pyramid level) instead",
                )
            wanted = mpp / self.mpp  # level-0 pixels per output pixel
            if wanted < 1 / MAX_UPSAMPLE:
                raise ConfigError(
                    f"the model wants {mpp} µm/px; the slide's finest level has {self.mpp:.4g}",
                    where=self.path,
                    hint="scan at a higher magnification, or set inference.mpp to at least "
                    f"{self.mpp:.4g}",
                )
            chosen = 0
            for index, factor in enumerate(self.level_downsamples):
                if factor <= wanted * (1 + MPP_TOLERANCE):
                    chosen = index
            scale = wanted / self.level_downsamples[chosen]
            if abs(scale - 1) <= MPP_TOLERANCE:
                scale = 1.0
            return self._resolution(chosen, scale)
        chosen = 0 if level is None else int(level)
        if not 0 <= chosen < self.level_count:
            raise ConfigError(
                f"the slide has levels 0..{self.level_count - 1}, not {chosen}",
                where="inference.level",
            )
        return self._resolution(chosen, float(downsample))

    def _resolution(self, level: int, scale: float) -> Resolution:
        downsample = self.level_downsamples[level] * scale
        width, height = self.dimensions
        mpp = None if self.mpp is None else self.mpp * downsample
        return Resolution(
            level=level,
            scale=scale,
            downsample=downsample,
            mpp=mpp,
            size=(max(1, int(width / downsample)), max(1, int(height / downsample))),
        )

    def thumbnail_resolution(self, max_side: int) -> Resolution:
        """The resolution at which the slide's longer side is about ``max_side`` pixels
        (never finer than level 0)."""
        wanted = max(1.0, max(self.dimensions) / max_side)
        chosen = 0
        for index, factor in enumerate(self.level_downsamples):
            if factor <= wanted * (1 + MPP_TOLERANCE):
                chosen = index
        return self._resolution(chosen, max(1.0, wanted / self.level_downsamples[chosen]))

    # --- pixels ------------------------------------------------------------------------

    def read(self, resolution: Resolution, x: int, y: int, width: int, height: int) -> np.ndarray:
        """The ``height x width x 3`` uint8 RGB region whose top-left corner is ``(x, y)``,
        all in ``resolution``'s pixels; outside the slide is white (glass)."""
        scale = resolution.scale
        level = resolution.level
        level_w, level_h = self.level_dimensions[level]
        # the region in level pixels, clipped to the level
        lx0, ly0 = round(x * scale), round(y * scale)
        lx1, ly1 = round((x + width) * scale), round((y + height) * scale)
        cx0, cy0 = max(lx0, 0), max(ly0, 0)
        cx1, cy1 = min(lx1, level_w), min(ly1, level_h)
        region = np.full((max(ly1 - ly0, 1), max(lx1 - lx0, 1), 3), 255, dtype=np.uint8)
        if cx1 > cx0 and cy1 > cy0:
            region[cy0 - ly0 : cy1 - ly0, cx0 - lx0 : cx1 - lx0] = self._read_level(
                level, cx0, cy0, cx1 - cx0, cy1 - cy0
            )
        if region.shape[:2] != (height, width):
            import cv2

            return np.asarray(cv2.resize(region, (width, height), interpolation=cv2.INTER_AREA))
        return region

    def _read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        factor = self.level_downsamples[level]
        location = (round(x * factor), round(y * factor))
        try:
            if self.backend == "tiffslide":
                pixels = self._handle.read_region(location, level, (width, height), as_array=True)
            else:
                pixels = self._handle.read_region(location, level, (width, height))
        except Exception as exc:  # a corrupt tile: name the slide and the place
            raise DataError(
                f"cannot read {width}x{height} px at level {level} ({x}, {y}): "
                f"{exc.__class__.__name__}: {exc}",
                where=self.path,
            ) from None
        return _rgb(np.asarray(pixels))

    def thumbnail(self, max_side: int = 2048) -> tuple[np.ndarray, Resolution]:
        """The slide with its longer side about ``max_side`` pixels, read stripe by stripe
        from the best level (so the memory is that of the thumbnail, not the slide)."""
        resolution = self.thumbnail_resolution(max_side)
        width, height = resolution.size
        level_w = self.level_dimensions[resolution.level][0]
        rows = max(1, int(STRIPE_BYTES / (3 * level_w * resolution.scale)))
        out = np.empty((height, width, 3), dtype=np.uint8)
        for top in range(0, height, rows):
            bottom = min(top + rows, height)
            out[top:bottom] = self.read(resolution, 0, top, width, bottom - top)
        return out, resolution


def _open(path: Path) -> tuple[Any, str]:
    errors: list[str] = []
    readers = 0
    tiffslide = _module("tiffslide")
    if tiffslide is not None:
        readers += 1
        try:
            return tiffslide.TiffSlide(path), "tiffslide"
        except Exception as exc:
            errors.append(f"tiffslide: {exc.__class__.__name__}: {exc}")
    openslide = _module("openslide")
    if openslide is not None:
        readers += 1
        try:
            return openslide.OpenSlide(str(path)), "openslide"
        except Exception as exc:
            errors.append(f"openslide: {exc.__class__.__name__}: {exc}")
    if not readers:
        raise ConfigError("reading whole slides needs tiffslide", where=path, hint=INSTALL_HINT)
    raise DataError(
        "not a readable slide (" + "; ".join(errors) + ")",
        where=path,
        hint="openslide reads more formats: pip install openslide-python openslide-bin",
    )


def _module(name: str) -> Any:
    """The module, or None when it (or its native library: OSError) is missing."""
    import importlib

    try:
        return importlib.import_module(name)
    except (ImportError, OSError):
        return None


def _mpp(properties: Any, backend: str) -> float | None:
    keys = ("tiffslide.mpp-x", "openslide.mpp-x", "aperio.MPP")
    for key in keys:
        value = properties.get(key)
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number) and number > 0:
            return number
    return None


def _rgb(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    if pixels.shape[2] == 4:  # openslide: RGBA, transparent outside the scanned area
        alpha = pixels[..., 3:4].astype(np.float32) / 255.0
        rgb = pixels[..., :3].astype(np.float32) * alpha + 255.0 * (1 - alpha)
        return rgb.astype(np.uint8)
    if pixels.shape[2] == 1:
        return np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels[..., :3])
