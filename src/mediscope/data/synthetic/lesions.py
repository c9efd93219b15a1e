"""Synthetic dermoscopy images with lesion masks (PH2-like), in the MMSeg layout.

Each image is skin seen through a dermoscope: a skin tone that varies between images,
fine texture and skin lines, an uneven illumination and the dark circular vignette of
the lens; one or two pigmented lesions with irregular borders, fuzzy or sharp edges,
mixed colours (browns, near-black, blue-grey) and dots and globules inside; hairs that
cross the image, lesion included (they do not change the mask); and air bubbles of the
immersion fluid.

Binary masks: 0 skin, 1 lesion. The multi-class variant tells two kinds of lesion apart:
1 ``nevus`` (round, smooth border, even light-to-medium brown) and 2 ``melanoma``
(irregular border, larger, several dark colours).

Layout: ``img/<split>/<split>_NNNN.jpg`` and ``labels/<split>/
<split>_NNNN.png`` (class-index PNGs; names unique across splits), plus ``classes.txt``. The same seed gives the same
bytes.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from mediscope.data.synthetic.gram_crops import _check_destination, _replace_dir
from mediscope.errors import DataError

BINARY_CLASSES = ("background", "lesion")
MULTICLASS_CLASSES = ("background", "nevus", "melanoma")
SPLITS = ("train", "val", "test")

SKIN_TONES = np.array(
    [[236, 200, 178], [226, 184, 160], [214, 170, 142], [196, 150, 120], [172, 124, 96]],
    dtype=np.float32,
)
NEVUS_COLOURS = np.array([[150, 95, 60], [125, 78, 48], [170, 115, 75]], dtype=np.float32)
MELANOMA_COLOURS = np.array(
    [[95, 55, 35], [60, 38, 30], [40, 28, 28], [80, 78, 98], [115, 65, 42]], dtype=np.float32
)


@dataclass
class LesionSummary:
    """Where the data went, images per split, and each class's share of the pixels."""

    root: Path
    counts: dict[str, int]
    classes: tuple[str, ...]
    pixel_shares: dict[str, float] = field(default_factory=dict)


def _smooth_noise(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Noise with features about ``scale`` pixels wide, in about [-1, 1]."""
    cells = max(2, int(size / max(scale, 1)))
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC) / 1.5


def _skin(rng: np.random.Generator, size: int) -> np.ndarray:
    tone = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.94, 1.06, 3)
    image = np.broadcast_to(tone, (size, size, 3)).astype(np.float32).copy()
    image *= 1 + 0.05 * _smooth_noise(rng, size, size / 4)[..., None]
    image *= 1 + 0.03 * rng.standard_normal((size, size, 1)).astype(np.float32)
    lines = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(3, 9))):  # skin furrows
        p = rng.uniform(0, size, 2)
        angle = rng.uniform(0, np.pi)
        d = np.array([np.cos(angle), np.sin(angle)]) * size
        a, b = (p - d).astype(int), (p + d).astype(int)
        cv2.line(lines, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 1.0, 1, cv2.LINE_AA)
    image *= 1 - 0.05 * cv2.GaussianBlur(lines, (3, 3), 0)[..., None]
    return image


def _lesion_shape(
    rng: np.random.Generator, size: int, *, irregular: bool, radius: float, centre: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The lesion's mask (bool) and its relative radius map (0 centre, 1 border)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - centre[0], yy - centre[1]
    theta = np.arctan2(dy, dx)
    stretch = rng.uniform(0.75, 1.0)
    angle = rng.uniform(0, np.pi)
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / stretch
    dist = np.sqrt(u**2 + v**2)
    border = np.ones_like(theta)
    harmonics = range(2, 12 if irregular else 5)
    for k in harmonics:
        amplitude = rng.uniform(0.08, 0.22 if irregular else 0.08) / k**0.7
        border += amplitude * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    rel = dist / (radius * border)
    return rel < 1.0, rel


def _paint_lesion(
    image: np.ndarray,
    rng: np.random.Generator,
    mask: np.ndarray,
    rel: np.ndarray,
    *,
    melanoma: bool,
) -> None:
    size = image.shape[0]
    palette = MELANOMA_COLOURS if melanoma else NEVUS_COLOURS
    picks = rng.choice(len(palette), size=2 if melanoma else 1, replace=False)
    base = palette[picks[0]] * rng.uniform(0.9, 1.1, 3)
    colour = np.broadcast_to(base, image.shape).astype(np.float32).copy()
    if melanoma:  # patches of a second colour
        blend = np.clip(_smooth_noise(rng, size, size / 6), 0, 0.7)[..., None]
        colour = colour * (1 - blend) + palette[picks[1]] * blend
    # darker centre, lighter rim; fuzzy or sharp edge
    colour *= (0.8 + 0.25 * np.clip(rel, 0, 1))[..., None]
    edge = rng.uniform(0.03, 0.12) if not melanoma else rng.uniform(0.02, 0.2)
    alpha = np.clip((1.0 - rel) / edge, 0, 1) * rng.uniform(0.75, 0.95)
    texture = 1 + 0.12 * _smooth_noise(rng, size, max(2.0, size / 40))
    colour *= texture[..., None]
    # dots and globules inside
    inside = np.argwhere(mask)
    if len(inside):
        for y, x in inside[rng.integers(len(inside), size=int(rng.integers(3, 15)))]:
            r = max(1, int(rng.uniform(0.005, 0.02) * size))
            cv2.circle(colour, (int(x), int(y)), r, (35.0, 25.0, 25.0), -1, cv2.LINE_AA)
    image *= 1 - alpha[..., None]
    image += colour * alpha[..., None]


def _hairs(image: np.ndarray, rng: np.random.Generator) -> None:
    size = image.shape[0]
    layer = np.zeros((size, size), np.float32)
    for _ in range(int(rng.choice([0, 0, 1, 2, 3, 5, 8]))):
        points = rng.uniform(-0.2, 1.2, (3, 2)) * size
        t = np.linspace(0, 1, 40)[:, None]
        curve = (1 - t) ** 2 * points[0] + 2 * (1 - t) * t * points[1] + t**2 * points[2]
        width = 1 if size < 200 else int(rng.integers(1, 3))
        cv2.polylines(layer, [curve.astype(np.int32)], False, 1.0, width, cv2.LINE_AA)
    hair = np.array([45, 32, 28], np.float32) * rng.uniform(0.7, 1.2)
    layer = layer[..., None] * rng.uniform(0.7, 0.95)
    image *= 1 - layer
    image += hair * layer


def _bubbles(image: np.ndarray, rng: np.random.Generator) -> None:
    size = image.shape[0]
    for _ in range(int(rng.choice([0, 0, 1, 2, 4]))):
        centre = (int(rng.uniform(0.1, 0.9) * size), int(rng.uniform(0.1, 0.9) * size))
        radius = max(2, int(rng.uniform(0.01, 0.06) * size))
        ring = np.zeros((size, size), np.float32)
        cv2.circle(ring, centre, radius, 1.0, 1, cv2.LINE_AA)
        fill = np.zeros((size, size), np.float32)
        cv2.circle(fill, centre, radius, 0.12, -1, cv2.LINE_AA)
        highlight = (centre[0] - radius // 3, centre[1] - radius // 3)
        cv2.circle(fill, highlight, max(1, radius // 4), 0.5, -1, cv2.LINE_AA)
        light = np.clip(ring * 0.6 + fill, 0, 1)[..., None]
        image *= 1 - light
        image += 250 * light


def _optics(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = image.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    image *= (1 + rng.uniform(0.0, 0.12) * (xx * np.cos(angle) + yy * np.sin(angle)))[..., None]
    r = np.sqrt(xx**2 + yy**2)
    edge = rng.uniform(0.47, 0.62)
    vignette = 1 / (1 + np.exp((r - edge) / 0.025))
    image *= (0.08 + 0.92 * vignette)[..., None]
    blur = rng.choice([0, 0, 1])
    if blur:
        image = cv2.GaussianBlur(image, (3, 3), 0)
    noise = rng.standard_normal(image.shape).astype(np.float32) * 2.0
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def render_lesion(
    rng: np.random.Generator, size: int = 128, *, multiclass: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One dermoscopy-like RGB image (``size x size x 3`` uint8) and its mask."""
    image = _skin(rng, size)
    mask = np.zeros((size, size), np.uint8)
    count = 2 if rng.random() < 0.2 else 1
    # lesion area 10-60 % of the image in total
    area = rng.uniform(0.10, 0.55) / count
    for i in range(count):
        melanoma = bool(rng.random() < 0.5)
        radius = np.sqrt(area * size * size / np.pi)
        margin = radius * 0.9
        if count == 1:
            centre = size / 2 + rng.uniform(-0.12, 0.12, 2) * size
        else:
            side = -1 if i == 0 else 1
            centre = np.array([size / 2 + side * size * 0.22, size / 2 + rng.uniform(-0.15, 0.15) * size])
        centre = np.clip(centre, margin, size - margin)
        shape, rel = _lesion_shape(
            rng, size, irregular=melanoma, radius=radius * (1.15 if melanoma else 0.95), centre=centre
        )
        _paint_lesion(image, rng, shape, rel, melanoma=melanoma)
        mask[shape] = (2 if melanoma else 1) if multiclass else 1
    _hairs(image, rng)
    _bubbles(image, rng)
    return _optics(image, rng), mask


def generate_lesions(
    dst: str | Path,
    *,
    train: int = 200,
    val: int = 50,
    test: int = 50,
    size: int = 128,
    seed: int = 0,
    multiclass: bool = False,
    overwrite: bool = False,
) -> LesionSummary:
    """Writes a synthetic dermoscopy segmentation dataset in the MMSeg layout.

    Args:
        dst: Destination folder (must not exist or be empty, unless ``overwrite``).
        train: Training images.
        val: Validation images.
        test: Test images.
        size: Image side in pixels.
        seed: The same seed gives byte-identical files.
        multiclass: Masks of ``nevus`` (1) and ``melanoma`` (2) instead of ``lesion`` (1).
        overwrite: Replace a non-empty ``dst``.

    Raises:
        DataError: On invalid sizes or counts, or a non-empty ``dst``.
    """
    if size < 16:
        raise DataError(f"size must be at least 16 pixels, got {size}", hint="use --size 64 or more")
    if train < 1 or val < 0 or test < 0 or seed < 0:
        raise DataError("train must be at least 1; val, test and seed 0 or more")
    root = Path(dst)
    target = root.expanduser().resolve()
    _check_destination(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    classes = MULTICLASS_CLASSES if multiclass else BINARY_CLASSES
    pixels = np.zeros(len(classes), np.int64)
    counts: dict[str, int] = {}
    try:
        for split_index, (split, n) in enumerate(zip(SPLITS, (train, val, test), strict=True)):
            if n == 0:
                continue
            (tmp / "img" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
            for i in range(n):
                rng = np.random.default_rng([seed, split_index, i])
                image, mask = render_lesion(rng, size, multiclass=multiclass)
                name = f"{split}_{i:04d}"
                Image.fromarray(image).save(tmp / "img" / split / f"{name}.jpg", quality=92)
                Image.fromarray(mask).save(tmp / "labels" / split / f"{name}.png")
                pixels += np.bincount(mask.ravel(), minlength=len(classes))
            counts[split] = n
        (tmp / "classes.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shares = {c: round(float(p / pixels.sum()), 4) for c, p in zip(classes, pixels, strict=True)}
    return LesionSummary(root=root, counts=counts, classes=classes, pixel_shares=shares)
