"""Synthetic dermoscopy images of pigmented skin lesions, with segmentation masks.

The images imitate PH2-style dermoscopy: skin of a random tone with its fine relief
(furrows, pores, redness), one or two pigmented lesions, hairs, air bubbles of the
immersion fluid, an uneven lamp and the dark circular field of the dermoscope.

Light is modelled as in the Gram-stain generator (:mod:`.stain`): pigments absorb light
following the Beer-Lambert law, so an image is multiplied by ``exp(-optical_density)``
wherever melanin, blood or hair lies. Melanin high in the skin looks brown to black; deep
melanin looks blue-grey (the Tyndall effect), as in real lesions.

Two kinds of lesion are drawn:

- nevus-like (class 1 in the multi-class variant): round or oval, regular border, light to
  mid brown, homogeneous or with a regular pigment network or regular globules;
- melanoma-like (class 2): lobed asymmetric shape with an irregular, partly fuzzy border,
  darker and multi-coloured (black blotches, blue-grey veil, whitish regression, atypical
  network, irregular dots at the periphery, streaks).

The mask of a lesion is exactly where its drawn pigment reaches half of its full
coverage, so image and mask line up to the pixel; hairs and bubbles never change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from mediscope.data.images import write_image
from mediscope.data.synthetic import stain as st
from mediscope.errors import DataError
from mediscope.files import staged_dir

FloatImage = npt.NDArray[np.float32]
RGB = tuple[float, float, float]

LESION_CLASSES: Final[tuple[str, ...]] = ("background", "lesion")
MULTICLASS_LESION_CLASSES: Final[tuple[str, ...]] = ("background", "nevus", "melanoma")
NEVUS: Final = 1
MELANOMA: Final = 2
#: Share of the image covered by lesions (all lesions of an image together).
AREA_RANGE: Final[tuple[float, float]] = (0.10, 0.60)
IMG_SUFFIX: Final = ".jpg"
MASK_SUFFIX: Final = ".png"
SPLITS: Final[tuple[str, ...]] = ("train", "val", "test")

# Optical densities per channel (R, G, B) at unit density.
MELANIN_ODS: Final[tuple[RGB, ...]] = (
    (0.52, 0.80, 1.10),  # brown
    (0.42, 0.78, 1.30),  # warm, yellowish brown
    (0.66, 0.86, 1.02),  # grey-brown
)
DERMAL_MELANIN_OD: Final[RGB] = (0.85, 0.55, 0.22)  # deep melanin: blue-grey
HAEMOGLOBIN_OD: Final[RGB] = (0.04, 0.55, 0.42)  # redness of skin and vessels
HAIR_OD: Final[RGB] = (1.55, 1.85, 2.15)  # dark brown to black
VEIL_RGB: Final[RGB] = (0.62, 0.70, 0.82)  # blue-white veil
SCAR_RGB: Final[RGB] = (0.93, 0.86, 0.86)  # whitish-pink regression
# Skin under a dermoscope, light to dark (interpolated per image).
SKIN_TONES: Final[tuple[RGB, ...]] = (
    (0.97, 0.82, 0.76),
    (0.92, 0.72, 0.62),
    (0.82, 0.60, 0.47),
    (0.66, 0.46, 0.33),
    (0.44, 0.30, 0.21),
)

_STREAM_TAG: Final = 0x4C45534E  # "LESN": keeps these seeds apart from other generators
_JPEG_QUALITY: Final = 95
_MIN_SIZE: Final = 16


@dataclass(frozen=True)
class LesionSummary:
    """What :func:`generate_lesions` wrote.

    Attributes:
        root: The dataset folder.
        classes: Class names in index order (background first).
        counts: ``split -> number of images``.
        pixel_shares: ``class name -> share of all mask pixels`` (sums to 1).
        lesions: ``class name -> number of lesions drawn`` (object classes only).
    """

    root: Path
    classes: tuple[str, ...]
    counts: dict[str, int]
    pixel_shares: dict[str, float]
    lesions: dict[str, int]


@dataclass(frozen=True)
class _Lesion:
    """One lesion's geometry: ``f < 1`` inside; ``f`` is about distance / radius."""

    kind: int
    f: FloatImage
    radius: float
    centre: tuple[float, float]


# --- Public rendering -----------------------------------------------------------------------


def render_lesion_image(
    rng: np.random.Generator, *, size: int | tuple[int, int] = 128
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """One dermoscopy-like image and its mask.

    Args:
        rng: Random generator; the result is a pure function of its state.
        size: Side in px, or ``(height, width)``.

    Returns:
        ``(image, mask)``: ``H x W x 3`` uint8 RGB and ``H x W`` uint8 with 0 for the
        background, :data:`NEVUS` (1) or :data:`MELANOMA` (2) for the lesion kinds.

    Raises:
        DataError: If ``size`` is below 16 px.
    """
    h, w = _shape(size)
    u = min(h, w) / 128.0  # texture and line widths are designed at 128 px
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    img = _skin(h, w, u, rng)
    lesions = _place_lesions(h, w, u, yy, xx, rng)
    mask = np.zeros((h, w), np.uint8)
    for i, lesion in enumerate(lesions):
        # Where lesions touch, each pixel belongs to the one it is deeper inside.
        own = np.ones((h, w), bool)
        for j, other in enumerate(lesions):
            if j != i:
                own &= lesion.f < other.f
        _draw_lesion(img, lesion, own, u, yy, xx, rng)
        mask[(lesion.f < 1.0) & own] = lesion.kind
    img *= np.exp(-_hair_od(h, w, u, rng))
    img = _bubbles(img, u, rng)
    img = _optics(img, u, yy, xx, rng)
    return st.to_uint8(img), mask


def _shape(size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(h, w) < _MIN_SIZE:
        raise DataError(
            f"image size must be at least {_MIN_SIZE} px per side, got {h}x{w}",
            where="size",
            hint="use e.g. size=128",
        )
    return h, w


def _smoothstep(x: npt.NDArray[np.float32]) -> FloatImage:
    x = np.clip(x, 0.0, 1.0)
    return np.asarray(x * x * (3.0 - 2.0 * x), np.float32)


def _ridges(field: FloatImage, width: float) -> FloatImage:
    """Thin lines along the zero crossings of a smooth field (a net of closed loops)."""
    return np.asarray(np.clip(1.0 - np.abs(field) / width, 0.0, 1.0) ** 2, np.float32)


def _network(h: int, w: int, rng: np.random.Generator, cell: float, jitter: float) -> FloatImage:
    """A pigment network: a honeycomb of soft lines around lighter holes, about ``cell`` px
    apart, normalised to mean 1. The lines are the borders of the Voronoi cells of jittered
    grid points, found with one labelled distance transform."""
    seeds = np.ones((h, w), np.uint8)
    gy, gx = np.meshgrid(np.arange(0.5 * cell, h, cell), np.arange(0.5 * cell, w, cell))
    ys = np.clip(gy + rng.uniform(-jitter, jitter, gy.shape) * cell, 0, h - 1).astype(int)
    xs = np.clip(gx + rng.uniform(-jitter, jitter, gx.shape) * cell, 0, w - 1).astype(int)
    seeds[ys, xs] = 0
    _, labels = cv2.distanceTransformWithLabels(
        seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    border = np.zeros((h, w), np.float32)
    border[1:] += labels[1:] != labels[:-1]
    border[:, 1:] += labels[:, 1:] != labels[:, :-1]
    lines = cv2.GaussianBlur(np.minimum(border, 1.0), (0, 0), 0.12 * cell + 0.35)
    return np.asarray(lines / max(float(lines.mean()), 1e-6), np.float32)


def _dots(
    h: int, w: int, ys: npt.NDArray[np.float64], xs: npt.NDArray[np.float64], sigma: float
) -> FloatImage:
    """Soft round dots of peak about 1 at the given positions (impulses, then one blur)."""
    impulses = np.zeros((h, w), np.float32)
    iy = np.clip(ys.astype(int), 0, h - 1)
    ix = np.clip(xs.astype(int), 0, w - 1)
    np.add.at(impulses, (iy, ix), 1.0)
    blurred = cv2.GaussianBlur(impulses, (0, 0), sigma)
    return np.asarray(blurred * (2.0 * np.pi * sigma * sigma), np.float32)


def _sample_inside(
    region: npt.NDArray[np.bool_], n: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``n`` random pixel positions (y, x) inside a boolean region."""
    flat = np.flatnonzero(region)
    if flat.size == 0 or n <= 0:
        return np.zeros(0), np.zeros(0)
    picks = flat[rng.integers(0, flat.size, n)]
    return (picks // region.shape[1]).astype(np.float64), (picks % region.shape[1]).astype(
        np.float64
    )


# --- Skin -------------------------------------------------------------------------------------


def _skin_tone(rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """A skin colour between light and dark, mostly light (as in PH2), with a hue drift."""
    t = float(rng.beta(1.2, 2.2)) * (len(SKIN_TONES) - 1)
    i = min(int(t), len(SKIN_TONES) - 2)
    a, b = np.asarray(SKIN_TONES[i]), np.asarray(SKIN_TONES[i + 1])
    tone = a + (b - a) * (t - i)
    return np.asarray(tone * (1.0 + rng.normal(0.0, 0.025, 3)), np.float32)


def _skin(h: int, w: int, u: float, rng: np.random.Generator) -> FloatImage:
    """Skin with redness, mottling, crossing furrows, pores and fine grain."""
    redness = np.clip(st.noise_field(h, w, rng, 45 * u) * 0.5 + 0.6, 0.0, 1.5)
    redness *= float(rng.uniform(0.05, 0.4))
    relief = _furrows(h, w, u, rng) * float(rng.uniform(0.04, 0.10))
    n_pores = int(rng.poisson(h * w / (11.0 * u) ** 2))
    pores = _dots(h, w, rng.uniform(0, h, n_pores), rng.uniform(0, w, n_pores), 0.6 * u + 0.2)
    # Follicle openings look lighter on some skin and darker on other skin.
    relief += pores * float(rng.choice((-1.0, 1.0)) * rng.uniform(0.03, 0.08))
    od = st.tint([redness, relief], [HAEMOGLOBIN_OD, (1.0, 1.0, 1.0)])
    mottle = 1.0 + 0.035 * st.noise_field(h, w, rng, 20 * u)
    grain = 1.0 + 0.012 * rng.standard_normal((h, w), np.float32)
    return np.asarray(_skin_tone(rng) * np.exp(-od) * (mottle * grain)[..., None], np.float32)


def _furrows(h: int, w: int, u: float, rng: np.random.Generator) -> FloatImage:
    """Two families of long thin skin furrows crossing at an angle (the skin's relief).

    Each family is ridged noise stretched along one axis, rotated by a random angle on a
    canvas large enough that the rotation never shows its corners.
    """
    side = int(np.ceil(np.hypot(h, w))) + 2
    out = np.zeros((h, w), np.float32)
    angle = float(rng.uniform(0, 180))
    for family in range(2):
        cell_across, cell_along = 3.5 * u + 1.0, 16 * u + 2.0
        grid = rng.standard_normal(
            (int(side / cell_across) + 2, int(side / cell_along) + 2)
        ).astype(np.float32)
        field = cv2.resize(grid, (side, side), interpolation=cv2.INTER_CUBIC)
        lines = _ridges(np.asarray(field, np.float32), 0.45)
        turn = angle + family * float(rng.uniform(50, 95))
        rot = np.asarray(cv2.getRotationMatrix2D((side / 2, side / 2), turn, 1), np.float64)
        rot[:, 2] -= np.array([(side - w) / 2, (side - h) / 2])
        out += cv2.warpAffine(lines, rot, (w, h), flags=cv2.INTER_LINEAR) * (1.0 - 0.4 * family)
    return out


# --- Lesions ----------------------------------------------------------------------------------


def _place_lesions(
    h: int, w: int, u: float, yy: FloatImage, xx: FloatImage, rng: np.random.Generator
) -> list[_Lesion]:
    """One lesion near the centre, or (20 %) two side by side; sized to a drawn total area."""
    two = rng.random() < 0.2
    lo, hi = AREA_RANGE
    # Two lesions may touch and lose a sliver to each other: keep them off the range ends.
    total = float(rng.uniform(lo + 0.03, (0.45 if two else hi - 0.04)))
    kinds = [NEVUS if rng.random() < 0.55 else MELANOMA]
    areas = [total]
    if two:
        share = float(rng.uniform(0.55, 0.75))
        areas = [total * share, total * (1 - share)]
        kinds.append(NEVUS if rng.random() < 0.5 else MELANOMA)
    radii = [float(np.sqrt(a * h * w / np.pi)) for a in areas]
    cy, cx = h / 2 + rng.normal(0, 0.05 * h), w / 2 + rng.normal(0, 0.05 * w)
    centres = [(cy, cx)]
    if two:
        phi = rng.uniform(0, 2 * np.pi)
        gap = (radii[0] + radii[1]) * 1.15
        w0, w1 = radii[1] / sum(radii), radii[0] / sum(radii)
        dy, dx = np.sin(phi) * gap, np.cos(phi) * gap
        centres = [(cy - dy * w0, cx - dx * w0), (cy + dy * w1, cx + dx * w1)]
    lesions = []
    for kind, area, radius, centre in zip(kinds, areas, radii, centres, strict=True):
        f = _shape_field(yy, xx, centre, radius, kind, u, rng)
        lesions.append(_Lesion(kind, _normalise_to_area(f, area), radius, centre))
    return lesions


def _shape_field(
    yy: FloatImage,
    xx: FloatImage,
    centre: tuple[float, float],
    radius: float,
    kind: int,
    u: float,
    rng: np.random.Generator,
) -> FloatImage:
    """Normalised radius of a blobby shape: an oval whose radius varies with the angle
    (random harmonics), plus a smooth noise warp for lobes and notches."""
    melanoma = kind == MELANOMA
    irregular = rng.uniform(0.18, 0.4) if melanoma else rng.uniform(0.03, 0.1)
    aspect = rng.uniform(1.0, 1.7 if melanoma else 1.4)
    a = rng.uniform(0, np.pi)
    x, y = xx - centre[1], yy - centre[0]
    xr = x * np.cos(a) + y * np.sin(a)
    yr = (y * np.cos(a) - x * np.sin(a)) * aspect
    theta = np.arctan2(yr, xr)
    r = np.ones_like(theta)
    for k in range(1 if melanoma else 2, 8):
        r += irregular * 0.6 * rng.normal() / k**0.9 * np.cos(k * theta + rng.uniform(0, 6.3))
    if melanoma and rng.random() < 0.45:
        # Radial streaks (pseudopods) along part of the border.
        sector = np.clip(np.cos(theta - rng.uniform(0, 6.3)), 0.0, 1.0) ** 3
        r += sector * 0.05 * np.cos(rng.integers(18, 32) * theta + rng.uniform(0, 6.3))
    d = np.hypot(xr, yr) / (radius * np.sqrt(aspect)) / np.maximum(r, 0.35)
    h, w = yy.shape
    warp = st.noise_field(h, w, rng, 0.7 * radius) * irregular * 0.3
    if melanoma:
        warp += st.noise_field(h, w, rng, 0.18 * radius + 1) * irregular * 0.12
    return np.asarray(d + warp, np.float32)


def _normalise_to_area(f: FloatImage, area: float) -> FloatImage:
    """Rescale ``f`` so that exactly ``area`` of the image has ``f < 1``."""
    flat = f.ravel()
    k = min(max(round(area * flat.size), 1), flat.size - 1)
    part = np.partition(flat, (k - 1, k))
    threshold = 0.5 * (float(part[k - 1]) + float(part[k]))
    return np.asarray(f / max(threshold, 1e-6), np.float32)


def _draw_lesion(
    img: FloatImage,
    lesion: _Lesion,
    own: npt.NDArray[np.bool_],
    u: float,
    yy: FloatImage,
    xx: FloatImage,
    rng: np.random.Generator,
) -> None:
    """Absorb light by the lesion's pigments (in place), then add its whitish structures."""
    h, w = lesion.f.shape
    coverage = _coverage(lesion, u, rng) * own
    if lesion.kind == MELANOMA:
        mel, dermal, blood, veil, scar = _melanoma_pigment(lesion, u, yy, xx, rng)
    else:
        mel, dermal, blood = _nevus_pigment(lesion, u, rng)
        veil = scar = np.zeros((h, w), np.float32)
    # Fine granularity: real pigment is never a flat wash.
    mel = mel * (1.0 + float(rng.uniform(0.06, 0.18)) * st.noise_field(h, w, rng, 1.5 * u + 0.5))
    melanin_od = MELANIN_ODS[int(rng.integers(len(MELANIN_ODS)))]
    od = st.tint(
        [mel * coverage, dermal * coverage, blood * coverage],
        [melanin_od, DERMAL_MELANIN_OD, HAEMOGLOBIN_OD],
    )
    img *= np.exp(-od)
    haze = (veil + scar) * coverage
    if haze.any():
        img *= (1.0 - haze)[..., None]
        img += st.tint([veil * coverage, scar * coverage], [VEIL_RGB, SCAR_RGB])


def _coverage(lesion: _Lesion, u: float, rng: np.random.Generator) -> FloatImage:
    """0..1 pigment coverage across the border; exactly 0.5 where ``f == 1``.

    Edges are sharp (about a pixel) or fuzzy (a tenth of the radius); melanoma-like
    edges change from sharp to fuzzy along the border.
    """
    h, w = lesion.f.shape
    if rng.random() < 0.5:
        edge = float(rng.uniform(0.6, 1.5)) * u
    else:
        edge = float(rng.uniform(0.05, 0.14)) * lesion.radius
    edge_map = np.full((h, w), edge, np.float32)
    if lesion.kind == MELANOMA:
        edge_map *= np.exp(0.8 * st.noise_field(h, w, rng, 0.6 * lesion.radius))
    # (1 - f) * radius is about the distance to the border in px.
    return _smoothstep(0.5 + (1.0 - lesion.f) * lesion.radius / edge_map)


def _nevus_pigment(
    lesion: _Lesion, u: float, rng: np.random.Generator
) -> tuple[FloatImage, FloatImage, FloatImage]:
    """Melanin, dermal melanin and blood of a benign-looking lesion: even brown, regular
    structure (homogeneous, a fine regular network, or regular globules)."""
    h, w = lesion.f.shape
    inner = np.clip(1.0 - lesion.f, 0.0, 1.0)
    base = float(rng.uniform(0.35, 1.3))
    # Most nevi are darker in the centre; some are darker at the rim.
    profile = 1.0 + float(rng.uniform(-0.25, 0.9)) * (inner - 0.3)
    mel = base * profile * (1.0 + 0.1 * st.noise_field(h, w, rng, 0.5 * lesion.radius))
    pattern = rng.choice(3, p=(0.45, 0.25, 0.3))  # network, globules, homogeneous
    if pattern == 0:
        net = _network(h, w, rng, float(rng.uniform(3.0, 5.0)) * u + 1.0, 0.42)
        # A benign network is most visible in the middle and fades out towards the rim.
        strength = float(rng.uniform(0.25, 0.5)) * (0.4 + 0.6 * _smoothstep(inner * 4.0))
        mel *= (1.0 - strength) + strength * net
    elif pattern == 1:
        n = int(lesion.radius**2 / (rng.uniform(14, 30) * u * u + 1))
        ys, xs = _sample_inside(lesion.f < 0.85, n, rng)
        mel += base * float(rng.uniform(0.5, 1.0)) * _dots(h, w, ys, xs, 1.1 * u + 0.3)
    dermal = np.zeros((h, w), np.float32)
    if rng.random() < 0.12:  # a faint blue-grey tint of deeper pigment
        dermal += float(rng.uniform(0.15, 0.4)) * inner**0.5
    blood = np.full((h, w), float(rng.uniform(0.0, 0.25)), np.float32)
    return np.asarray(np.maximum(mel, 0.3 * base), np.float32), dermal, blood


def _melanoma_pigment(
    lesion: _Lesion, u: float, yy: FloatImage, xx: FloatImage, rng: np.random.Generator
) -> tuple[FloatImage, FloatImage, FloatImage, FloatImage, FloatImage]:
    """Pigments of a malignant-looking lesion: uneven, asymmetric, several colours.

    Returns melanin, dermal melanin, blood, blue-white veil and whitish scar maps.
    """
    h, w = lesion.f.shape
    r = lesion.radius
    inner = np.clip(1.0 - lesion.f, 0.0, 1.0)
    base = float(rng.uniform(0.9, 1.7))
    mel = base * (1.0 + 0.45 * st.noise_field(h, w, rng, 0.45 * r))
    # Asymmetry: one side darker than the other.
    phi = rng.uniform(0, 2 * np.pi)
    side = ((xx - lesion.centre[1]) * np.cos(phi) + (yy - lesion.centre[0]) * np.sin(phi)) / r
    mel *= 1.0 + float(rng.uniform(0.1, 0.45)) * np.clip(side, -1.0, 1.0)
    blotch = _smoothstep(st.noise_field(h, w, rng, 0.4 * r) * 1.5 - 0.3)
    mel += float(rng.uniform(0.8, 2.2)) * blotch * (inner > 0.05)
    if rng.random() < 0.5:  # atypical network: thick, uneven, broken lines
        net = _network(h, w, rng, float(rng.uniform(4.0, 7.0)) * u + 1.0, 0.5)
        net *= np.clip(st.noise_field(h, w, rng, 0.3 * r) + 0.6, 0.0, 1.5)
        mel *= 0.6 + 0.4 * net
    if rng.random() < 0.7:  # irregular dark dots and globules, mostly near the border
        rim = (lesion.f > 0.55) & (lesion.f < 1.02)
        ys, xs = _sample_inside(rim, int(rng.integers(6, 30)), rng)
        mel += float(rng.uniform(1.0, 2.5)) * _dots(h, w, ys, xs, float(rng.uniform(0.7, 1.6)) * u)
    dermal = np.zeros((h, w), np.float32)
    veil = np.zeros((h, w), np.float32)
    scar = np.zeros((h, w), np.float32)
    if rng.random() < 0.55:  # blue-white veil
        area = _smoothstep(st.noise_field(h, w, rng, 0.5 * r) * 0.8 - 0.1) * _smoothstep(inner * 5)
        dermal += float(rng.uniform(0.4, 1.0)) * area
        veil += float(rng.uniform(0.06, 0.2)) * area
    if rng.random() < 0.25:  # regression: whitish scar-like areas peppered with grey dots
        area = _smoothstep(st.noise_field(h, w, rng, 0.35 * r) * 1.0 - 0.6) * _smoothstep(inner * 5)
        mel *= 1.0 - 0.6 * area
        scar += float(rng.uniform(0.2, 0.4)) * area
        ys, xs = _sample_inside(area > 0.3, int(r * r / (6 * u * u + 1)), rng)
        dermal += 0.8 * _dots(h, w, ys, xs, 0.5 * u + 0.2)
    blood = np.full((h, w), float(rng.uniform(0.0, 0.35)), np.float32)
    if rng.random() < 0.25:  # pink, vascular areas
        blood += float(rng.uniform(0.4, 0.9)) * _smoothstep(st.noise_field(h, w, rng, 0.4 * r))
    mel = np.maximum(mel, 0.35 * base)
    return np.asarray(mel, np.float32), dermal, blood, veil, scar


# --- Hairs, bubbles, optics -----------------------------------------------------------------


def _supersample(u: float) -> int:
    """Hairs and bubbles are drawn this many times larger and averaged down, so that lines
    thinner than a pixel keep their true weight (4x at up to 128 px, 1x from 512 px)."""
    return int(np.clip(round(4.0 / u), 1, 4))


def _hair_od(h: int, w: int, u: float, rng: np.random.Generator) -> FloatImage:
    """Optical density of hairs: thin dark curves crossing the image, lesion included."""
    n = 0 if rng.random() < 0.4 else int(rng.integers(1, 7))
    if rng.random() < 0.12:
        n = int(rng.integers(12, 30))  # a hairy patch
    if n == 0:
        return np.zeros((h, w, 3), np.float32)
    ss = _supersample(u)
    canvas = np.zeros((h * ss, w * ss), np.uint8)
    t = np.linspace(0.0, 1.0, 32)
    for _ in range(n):
        length = float(rng.uniform(0.3, 1.3)) * max(h, w)
        start = rng.uniform(-0.1, 1.1, 2) * (w, h)
        turn = rng.uniform(0, 2 * np.pi) + rng.normal(0, 0.9) * t + rng.normal(0, 0.7) * t * t
        steps = np.stack([np.cos(turn), np.sin(turn)], 1) * (length / (t.size - 1))
        points = start + np.cumsum(steps, axis=0)
        width = float(rng.uniform(0.5, 1.5)) * max(u, 0.4)
        darkness = int(255 * rng.uniform(0.65, 1.0))
        fixed = np.round(points * ss * 16).astype(np.int32)  # 4 fractional bits (shift=4)
        cv2.polylines(canvas, [fixed], False, darkness, max(1, round(width * ss)), cv2.LINE_AA, 4)
    cover = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return st.tint([cover * float(rng.uniform(0.9, 1.6))], [HAIR_OD])


def _bubbles(img: FloatImage, u: float, rng: np.random.Generator) -> FloatImage:
    """Air bubbles in the immersion fluid: bright rings with a thin dark outer line and a
    small highlight."""
    h, w = img.shape[:2]
    n = 0 if rng.random() < 0.45 else int(rng.poisson(2.5)) + 1
    cluster = rng.random() < 0.1
    if cluster:
        n += int(rng.integers(6, 20))
    if n == 0:
        return img
    ss = _supersample(u)
    bright = np.zeros((h * ss, w * ss), np.uint8)
    dark = np.zeros_like(bright)
    hub = rng.uniform(0.15, 0.85, 2) * (w, h)
    for i in range(n):
        small = cluster and i >= n - 20
        radius = float(rng.uniform(1.0, 3.0) if small else rng.uniform(1.5, 7.0)) * u + 0.5
        c = hub + rng.normal(0, 8 * u, 2) if small else rng.uniform(0, 1, 2) * (w, h)
        ring = max(0.4, float(rng.uniform(0.3, 0.7)) * u)
        cf = np.round(c * ss * 16).astype(int)
        rf = int(radius * ss * 16)
        cv2.circle(bright, (int(cf[0]), int(cf[1])), rf, 45, -1, cv2.LINE_AA, 4)
        cv2.circle(
            bright, (int(cf[0]), int(cf[1])), rf, 255, max(1, round(ring * ss)), cv2.LINE_AA, 4
        )
        cv2.circle(
            dark,
            (int(cf[0]), int(cf[1])),
            rf + int(ring * ss * 16),
            200,
            max(1, ss // 2),
            cv2.LINE_AA,
            4,
        )
        spot = np.round((c - 0.35 * radius) * ss * 16).astype(int)
        cv2.circle(
            bright, (int(spot[0]), int(spot[1])), int(0.22 * rf) + 8, 255, -1, cv2.LINE_AA, 4
        )
    shrink = (w, h)
    b = cv2.resize(bright, shrink, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    d = cv2.resize(dark, shrink, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    img = img * (1.0 - 0.35 * d)[..., None]
    return np.asarray(img + (1.0 - img) * (0.85 * b)[..., None], np.float32)


def _optics(
    img: FloatImage, u: float, yy: FloatImage, xx: FloatImage, rng: np.random.Generator
) -> FloatImage:
    """Dermoscope and camera: lamp gradient, round field stop (dark corners), focus, colour
    balance and sensor noise."""
    h, w = img.shape[:2]
    cy, cx = h / 2 + rng.normal(0, 0.03 * h), w / 2 + rng.normal(0, 0.03 * w)
    rho = np.hypot(yy - cy, xx - cx) / (0.5 * np.hypot(h, w))  # 1 at the corners
    field_stop = float(rng.uniform(0.68, 0.92))
    outside = _smoothstep((rho - field_stop) / float(rng.uniform(0.04, 0.16)))
    inside = 1.0 - float(rng.uniform(0.05, 0.2)) * (rho / field_stop) ** 2
    phi = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - cx) * np.cos(phi) + (yy - cy) * np.sin(phi)) / (0.5 * min(h, w))
    inside *= 1.0 + float(rng.uniform(0.0, 0.1)) * ramp
    gain = inside * (1.0 - outside) + float(rng.uniform(0.02, 0.1)) * outside
    img = img * gain[..., None]
    img = np.asarray(cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, 0.7)) * u), np.float32)
    img *= np.asarray(rng.uniform(0.93, 1.05) * (1.0 + rng.normal(0, 0.025, 3)), np.float32)
    img += float(rng.uniform(0.004, 0.012)) * rng.standard_normal(img.shape, np.float32)
    return img


# --- Dataset writing --------------------------------------------------------------------------


def _image_rng(seed: int, split_index: int, index: int) -> np.random.Generator:
    """Independent generator per image, so an image never depends on generation order."""
    return np.random.default_rng(np.random.SeedSequence([_STREAM_TAG, seed, split_index, index]))


def _validate(counts: dict[str, int], seed: int) -> None:
    """Reject arguments that would write nothing useful, before touching the disk."""
    if counts["train"] < 1:
        raise DataError(
            f"train must be at least 1, got {counts['train']}", where="train", hint="e.g. 200"
        )
    for split in ("val", "test"):
        if counts[split] < 0:
            raise DataError(
                f"{split} must be 0 or more, got {counts[split]}", where=split, hint="e.g. 50"
            )
    if seed < 0:
        raise DataError(f"seed must be 0 or more, got {seed}", where="seed", hint="e.g. 0")


def _write_split(
    root: Path,
    split_index: int,
    n: int,
    shape: tuple[int, int],
    seed: int,
    multiclass: bool,
    tally: npt.NDArray[np.int64],
) -> None:
    """Render and save ``n`` image/mask pairs; adds pixel and lesion counts to ``tally``
    (row 0: pixels of background, nevus, melanoma; row 1: lesions of each kind)."""
    split = SPLITS[split_index]
    img_dir, label_dir = root / "img" / split, root / "labels" / split
    img_dir.mkdir(parents=True)
    label_dir.mkdir(parents=True)
    for i in range(n):
        image, kinds = render_lesion_image(_image_rng(seed, split_index, i), size=shape)
        tally[0] += np.bincount(kinds.ravel(), minlength=3)[:3]
        tally[1, np.unique(kinds)] += 1
        mask = kinds if multiclass else (kinds > 0).astype(np.uint8)
        stem = f"{split}_{i:04d}"  # unique across splits, so an exclude list by stem is exact
        write_image(
            img_dir / f"{stem}{IMG_SUFFIX}", image, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]
        )
        write_image(label_dir / f"{stem}{MASK_SUFFIX}", mask, [cv2.IMWRITE_PNG_COMPRESSION, 6])


def _readme(summary: LesionSummary, seed: int, shape: tuple[int, int]) -> str:
    """Human-readable description written next to the data."""
    lines = [
        "Synthetic dermoscopy lesions generated by mediscope (mediscope.data.synthetic.lesions).",
        "",
        "PH2-like dermoscopy images of pigmented skin lesions with segmentation masks.",
        "Images are synthetic; do not use them for clinical decisions.",
        "",
        f"Layout: img/<split>/<split>_NNNN{IMG_SUFFIX} (RGB JPEG) and "
        f"labels/<split>/<split>_NNNN{MASK_SUFFIX}",
        "(single-channel class indices, classes in classes.txt: "
        + ", ".join(f"{i} {c}" for i, c in enumerate(summary.classes))
        + ").",
        f"seed: {seed}",
        f"image size: {shape[0]}x{shape[1]} px (height x width)",
        "images: " + ", ".join(f"{k}={v}" for k, v in summary.counts.items()),
        "pixel shares: " + ", ".join(f"{k}={v:.4f}" for k, v in summary.pixel_shares.items()),
    ]
    return "\n".join(lines) + "\n"


def generate_lesions(
    dst: str | Path,
    *,
    train: int = 200,
    val: int = 50,
    test: int = 50,
    size: int | tuple[int, int] = 128,
    seed: int = 0,
    multiclass: bool = False,
    overwrite: bool = False,
) -> LesionSummary:
    """Write a segmentation dataset of synthetic dermoscopy lesions (MMSeg layout).

    Layout: ``dst/img/<split>/<split>_NNNN.jpg`` (RGB, JPEG quality 95) and
    ``dst/labels/<split>/<split>_NNNN.png`` (single-channel class indices) for the splits
    ``train``, ``val`` and ``test`` (a split of 0 images is not written), plus
    ``dst/classes.txt`` and ``dst/README.txt``. Binary masks hold 0 background and 1
    lesion; with ``multiclass`` 0 background, 1 nevus-like, 2 melanoma-like lesion. The
    images are the same either way. Lesions cover about 10-60 % of an image.

    The same seed always gives byte-identical files, and image ``i`` of a split does not
    depend on how many images are generated. Everything is written to a hidden sibling
    folder first and then renamed, so a failed run never leaves a half-written ``dst``.

    Args:
        dst: Destination folder; created if missing.
        train: Training images (at least 1).
        val: Validation images (0 or more).
        test: Test images (0 or more).
        size: Image side in px, or ``(height, width)``; at least 16.
        seed: Non-negative random seed.
        multiclass: Label nevus-like and melanoma-like lesions as classes 1 and 2.
        overwrite: Replace a non-empty ``dst``.

    Returns:
        The dataset root, classes, images per split, class pixel shares and lesion counts.

    Raises:
        DataError: On invalid arguments, or if ``dst`` is non-empty and not ``overwrite``.

    Example:
        >>> summary = generate_lesions("data/lesions", train=20, val=5, test=5, size=64)
        >>> summary.counts
        {'train': 20, 'val': 5, 'test': 5}
    """
    wanted = {"train": train, "val": val, "test": test}
    _validate(wanted, seed)
    shape = _shape(size)
    root = Path(dst)
    target = root.expanduser().resolve()  # "." or "data/" must still have a name and a parent
    classes = MULTICLASS_LESION_CLASSES if multiclass else LESION_CLASSES
    tally = np.zeros((2, 3), np.int64)
    with staged_dir(target, overwrite=overwrite) as tmp:
        for split_index, split in enumerate(SPLITS):
            if wanted[split] > 0:
                _write_split(tmp, split_index, wanted[split], shape, seed, multiclass, tally)
        summary = _summary(root, classes, wanted, tally)
        (tmp / "classes.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
        (tmp / "README.txt").write_text(_readme(summary, seed, shape), encoding="utf-8")
    return summary


def _summary(
    root: Path, classes: tuple[str, ...], wanted: dict[str, int], tally: npt.NDArray[np.int64]
) -> LesionSummary:
    pixels, lesions = tally[0], tally[1]
    if len(classes) == 2:  # binary: nevus and melanoma pixels are both "lesion"
        pixels = np.array([pixels[0], pixels[1:].sum()])
        lesions = np.array([0, lesions[1:].sum()])
    total = max(int(pixels.sum()), 1)
    return LesionSummary(
        root=root,
        classes=classes,
        counts={k: v for k, v in wanted.items() if v > 0},
        pixel_shares={c: int(pixels[i]) / total for i, c in enumerate(classes)},
        lesions={c: int(lesions[i]) for i, c in enumerate(classes) if i > 0},
    )
