"""Drawing primitives for synthetic Gram-stained smear images.

The images are modelled the way a bright-field microscope forms them: a lamp lights the
slide and every stained structure absorbs part of that light following the Beer-Lambert
law. A canvas is therefore a float32 ``H x W x 3`` RGB image of *transmitted light*
(about 0..1), and drawing an object multiplies the canvas by ``exp(-optical_density)``.
This gives, for free, darker thick centres, darker overlaps and hues that come from the
dye rather than from a flat hand-picked colour.

Every organism drawer (:func:`draw_coccus`, :func:`draw_rod`) draws in place onto a given
canvas and returns an :class:`ObjectMark` (binary mask and bounding box), so the same
primitives serve both the classification crops and a full-smear detection generator.
Sizes are in pixels; ``px_per_um`` converts microscope units where it matters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

RGB = tuple[float, float, float]
FloatImage = npt.NDArray[np.float32]
BoolMask = npt.NDArray[np.bool_]
Box = tuple[int, int, int, int]
"""Pixel box ``(x_min, y_min, x_max, y_max)``; the max edges are exclusive."""


# --- Palettes ---------------------------------------------------------------------------
# Optical densities (per channel, R G B) at unit thickness. Crystal violet absorbs
# yellow-green-red light and looks violet/navy; safranin absorbs green and looks red-pink.
CRYSTAL_VIOLET_OD: Final[RGB] = (0.95, 1.20, 0.38)
SAFRANIN_OD: Final[RGB] = (0.10, 0.95, 0.55)
# In-focus bacterial walls refract light away from the objective: a dark, slightly
# blue-grey rim around the cell, as in the reference micrographs.
EDGE_OD: Final[RGB] = (0.85, 0.75, 0.45)
# Just outside the wall the same refraction throws a faint bright, bluish-white halo.
# Negative optical density = brighter than the surrounding background.
HALO_OD: Final[RGB] = (-0.06, -0.10, -0.16)

# Lamp colours after the camera's (imperfect) white balance.
LAMP_TINTS: Final[tuple[RGB, ...]] = (
    (0.94, 0.93, 0.92),  # neutral grey-white
    (0.98, 0.91, 0.93),  # warm pink
    (0.94, 0.90, 0.97),  # lilac
    (0.91, 0.90, 0.87),  # dim, greyish-beige
    (0.97, 0.94, 0.96),  # bright, almost white
)
# Mucus and proteinaceous background take up the counterstain weakly.
MUCUS_OD_PALETTE: Final[tuple[RGB, ...]] = (
    (0.02, 0.22, 0.14),  # pale pink
    (0.03, 0.30, 0.26),  # salmon pink
    (0.05, 0.07, 0.09),  # grey, barely stained
    (0.08, 0.26, 0.10),  # lilac
    (0.12, 0.50, 0.24),  # magenta
)
# Thick smear areas soak up both dyes: dark magenta-purple background.
THICK_SMEAR_OD: Final[RGB] = (0.18, 0.52, 0.28)
# Refractile particles act as tiny lenses: brighter and greener than the pink mucus.
REFRACTILE_OD: Final[RGB] = (-0.05, -0.13, -0.07)
HOST_CYTOPLASM_OD_PALETTE: Final[tuple[RGB, ...]] = (
    (0.06, 0.30, 0.14),  # pale pink epithelial cytoplasm
    (0.14, 0.32, 0.10),  # lilac
    (0.10, 0.42, 0.18),  # deeper pink
)
HOST_NUCLEUS_OD: Final[RGB] = (0.40, 0.62, 0.22)
DEBRIS_OD_PALETTE: Final[tuple[RGB, ...]] = (
    (0.35, 0.38, 0.36),  # grey dust
    (0.22, 0.32, 0.52),  # yellow-brown particles
    (0.10, 0.55, 0.32),  # pink clumps
    (0.45, 0.65, 0.22),  # violet stain precipitate (a classic Gram confounder)
)


@dataclass(frozen=True)
class Stain:
    """How one organism takes up the stain and how it is imaged.

    Attributes:
        od: Optical density per channel at unit thickness (the dye colour).
        density: Multiplier of ``od`` in the thickest part of the cell.
        rim: Strength of the dark refractile rim at the cell wall.
        halo: Strength of the bright halo just outside the wall.
        defocus: Gaussian blur sigma (px) of this object, for cells outside the focal plane.
        mottle: Relative amplitude of uneven dye uptake inside the cell (needs an ``rng``).
    """

    od: RGB
    density: float = 1.4
    rim: float = 0.5
    halo: float = 0.5
    defocus: float = 0.0
    mottle: float = 0.0


@dataclass(frozen=True)
class ObjectMark:
    """Where a drawn object ended up on the canvas.

    Attributes:
        mask: ``H x W`` boolean mask of the object body (half-coverage threshold).
        box: Bounding box of ``mask`` or ``None`` if the object fell outside the canvas.
    """

    mask: BoolMask
    box: Box | None


def mix_rgb(a: RGB, b: RGB, t: float) -> RGB:
    """Linear interpolation ``(1 - t) * a + t * b`` of two colour triplets."""
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def gram_stain(gram_positive: bool, rng: np.random.Generator, *, spread: float = 1.0) -> Stain:
    """Draw a realistic, imperfect Gram stain for one organism (or group).

    Args:
        gram_positive: Crystal violet (True) or safranin (False) as the dominant dye.
        rng: Random generator.
        spread: Scales how far stains drift towards the other dye (0 = textbook colours).

    Returns:
        A :class:`Stain` with random density, rim, halo and defocus.
    """
    primary, other = (
        (CRYSTAL_VIOLET_OD, SAFRANIN_OD) if gram_positive else (SAFRANIN_OD, CRYSTAL_VIOLET_OD)
    )
    # Over-decolourised Gram-positives turn lilac and under-decolourised Gram-negatives keep
    # some violet, so a random fraction of the other dye is mixed in; rarely a lot of it.
    mix = rng.beta(1.2, 7.0) if rng.random() > 0.12 else rng.uniform(0.2, 0.45)
    return Stain(
        od=mix_rgb(primary, other, float(mix * spread)),
        density=float(rng.uniform(1.0, 2.2)),
        rim=float(rng.uniform(0.1, 1.4)),
        halo=float(rng.uniform(0.0, 0.8)),
        defocus=float(rng.uniform(0.3, 1.5)) if rng.random() < 0.4 else 0.0,
        mottle=float(rng.uniform(0.0, 0.3)),
    )


# --- Noise fields and background ------------------------------------------------------------


def _f32(array: npt.ArrayLike) -> FloatImage:
    """View as float32 (no copy if it already is); also pins the type for mypy after cv2."""
    return np.asarray(array, dtype=np.float32)


def _blur(image: npt.NDArray[np.float32], sigma: float) -> FloatImage:
    """Gaussian blur with the kernel size derived from sigma."""
    return _f32(cv2.GaussianBlur(image, (0, 0), sigma))


def tint(fields: list[FloatImage], colours: list[RGB], offset: RGB | None = None) -> FloatImage:
    """``sum_i fields[i] * colours[i] (+ offset)`` as an ``H x W x 3`` image.

    Done with ``cv2.transform`` because numpy broadcasting over a trailing axis of length 3
    is several times slower, and this runs for every object of every image.

    Args:
        fields: Up to 4 same-shaped float32 ``H x W`` maps.
        colours: One RGB triplet per field.
        offset: Constant RGB added to every pixel.

    Returns:
        Float32 ``H x W x 3`` image.
    """
    m = np.asarray(colours, np.float32).T
    if offset is not None:
        m = np.concatenate([m, np.asarray(offset, np.float32)[:, None]], axis=1)
    src = fields[0] if len(fields) == 1 else cv2.merge(fields)
    return _f32(cv2.transform(src.astype(np.float32, copy=False), m))


def noise_field(height: int, width: int, rng: np.random.Generator, cell: float) -> FloatImage:
    """Smooth random field with unit-ish variance and features about ``cell`` px wide.

    Built by bicubic upsampling of white noise on a coarse grid, which is far cheaper than
    filtering a full-resolution image and gives blobby, organic structures.
    """
    cell = max(cell, 1.0)
    grid_h, grid_w = int(np.ceil(height / cell)) + 1, int(np.ceil(width / cell)) + 1
    grid = rng.standard_normal((grid_h, grid_w)).astype(np.float32)
    return _f32(cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC))


def squiggles(height: int, width: int, rng: np.random.Generator, px_per_um: float) -> FloatImage:
    """Short thin worm-like fibres (0..1), the typical texture of mucus and fibrin.

    Ridged noise (values near the zero crossings of a smooth field) forms a network of thin
    lines; a second, coarser field gates it into separate fragments.
    """
    ridge = np.clip(1.0 - np.abs(noise_field(height, width, rng, 0.5 * px_per_um)) * 1.6, 0.0, 1.0)
    gate = np.clip(noise_field(height, width, rng, 0.6 * px_per_um) * 1.5 + 0.2, 0.0, 1.0)
    return ridge * ridge * gate


def make_background(
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    px_per_um: float = 12.0,
    busyness: float | None = None,
) -> FloatImage:
    """Pale pink/lilac/grey smear background with mucus texture and refractile specks.

    Args:
        height: Canvas height in px.
        width: Canvas width in px.
        rng: Random generator.
        px_per_um: Pixels per micrometre; sets the size of the texture grains.
        busyness: 0 (clean) .. 1 (dense granular mucus); random if None.

    Returns:
        Float32 RGB canvas of transmitted light.
    """
    busy = float(rng.uniform(0.15, 1.0) ** 0.6) if busyness is None else busyness
    lamp = np.asarray(LAMP_TINTS[rng.integers(len(LAMP_TINTS))], np.float32)
    lamp = lamp + rng.normal(0.0, 0.012, 3).astype(np.float32)
    pal = MUCUS_OD_PALETTE
    mucus_od = mix_rgb(pal[rng.integers(len(pal))], pal[rng.integers(len(pal))], rng.random())
    # The smear is thicker in some places than others: low-frequency density variation.
    coarse = 0.7 * noise_field(height, width, rng, 6 * px_per_um)
    coarse += 0.3 * noise_field(height, width, rng, 1.5 * px_per_um)
    thickness = rng.uniform(0.3, 1.3)
    if rng.random() < 0.07:
        mucus_od, thickness = THICK_SMEAR_OD, rng.uniform(1.5, 3.2)
    density = np.clip(0.6 + 0.45 * coarse, 0.0, None) * np.float32(thickness)
    # Fine granules of condensed mucus: the low-contrast "orange peel" of real smears.
    gran = noise_field(height, width, rng, rng.uniform(0.2, 0.35) * px_per_um)
    density += np.clip(gran - 0.5, 0.0, 1.0) * np.float32(0.6 * busy)
    # Fibres and specks are mostly refractile (whitish-green, brighter than the mucus),
    # sometimes stained (darker pink); the mix varies between smears.
    fibres = squiggles(height, width, rng, px_per_um)
    fibres += np.clip(noise_field(height, width, rng, 0.3 * px_per_um) - 1.0, 0.0, 1.0)
    bright = fibres * np.float32(busy * 2.5 * rng.uniform(0.4, 1.0))
    # Refraction also leaves a darker shadow beside each bright fibre (as in the references).
    density += np.roll(fibres, (1, 1), axis=(0, 1)) * np.float32(busy * 1.2)
    # Transmitted light = lamp * exp(-od) = exp(-(od - log(lamp))).
    log_lamp = np.log(np.clip(lamp, 1e-3, None))
    offset = (-float(log_lamp[0]), -float(log_lamp[1]), -float(log_lamp[2]))
    od = tint([density, bright], [mucus_od, REFRACTILE_OD], offset=offset)
    return np.exp(-od)


# --- Organisms ------------------------------------------------------------------------------


def _patch(
    shape: tuple[int, ...], center: tuple[float, float], reach: float
) -> tuple[slice, slice] | None:
    """Rows/cols slices of the square window of half-size ``reach`` clipped to the canvas."""
    x0 = max(0, int(np.floor(center[0] - reach)))
    y0 = max(0, int(np.floor(center[1] - reach)))
    x1 = min(shape[1], int(np.ceil(center[0] + reach)) + 1)
    y1 = min(shape[0], int(np.ceil(center[1] + reach)) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


def _local_coords(
    rows: slice, cols: slice, center: tuple[float, float], angle: float
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Pixel-centre coordinates of a window, rotated into the object's frame (u along axis)."""
    ys = np.arange(rows.start, rows.stop, dtype=np.float32)[:, None] + 0.5 - center[1]
    xs = np.arange(cols.start, cols.stop, dtype=np.float32)[None, :] + 0.5 - center[0]
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return _f32(xs * c + ys * s), _f32(ys * c - xs * s)


def _box_of(mask: BoolMask) -> Box | None:
    """Tight bounding box of a boolean mask, or None if it is empty."""
    ys = np.flatnonzero(mask.any(axis=1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(mask.any(axis=0))
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


def _stamp(
    canvas: FloatImage,
    window: tuple[slice, slice],
    sdf: npt.NDArray[np.float32],
    half_width: float,
    stain: Stain,
    rng: np.random.Generator | None,
) -> ObjectMark:
    """Absorb light in a window according to a signed distance field (negative inside)."""
    rows, cols = window
    hw = max(half_width, 0.75)
    depth = np.clip(-sdf / hw, 0.0, 1.0)
    # A sphere or cylinder seen from above is thickest on its axis.
    thickness = np.sqrt(depth * (2.0 - depth))
    coverage = np.clip(0.5 - sdf, 0.0, 1.0)  # one-pixel anti-aliased edge
    body = coverage * (0.45 + 0.55 * thickness) * stain.density
    if rng is not None and stain.mottle > 0:
        # Uneven uptake (granules, beading, septa) keeps cells from looking flat-filled.
        grain = noise_field(sdf.shape[0], sdf.shape[1], rng, max(1.0, 0.7 * hw))
        body *= np.clip(1.0 + stain.mottle * grain, 0.3, None)
    rim = coverage * np.exp(-(((sdf + 0.3 * hw) / (0.3 * hw)) ** 2)) * stain.rim
    halo = np.exp(-(((sdf - 0.7 * hw) / (0.45 * hw)) ** 2)) * stain.halo
    od = tint([body, rim, halo], [stain.od, EDGE_OD, HALO_OD])
    if stain.defocus > 0.25:
        od = _blur(od, stain.defocus)
    canvas[rows, cols] *= np.exp(-od)
    mask = np.zeros(canvas.shape[:2], dtype=bool)
    mask[rows, cols] = coverage >= 0.5
    return ObjectMark(mask=mask, box=_box_of(mask))


def _empty_mark(canvas: FloatImage) -> ObjectMark:
    return ObjectMark(mask=np.zeros(canvas.shape[:2], dtype=bool), box=None)


def draw_coccus(
    canvas: FloatImage,
    center: tuple[float, float],
    radius: float,
    stain: Stain,
    *,
    angle: float = 0.0,
    aspect: float = 1.0,
    rng: np.random.Generator | None = None,
) -> ObjectMark:
    """Draw one coccus (a soft, slightly elliptical sphere) in place.

    Args:
        canvas: Float RGB canvas, modified in place.
        center: ``(x, y)`` centre in px.
        radius: Mean radius in px.
        stain: Dye, density, rim, halo and defocus.
        angle: Orientation (radians) of the ellipse's long axis.
        aspect: Long/short axis ratio (1 = round; diplococci are slightly flattened).
        rng: Needed only for ``stain.mottle`` (uneven staining inside the cell).

    Returns:
        Mask and box of the cell body.
    """
    a, b = radius * np.sqrt(aspect), radius / np.sqrt(aspect)
    window = _patch(canvas.shape, center, a + 1.5 * radius + 3 * stain.defocus + 2)
    if window is None:
        return _empty_mark(canvas)
    u, v = _local_coords(*window, center, angle)
    # Cheap ellipse distance; exact enough for the mild eccentricities used here.
    sdf = (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1.0) * np.float32(b)
    return _stamp(canvas, window, sdf, b, stain, rng)


def draw_rod(
    canvas: FloatImage,
    center: tuple[float, float],
    length: float,
    width: float,
    stain: Stain,
    *,
    angle: float = 0.0,
    curvature: float = 0.0,
    end_roundness: float = 1.0,
    rng: np.random.Generator | None = None,
) -> ObjectMark:
    """Draw one bacillus (a straight or gently curved rod with rounded or squarer ends).

    Args:
        canvas: Float RGB canvas, modified in place.
        center: ``(x, y)`` centre in px.
        length: End-to-end length in px (at least ``width``).
        width: Rod diameter in px.
        stain: Dye, density, rim, halo and defocus.
        angle: Orientation of the long axis in radians.
        curvature: Sag of the axis at the ends as a fraction of the half length (0 = straight).
        end_roundness: 1 gives hemispherical ends (capsule), ~0.3 squarish ends.
        rng: Needed only for ``stain.mottle`` (uneven staining inside the cell).

    Returns:
        Mask and box of the cell body.
    """
    hl, hw = max(length, width) / 2.0, width / 2.0
    window = _patch(
        canvas.shape, center, hl + 1.5 * hw + abs(curvature) * hl + 3 * stain.defocus + 2
    )
    if window is None:
        return _empty_mark(canvas)
    u, v = _local_coords(*window, center, angle)
    # Bend the frame instead of the shape: a parabolic axis is close to a real curved rod.
    v = v - np.float32(curvature / hl) * (u * u - np.float32(hl * hl / 3.0))
    r = np.float32(np.clip(end_roundness, 0.05, 1.0) * hw)
    qx, qy = np.abs(u) - np.float32(hl) + r, np.abs(v) - np.float32(hw) + r
    outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    sdf = outside + np.minimum(np.maximum(qx, qy), 0.0) - r
    return _stamp(canvas, window, sdf.astype(np.float32), hw, stain, rng)


# --- Arrangements ---------------------------------------------------------------------------

COCCI_ARRANGEMENTS: Final[tuple[str, ...]] = ("single", "pair", "chain", "cluster")
ROD_ARRANGEMENTS: Final[tuple[str, ...]] = ("single", "pair", "vee", "scatter")


def cocci_layout(kind: str, radius: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Centre offsets of the cocci of one group, relative to the group centre.

    Args:
        kind: One of :data:`COCCI_ARRANGEMENTS`.
        radius: Coccus radius in px (sets the spacing).
        rng: Random generator.

    Returns:
        ``(dx, dy)`` offsets, centred on the group's mean position.
    """
    theta = rng.uniform(0, 2 * np.pi)
    if kind == "single":
        pts = [(0.0, 0.0)]
    elif kind == "pair":
        d = radius * rng.uniform(1.0, 1.15)
        pts = [(-d * np.cos(theta), -d * np.sin(theta)), (d * np.cos(theta), d * np.sin(theta))]
    elif kind == "chain":
        pts = [(0.0, 0.0)]
        for _ in range(int(rng.integers(2, 4))):
            theta += rng.normal(0, 0.3)  # chains wander a little
            step = radius * rng.uniform(2.0, 2.3)
            pts.append((pts[-1][0] + step * np.cos(theta), pts[-1][1] + step * np.sin(theta)))
    elif kind == "cluster":
        pts = _grape_cluster(int(rng.integers(3, 6)), radius, rng)
    else:
        raise ValueError(
            f"unknown cocci arrangement {kind!r}; expected one of {COCCI_ARRANGEMENTS}"
        )
    arr = np.asarray(pts, dtype=np.float64)
    arr -= arr.mean(axis=0)
    return [(float(x), float(y)) for x, y in arr]


def _grape_cluster(
    count: int, radius: float, rng: np.random.Generator
) -> list[tuple[float, float]]:
    """Staphylococcus-like cluster: each new coccus leans on a random earlier one."""
    pts = [(0.0, 0.0)]
    for _ in range(40 * count):
        if len(pts) == count:
            break
        bx, by = pts[int(rng.integers(len(pts)))]
        phi = rng.uniform(0, 2 * np.pi)
        step = radius * rng.uniform(1.9, 2.2)
        cand = (bx + step * np.cos(phi), by + step * np.sin(phi))
        if all(np.hypot(cand[0] - x, cand[1] - y) > 1.65 * radius for x, y in pts):
            pts.append(cand)
    return pts


def rod_layout(
    kind: str, length: float, width: float, rng: np.random.Generator
) -> list[tuple[float, float, float]]:
    """Centres and angles of the rods of one group.

    Args:
        kind: One of :data:`ROD_ARRANGEMENTS`.
        length: Typical rod length in px.
        width: Rod width in px.
        rng: Random generator.

    Returns:
        ``(dx, dy, angle)`` per rod, offsets centred on the group's mean position.
    """
    theta = rng.uniform(0, np.pi)
    if kind == "single":
        rods = [(0.0, 0.0, theta)]
    elif kind == "pair":  # end to end, just after division, with a slight kink
        kink = theta + rng.normal(0, 0.2)
        gap = length + width * rng.uniform(0.05, 0.3)
        rods = [(0.0, 0.0, theta), (gap * np.cos(kink), gap * np.sin(kink), kink)]
    elif kind == "vee":  # snapping division (coryneform "V" / Chinese letters)
        spread = rng.uniform(0.5, 1.2)
        h = (length + width) / 2  # the two rods touch at the hinge instead of overlapping
        a1, a2 = theta - spread / 2, theta + spread / 2
        rods = [(h * np.cos(a1), h * np.sin(a1), a1), (h * np.cos(a2), h * np.sin(a2), a2)]
    elif kind == "scatter":
        rods = [(0.0, 0.0, theta)]
        for _ in range(int(rng.integers(1, 3))):
            phi = rng.uniform(0, 2 * np.pi)
            dist = rng.uniform(0.7, 1.1) * length + width
            rods.append((dist * np.cos(phi), dist * np.sin(phi), rng.uniform(0, np.pi)))
    else:
        raise ValueError(f"unknown rod arrangement {kind!r}; expected one of {ROD_ARRANGEMENTS}")
    mean = np.mean([r[:2] for r in rods], axis=0)
    return [(float(x - mean[0]), float(y - mean[1]), float(a)) for x, y, a in rods]


# --- Debris, host cells ---------------------------------------------------------------------


def draw_specks(
    canvas: FloatImage,
    rng: np.random.Generator,
    *,
    count: int,
    radius_px: tuple[float, float],
    density: tuple[float, float],
    blur_px: float,
    palette: tuple[RGB, ...] = DEBRIS_OD_PALETTE,
) -> None:
    """Scatter irregular small particles (debris, precipitate, out-of-focus blobs) in place.

    Args:
        canvas: Float RGB canvas, modified in place.
        rng: Random generator.
        count: Number of particles.
        radius_px: Range of particle radii in px.
        density: Range of optical-density multipliers.
        blur_px: Gaussian sigma applied to all particles (large = out of focus).
        palette: Optical-density colours to choose from.
    """
    if count <= 0:
        return
    h, w = canvas.shape[:2]
    od = np.zeros_like(canvas)
    shift = 4  # cv2 fixed-point: sub-pixel positions keep tiny specks from snapping to a grid
    one = 1 << shift
    for _ in range(count):
        colour = np.asarray(palette[rng.integers(len(palette))]) * rng.uniform(*density)
        r = rng.uniform(*radius_px)
        axes = (max(1, round(r * one)), max(1, round(r * rng.uniform(0.4, 1.0) * one)))
        centre = (round(rng.uniform(0, w) * one), round(rng.uniform(0, h) * one))
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(od, centre, axes, angle, 0, 360, colour.tolist(), -1, cv2.LINE_AA, shift)
    od = _blur(od, max(blur_px, 0.3))
    canvas *= np.exp(-od)


def draw_host_cell(
    canvas: FloatImage,
    rng: np.random.Generator,
    *,
    center: tuple[float, float],
    radius: float,
    nucleus: bool = True,
) -> BoolMask:
    """Draw a large pale host cell (epithelial cell or leukocyte fragment) in place.

    Args:
        canvas: Float RGB canvas, modified in place.
        rng: Random generator.
        center: ``(x, y)`` centre in px; may lie outside the canvas (fragment).
        radius: Mean radius in px.
        nucleus: Also draw a blurry purple nucleus.

    Returns:
        Boolean mask of the cell outline (useful to avoid or count overlaps).
    """
    h, w = canvas.shape[:2]
    n = 28
    phi = np.linspace(0, 2 * np.pi, n, endpoint=False)
    # Smooth radial wobble: a sum of a few low harmonics with random phases.
    wobble = sum(rng.normal(0, 0.08) * np.cos(k * phi + rng.uniform(0, 6.3)) for k in (2, 3, 5))
    rr = radius * (1.0 + wobble)
    pts = np.stack([center[0] + rr * np.cos(phi), center[1] + rr * np.sin(phi)], axis=1)
    shape = np.zeros((h, w), np.float32)
    cv2.fillPoly(shape, [np.round(pts * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    shape = _blur(shape, max(0.04 * radius, 0.6))
    texture = 1.0 + 0.35 * noise_field(h, w, rng, max(2.0, 0.08 * radius))
    cyto = HOST_CYTOPLASM_OD_PALETTE[rng.integers(len(HOST_CYTOPLASM_OD_PALETTE))]
    fields, colours = [shape * texture * np.float32(rng.uniform(0.5, 1.2))], [cyto]
    if nucleus:
        fields.append(_nucleus(h, w, rng, center, radius))
        colours.append(HOST_NUCLEUS_OD)
    canvas *= np.exp(-tint(fields, colours))
    return shape > 0.5


def _nucleus(
    h: int, w: int, rng: np.random.Generator, center: tuple[float, float], radius: float
) -> FloatImage:
    """Blurry oval nucleus somewhere inside a host cell."""
    nuc = np.zeros((h, w), np.float32)
    off = rng.normal(0, 0.2 * radius, 2)
    axes = (max(1, round(0.3 * radius * 16)), max(1, round(0.22 * radius * 16)))
    c = (round((center[0] + off[0]) * 16), round((center[1] + off[1]) * 16))
    cv2.ellipse(nuc, c, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA, 4)
    nuc = _blur(nuc, max(0.06 * radius, 0.8))
    return nuc * np.float32(rng.uniform(0.4, 1.0))


# --- Optics and camera ----------------------------------------------------------------------


def apply_illumination(
    image: FloatImage, rng: np.random.Generator, *, vignette: float = 0.3, gradient: float = 0.12
) -> FloatImage:
    """Uneven lamp: radial fall-off (vignetting) times a linear gradient and a brightness.

    Args:
        image: Float RGB image.
        rng: Random generator.
        vignette: Maximum relative darkening at the corners.
        gradient: Maximum relative brightness change across the image.

    Returns:
        The illuminated image (new array).
    """
    h, w = image.shape[:2]
    ys = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xs = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    cx, cy = rng.uniform(-0.6, 0.6, 2)
    r2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / 2.0
    phi = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(phi) * xs + np.sin(phi) * ys
    field = (1.0 - rng.uniform(0, vignette) * r2) * (1.0 + rng.uniform(0, gradient) * ramp)
    field *= rng.uniform(0.86, 1.08)
    field = field.astype(np.float32)
    return image * cv2.merge([field, field, field])


def chromatic_aberration(
    image: FloatImage, rng: np.random.Generator, *, max_shift: float
) -> FloatImage:
    """Shift red and blue in opposite directions: the coloured fringes of cheap objectives.

    Args:
        image: Float RGB image.
        rng: Random generator.
        max_shift: Largest shift of each of the red and blue planes, in px.

    Returns:
        The image with lateral colour fringes (new array).
    """
    h, w = image.shape[:2]
    shift = rng.uniform(0, max_shift)
    phi = rng.uniform(0, 2 * np.pi)
    dx, dy = shift * np.cos(phi), shift * np.sin(phi)
    out = image.copy()
    for ch, sign in ((0, 1.0), (2, -1.0)):
        m = np.array([[1, 0, sign * dx], [0, 1, sign * dy]], dtype=np.float32)
        out[..., ch] = cv2.warpAffine(image[..., ch], m, (w, h), borderMode=cv2.BORDER_REFLECT)
    return out


def apply_blur(image: FloatImage, sigma: float) -> FloatImage:
    """Whole-image defocus as a Gaussian blur (no-op for tiny sigmas)."""
    if sigma < 0.2:
        return image
    return _blur(image, sigma)


def jitter_colour(
    image: FloatImage, rng: np.random.Generator, *, strength: float = 1.0
) -> FloatImage:
    """Camera white-balance, saturation and gamma differences between images.

    Args:
        image: Float RGB image.
        rng: Random generator.
        strength: Scales all jitter amplitudes (0 = identity).

    Returns:
        The jittered image, clipped to [0, 1].
    """
    gains = np.diag(1.0 + strength * rng.normal(0, 0.03, 3))
    sat = 1.0 + strength * rng.normal(0, 0.1)
    # Saturation s around the channel mean: s * x + (1 - s) * mean(x); linear, so gains
    # and saturation fold into one 3x3 colour matrix.
    saturation = sat * np.eye(3) + (1.0 - sat) / 3.0 * np.ones((3, 3))
    out = cv2.transform(image, (saturation @ gains).astype(np.float32))
    gamma = np.float32(np.exp(strength * rng.normal(0, 0.08)))
    return np.clip(out, 0.0, 1.0) ** gamma


def add_sensor_noise(
    image: FloatImage, rng: np.random.Generator, *, read_sigma: float = 0.01, shot: float = 0.0004
) -> FloatImage:
    """Gaussian read noise plus signal-dependent shot noise.

    Args:
        image: Float RGB image in [0, 1].
        rng: Random generator.
        read_sigma: Standard deviation of signal-independent noise.
        shot: Variance per unit signal (Poisson-like).

    Returns:
        Noisy image (new array), not clipped.
    """
    sigma = np.sqrt(read_sigma**2 + shot * np.clip(image, 0.0, None))
    # Triangular noise (sum of two uniforms) with unit variance: looks Gaussian after
    # quantisation and is about twice as fast to draw as normal deviates.
    tri = rng.random(image.shape, dtype=np.float32) + rng.random(image.shape, dtype=np.float32)
    return image + sigma * ((tri - 1.0) * np.float32(np.sqrt(6.0)))


def to_uint8(image: FloatImage) -> npt.NDArray[np.uint8]:
    """Clip to [0, 1] and quantise to 8-bit."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
