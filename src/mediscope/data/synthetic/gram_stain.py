"""Synthetic Gram-stained smears with YOLO boxes: a 4-class detection dataset (study S1).

The images imitate the 640 px crops of the Clinical Bacteria DataSet (bright-field, oil
immersion, lower-respiratory samples): a pale pink, lilac or grey smear background with
mucus texture, uneven lamp light and camera noise, on which lie

- bacteria of the four classes: Gram-negative cocci (red-pink, mostly diplococci),
  Gram-positive cocci (violet, in pairs, chains and grape clusters), Gram-negative
  bacilli (red-pink rods) and Gram-positive bacilli (violet, thicker rods, sometimes
  square-ended or in "V" shapes); rods are straight or slightly curved and of varying
  length; cells touch and overlap;
- things that are *not* bacteria and never get a box: fine specks and out-of-focus blobs,
  crystal-violet precipitate (dark angular granules, the classic false positive),
  amorphous pink clumps, grey dust, and large pale host cells (neutrophils with lobed
  nuclei, mononuclear cells, squamous epithelial cells).

Light follows the Beer-Lambert model of :mod:`.stain` (the drawing primitives shared with
the Gram-crop generator). Within one image every class is one "strain" (one stain shade and
one cell size) and the classes come in an image-specific mix, as in a patient's smear.
About 8 % of the images hold no bacteria at all (negatives).

Box convention (as in the Clinical Bacteria DataSet, whose annotators boxed single
organisms): **one box per bacterial cell**. Each coccus of a pair, chain or cluster gets its
own box, and so does each rod of a pair or a "V". A box is the tight box of the drawn cell
body (the pixels the cell covers by at least half), grown by one pixel for the dark rim
and the blur, and clipped to the image. Cells more than about half outside the image are
not drawn, so every visible bacterium has a box.

Class shares over all boxes follow the real dataset: 3,371 : 1,462 : 5,799 : 1,192
(G-cocci, G+cocci, G-bacilli, G+bacilli).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from mediscope.data.images import write_image
from mediscope.data.label_text import label_lines
from mediscope.data.synthetic import stain as st
from mediscope.data.synthetic.gram_crops import GRAM_CLASSES
from mediscope.errors import DataError
from mediscope.files import staged_dir

__all__ = [
    "CLASS_COUNTS",
    "GRAM_CLASSES",
    "GramStainSummary",
    "Smear",
    "generate_gram_stain",
    "render_gram_smear",
]

#: Boxes per class in the Clinical Bacteria DataSet (G-cocci, G+cocci, G-bacilli, G+bacilli).
CLASS_COUNTS: Final[tuple[int, ...]] = (3371, 1462, 5799, 1192)
CLASS_SHARES: Final[tuple[float, ...]] = tuple(c / sum(CLASS_COUNTS) for c in CLASS_COUNTS)
DEFAULT_LARGE: Final[tuple[int, int]] = (2000, 1500)

IntBoxes = npt.NDArray[np.int32]
Box = tuple[int, int, int, int]

_GRAM_POSITIVE: Final = (False, True, False, True)
_IS_ROD: Final = (False, False, True, True)
# Arrangements (kind, probability) per class. Gram-negative cocci are mostly diplococci
# (Neisseria, Moraxella); Gram-positive cocci form clusters (staphylococci), chains
# (streptococci) and lancet-shaped pairs (pneumococci); rods are mostly single, Gram-positive
# rods also in "V" shapes (corynebacteria).
_ARRANGEMENTS: Final[tuple[tuple[tuple[str, float], ...], ...]] = (
    (("single", 0.35), ("pair", 0.50), ("chain", 0.03), ("cluster", 0.12)),
    (("single", 0.15), ("pair", 0.25), ("chain", 0.25), ("cluster", 0.35)),
    (("single", 0.62), ("pair", 0.25), ("vee", 0.03), ("scatter", 0.10)),
    (("single", 0.50), ("pair", 0.25), ("vee", 0.15), ("scatter", 0.10)),
)
_CHAIN_CELLS: Final = (3, 7)  # integers(lo, hi): 3..6 cocci per chain
_CLUSTER_CELLS: Final = (3, 9)  # 3..8 cocci per grape cluster
# Cells actually drawn per group, per class: the arrangement means above, less the cocci a
# crowded cluster could not place and the cells cut off by the image edge (measured over
# 1,500 images of 320 px). Groups are drawn in proportion to share / cells per group.
_CELLS_PER_GROUP: Final = (1.90, 3.25, 1.30, 1.41)
_MIX_CONCENTRATION: Final = 12.0

_STREAM_TAG: Final = 0x47525354  # "GRST": keeps these seeds apart from other generators
_SPLITS: Final = ("train", "test", "large")
_BASE_PX_PER_UM: Final = 20.0  # at 320 px: a 16 um field, a coccus about 20 px wide
_GROUPS_PER_UM2: Final = 0.015  # about 4 groups (6 cells) in a 320 px image
_HOST_CELLS_PER_UM2: Final = 0.0015
_DEBRIS_PER_UM2: Final = 0.005
_NEGATIVE_SHARE: Final = 0.08
_MIN_VISIBLE: Final = 0.55  # share of a cell's extent inside the image for it to be drawn
# A smear is a monolayer: cells touch and overlap a little, but a cell that would hide more
# than this share of itself or of an earlier cell is not drawn (nobody could count it).
_MAX_HIDDEN: Final = 0.3
_MIN_SIZE: Final = 64
# Label values: 6 decimals, as YOLO tools write them.
LABEL_NUMBER: Final = "{:.6f}".format
_PNG_COMPRESSION: Final = 1  # noisy images: higher levels save ~1 % for twice the time


@dataclass(frozen=True)
class Smear:
    """One rendered smear and its ground truth.

    Attributes:
        image: ``H x W x 3`` uint8 RGB.
        boxes: ``N x 4`` int32 pixel boxes ``(x_min, y_min, x_max, y_max)``, max exclusive.
        classes: ``N`` int64 class indices into :data:`GRAM_CLASSES`.
        distractors: ``M x 4`` int32 boxes of what was drawn but is not a bacterium
            (precipitate, clumps, dust, host cells): never labelled, kept for tests and QA.
    """

    image: npt.NDArray[np.uint8]
    boxes: IntBoxes
    classes: npt.NDArray[np.int64]
    distractors: IntBoxes


@dataclass(frozen=True)
class GramStainSummary:
    """What :func:`generate_gram_stain` wrote.

    Attributes:
        root: The dataset folder (holding ``data.yaml``).
        images: ``split -> number of images`` (``train``, ``test``, ``large``).
        objects: ``split -> class name -> number of boxes``.
        negatives: ``split -> number of images without bacteria``.
    """

    root: Path
    images: dict[str, int]
    objects: dict[str, dict[str, int]]
    negatives: dict[str, int]


@dataclass(frozen=True)
class _Strain:
    """How one class looks in one image: stain and cell size (px)."""

    stain: st.Stain
    size: float  # coccus radius or rod width
    length: float  # mean rod length (0 for cocci)
    ends: float  # rod end roundness


@dataclass
class _Canvas:
    """The image being drawn, the magnification that sizes everything on it, and the cells.

    ``cells`` holds, per pixel, the number of the bacterial cell on top there (0: none);
    ``visible[k]`` is how many pixels of cell k show and ``areas[k]`` its whole body.
    """

    pixels: st.FloatImage
    ppu: float  # px per um
    cells: npt.NDArray[np.int32] = field(init=False)
    areas: list[int] = field(default_factory=lambda: [0])
    visible: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        self.cells = np.zeros(self.pixels.shape[:2], np.int32)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def area_um2(self) -> float:
        return self.height * self.width / self.ppu**2


# --- Rendering ---------------------------------------------------------------------------------


def render_gram_smear(
    rng: np.random.Generator,
    size: int | tuple[int, int] = 320,
    *,
    magnification: float = 1.0,
    negative: bool | None = None,
    part_of: tuple[int, int] | None = None,
    crowding: float = 1.0,
) -> Smear:
    """Render one Gram-stained smear with its boxes.

    Args:
        rng: Random generator; the result is a pure function of its state.
        size: Side in px, or ``(width, height)``.
        magnification: Scales cells and texture; 1 draws them as in a 320 px crop of the
            real data (a coccus about 20 px wide), 2 as in a 640 px crop.
        negative: True draws no bacteria, False at least one group; None decides at random
            (about 8 % negatives).
        part_of: ``(width, height)`` of a smear this image is a field of: its bacteria are
            then as many as in a random window of that size of such a smear, whose clumps make
            some fields many times as crowded as others. None: the image is the whole smear.
        crowding: Bacteria per area against the default (2 draws twice as many groups;
            cells that would hide each other are still left out, so the count grows less).

    Returns:
        The image, one box and class per bacterial cell, and the boxes of the distractors.

    Raises:
        DataError: If a side is below 64 px or ``magnification`` or ``crowding`` is not
            positive.
    """
    width, height = (size, size) if isinstance(size, int) else size
    if min(width, height) < _MIN_SIZE:
        raise DataError(f"size must be at least {_MIN_SIZE} px, got {width}x{height}")
    if magnification <= 0:
        raise DataError(f"magnification must be positive, got {magnification}")
    if not 0 < crowding < float("inf"):
        raise DataError(f"crowding must be positive, got {crowding}", where="crowding")
    ppu = _BASE_PX_PER_UM * magnification * float(rng.uniform(0.85, 1.2))
    canvas = _Canvas(st.make_background(height, width, rng, px_per_um=ppu), ppu)
    distractors = _draw_host_cells(canvas, rng)
    _draw_fine_specks(canvas, rng)
    distractors += _draw_debris(canvas, rng)
    if negative is None:
        negative = bool(rng.random() < _NEGATIVE_SHARE)
    boxes: list[Box] = []
    classes: list[int] = []
    if not negative:
        _draw_bacteria(canvas, rng, boxes, classes, part_of, crowding)
    image = _finish(canvas, rng)
    return Smear(
        image=image,
        boxes=np.asarray(boxes, np.int32).reshape(-1, 4),
        classes=np.asarray(classes, np.int64),
        distractors=np.asarray(distractors, np.int32).reshape(-1, 4),
    )


def _draw_bacteria(
    canvas: _Canvas,
    rng: np.random.Generator,
    boxes: list[Box],
    classes: list[int],
    part_of: tuple[int, int] | None,
    crowding: float = 1.0,
) -> None:
    """Groups of bacteria in an image-specific class mix, clumped and sometimes touching."""
    # Groups are drawn per class in proportion to share / cells-per-group, so that the
    # *cells* (boxes) follow the real class shares. A Dirichlet mix makes most images
    # dominated by one or two classes, as smears of one patient are, with the same mean.
    weights = np.asarray(CLASS_SHARES) / np.asarray(_CELLS_PER_GROUP)
    mix = rng.dirichlet(_MIX_CONCENTRATION * weights / weights.sum())
    richness = float(rng.lognormal(0.0, 0.5)) * crowding
    field_density = None
    if part_of is not None:
        crowding, field_density = _field_of(canvas, part_of, rng)
        richness *= crowding
    n_groups = max(1, int(rng.poisson(_GROUPS_PER_UM2 * canvas.area_um2 * richness)))
    strains: dict[int, _Strain] = {}
    if field_density is None:
        density = _clumping(canvas, rng)
    else:
        density = field_density / field_density.max()
    centres: list[tuple[float, float]] = []
    for _ in range(n_groups):
        cls = int(rng.choice(4, p=mix))
        if cls not in strains:
            strains[cls] = _strain(cls, canvas.ppu, rng)
        centre = _group_centre(canvas, centres, density, rng)
        centres.append(centre)
        for box in _draw_group(canvas, cls, strains[cls], centre, rng):
            boxes.append(box)
            classes.append(cls)


def _strain(cls: int, ppu: float, rng: np.random.Generator) -> _Strain:
    """Stain shade and cell size of one class in one image."""
    positive, rod = _GRAM_POSITIVE[cls], _IS_ROD[cls]
    # Less drift towards the other dye than in the crops: a whole image's class shares one
    # stain here, and a purple Gram-negative strain would be label noise more than realism.
    stain = replace(st.gram_stain(positive, rng, spread=0.6 if positive else 0.4), defocus=0.0)
    if not rod:
        radius = ppu * (rng.uniform(0.42, 0.6) if positive else rng.uniform(0.4, 0.55))
        return _Strain(stain, float(radius), 0.0, 1.0)
    width = ppu * (rng.uniform(0.7, 1.0) if positive else rng.uniform(0.6, 0.9))
    length = ppu * rng.uniform(1.4, 2.6)
    # Bacillus / Clostridium-like rods have squarer ends than enteric Gram-negatives.
    ends = rng.uniform(0.45, 0.85) if positive and rng.random() < 0.4 else 1.0
    return _Strain(stain, float(width), float(length), float(ends))


_CLUMP_STEP: Final = 16  # px per cell of the density map


def _clumping(canvas: _Canvas, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """A coarse density map: bacteria gather in some parts of a smear (strong on big images)."""
    dens = _density_map(canvas.height, canvas.width, canvas.ppu, rng)
    return (dens / dens.max()).astype(np.float32)


def _density_map(
    height: int, width: int, ppu: float, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Relative density of bacteria per cell of :data:`_CLUMP_STEP` px (clumps ~12 um wide)."""
    h, w = -(-height // _CLUMP_STEP), -(-width // _CLUMP_STEP)
    noise = st.noise_field(h, w, rng, max(1.0, 12.0 * ppu / _CLUMP_STEP))
    return np.exp(1.2 * noise).astype(np.float32)


def _field_of(
    canvas: _Canvas, smear: tuple[int, int], rng: np.random.Generator
) -> tuple[float, npt.NDArray[np.float32]]:
    """A random window of the image's size in a ``smear``-sized smear's density map.

    Returns how crowded the window is against the smear's mean (mean 1 over windows) and
    its part of the map. Bacteria follow the smear's density map, so a window holds its
    share of the density: a field cut from a smear may be several times as crowded as the
    smear's mean, or nearly empty. Training fields drawn so cover the crowding a detector
    meets when it counts a whole smear in tiles.
    """
    dens = _density_map(max(smear[1], canvas.height), max(smear[0], canvas.width), canvas.ppu, rng)
    h = -(-canvas.height // _CLUMP_STEP)
    w = -(-canvas.width // _CLUMP_STEP)
    y = int(rng.integers(dens.shape[0] - h + 1))
    x = int(rng.integers(dens.shape[1] - w + 1))
    window = dens[y : y + h, x : x + w]
    return float(window.mean() / dens.mean()), window


def _group_centre(
    canvas: _Canvas,
    centres: list[tuple[float, float]],
    density: npt.NDArray[np.float32],
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Next to an earlier group (touching, overlapping) or a place drawn from the density."""
    if centres and rng.random() < 0.3:
        bx, by = centres[int(rng.integers(len(centres)))]
        phi, dist = rng.uniform(0, 2 * np.pi), canvas.ppu * rng.uniform(0.8, 2.2)
        x = float(np.clip(bx + dist * np.cos(phi), 0, canvas.width - 1))
        y = float(np.clip(by + dist * np.sin(phi), 0, canvas.height - 1))
        return x, y
    x = y = 0.0
    for _ in range(30):  # rejection sampling; the last draw stands if all are rejected
        x, y = rng.uniform(0, canvas.width), rng.uniform(0, canvas.height)
        if rng.random() < density[int(y) // _CLUMP_STEP, int(x) // _CLUMP_STEP]:
            break
    return float(x), float(y)


def _draw_group(
    canvas: _Canvas,
    cls: int,
    strain: _Strain,
    centre: tuple[float, float],
    rng: np.random.Generator,
) -> list[Box]:
    """One group of cells of one class; returns the boxes of the cells drawn."""
    kinds, probs = zip(*_ARRANGEMENTS[cls], strict=True)
    kind = str(rng.choice(kinds, p=probs))
    stain = strain.stain
    if rng.random() < 0.2:  # a group lying outside the focal plane
        scale = canvas.ppu / _BASE_PX_PER_UM
        stain = replace(stain, defocus=float(rng.uniform(0.6, 1.6) * scale))
    if _IS_ROD[cls]:
        return _draw_rods(canvas, kind, strain, stain, centre, rng)
    return _draw_cocci(canvas, kind, strain, stain, centre, rng)


def _draw_cocci(
    canvas: _Canvas,
    kind: str,
    strain: _Strain,
    stain: st.Stain,
    centre: tuple[float, float],
    rng: np.random.Generator,
) -> list[Box]:
    radius = strain.size
    offsets = _cocci_offsets(kind, radius, rng)
    pair_axis = np.arctan2(offsets[0][1], offsets[0][0]) if kind == "pair" else 0.0
    boxes = []
    for dx, dy in offsets:
        if kind == "pair":
            # Diplococci flatten where they touch (kidney-bean look): long axis across.
            angle, aspect = pair_axis + np.pi / 2, rng.uniform(1.1, 1.35)
        else:
            angle, aspect = rng.uniform(0, np.pi), rng.uniform(1.0, 1.15)
        r = radius * float(rng.uniform(0.9, 1.1))
        c = (centre[0] + dx, centre[1] + dy)
        a = r * float(np.sqrt(aspect))
        if _visible_share(canvas, c, a, a) < _MIN_VISIBLE:
            continue
        reach = a + 1.5 * r + 3 * stain.defocus + 4

        draw = partial(
            st.draw_coccus,
            radius=r,
            stain=_cell_stain(stain, rng),
            angle=float(angle),
            aspect=float(aspect),
            rng=rng,
        )
        box = _draw_in_view(canvas, c, reach, draw)
        if box is not None:
            boxes.append(box)
    return boxes


def _cocci_offsets(kind: str, radius: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Single cocci and pairs as in :func:`stain.cocci_layout`; longer chains, bigger clusters."""
    if kind in ("single", "pair"):
        return st.cocci_layout(kind, radius, rng)
    if kind == "chain":  # streptococci: a gently wandering line of touching cocci
        theta = rng.uniform(0, 2 * np.pi)
        pts = [(0.0, 0.0)]
        for _ in range(int(rng.integers(*_CHAIN_CELLS)) - 1):
            theta += rng.normal(0, 0.25)
            step = radius * rng.uniform(1.95, 2.2)
            pts.append((pts[-1][0] + step * np.cos(theta), pts[-1][1] + step * np.sin(theta)))
    else:  # staphylococci: each new coccus leans on a random earlier one
        count = int(rng.integers(*_CLUSTER_CELLS))
        pts = [(0.0, 0.0)]
        for _ in range(40 * count):
            if len(pts) == count:
                break
            bx, by = pts[int(rng.integers(len(pts)))]
            phi, step = rng.uniform(0, 2 * np.pi), radius * rng.uniform(1.85, 2.15)
            cand = (bx + step * np.cos(phi), by + step * np.sin(phi))
            if all(np.hypot(cand[0] - x, cand[1] - y) > 1.7 * radius for x, y in pts):
                pts.append(cand)
    arr = np.asarray(pts, dtype=np.float64)
    arr -= arr.mean(axis=0)
    return [(float(x), float(y)) for x, y in arr]


def _draw_rods(
    canvas: _Canvas,
    kind: str,
    strain: _Strain,
    stain: st.Stain,
    centre: tuple[float, float],
    rng: np.random.Generator,
) -> list[Box]:
    width, length = strain.size, strain.length
    if kind != "single":
        length = max(0.85 * length, 2.2 * width)  # a "V" of stubs would read as a blob
    boxes = []
    for dx, dy, angle in st.rod_layout(kind, length, width, rng):
        cell_len = length * float(rng.uniform(0.75, 1.3))
        if rng.random() < 0.04:  # a filament: elongated, undivided cell
            cell_len *= float(rng.uniform(1.8, 2.6))
        cell_w = width * float(rng.uniform(0.92, 1.08))
        curvature = float(rng.normal(0, 0.08)) if rng.random() < 0.35 else 0.0
        c = (centre[0] + dx, centre[1] + dy)
        hl, hw = max(cell_len, cell_w) / 2, cell_w / 2
        ex = hl * abs(np.cos(angle)) + hw * abs(np.sin(angle))
        ey = hl * abs(np.sin(angle)) + hw * abs(np.cos(angle))
        if _visible_share(canvas, c, ex, ey) < _MIN_VISIBLE:
            continue
        reach = hl + 1.5 * hw + abs(curvature) * hl + 3 * stain.defocus + 4

        draw = partial(
            st.draw_rod,
            length=cell_len,
            width=cell_w,
            stain=_cell_stain(stain, rng),
            angle=float(angle),
            curvature=curvature,
            end_roundness=strain.ends,
            rng=rng,
        )
        box = _draw_in_view(canvas, c, reach, draw)
        if box is not None:
            boxes.append(box)
    return boxes


def _cell_stain(stain: st.Stain, rng: np.random.Generator) -> st.Stain:
    """Cells of one group differ slightly in how much dye they kept."""
    return replace(stain, density=stain.density * float(rng.uniform(0.85, 1.15)))


def _visible_share(
    canvas: _Canvas, centre: tuple[float, float], half_w: float, half_h: float
) -> float:
    """Share of an object's extent (a box of half sizes ``half_w``, ``half_h``) in the image."""
    x0, x1 = max(0.0, centre[0] - half_w), min(float(canvas.width), centre[0] + half_w)
    y0, y1 = max(0.0, centre[1] - half_h), min(float(canvas.height), centre[1] + half_h)
    inside = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inside / max(4.0 * half_w * half_h, 1e-6)


def _window(
    canvas: _Canvas, centre: tuple[float, float], reach: float
) -> tuple[int, int, int, int]:
    """``x0, y0, x1, y1`` of the square of half-size ``reach`` around ``centre``, clipped."""
    x0 = max(0, int(np.floor(centre[0] - reach)))
    y0 = max(0, int(np.floor(centre[1] - reach)))
    x1 = min(canvas.width, int(np.ceil(centre[0] + reach)) + 1)
    y1 = min(canvas.height, int(np.ceil(centre[1] + reach)) + 1)
    return x0, y0, x1, y1


def _draw_in_view(
    canvas: _Canvas,
    centre: tuple[float, float],
    reach: float,
    draw: Callable[[st.FloatImage, tuple[float, float]], st.ObjectMark],
) -> Box | None:
    """Draw one cell on a view of the canvas around it and return its padded box.

    The drawers of :mod:`.stain` build a canvas-sized mask per object; on a view the mask
    is window-sized, which keeps big smears fast. ``reach`` must cover what the drawer
    touches, so that the view clips only where the image ends. The cell is drawn on a
    copy first and kept only if it hides at most :data:`_MAX_HIDDEN` of itself under
    earlier cells and of any earlier cell; a rejected cell leaves the canvas unchanged.
    """
    x0, y0, x1, y1 = _window(canvas, centre, reach)
    if x0 >= x1 or y0 >= y1:
        return None
    view = canvas.pixels[y0:y1, x0:x1]
    trial = view.copy()
    mark = draw(trial, (centre[0] - x0, centre[1] - y0))
    area = int(mark.mask.sum())
    if mark.box is None or area < 4:
        return None
    cells = canvas.cells[y0:y1, x0:x1]
    under = cells[mark.mask]
    covered = np.bincount(under[under > 0])
    hidden = [int(k) for k in np.flatnonzero(covered)]
    if covered.sum() > _MAX_HIDDEN * area or any(
        canvas.visible[k] - covered[k] < (1 - _MAX_HIDDEN) * canvas.areas[k] for k in hidden
    ):
        return None
    for k in hidden:
        canvas.visible[k] -= int(covered[k])
    view[...] = trial
    cells[mark.mask] = len(canvas.areas)
    canvas.areas.append(area)
    canvas.visible.append(area)
    bx0, by0, bx1, by1 = mark.box
    return (
        max(0, bx0 + x0 - 1),
        max(0, by0 + y0 - 1),
        min(canvas.width, bx1 + x0 + 1),
        min(canvas.height, by1 + y0 + 1),
    )


# --- Things that are not bacteria ------------------------------------------------------------


def _draw_host_cells(canvas: _Canvas, rng: np.random.Generator) -> list[Box]:
    """Neutrophils (lobed nuclei), mononuclear cells and squamous epithelial cells."""
    boxes: list[Box] = []
    for _ in range(int(rng.poisson(_HOST_CELLS_PER_UM2 * canvas.area_um2))):
        kind = rng.random()
        x, y = rng.uniform(-0.1, 1.1) * canvas.width, rng.uniform(-0.1, 1.1) * canvas.height
        if kind < 0.6:
            radius = canvas.ppu * rng.uniform(3.5, 5.5)
            box = _draw_neutrophil(canvas, rng, (x, y), radius)
        else:
            epithelial = kind > 0.85
            radius = canvas.ppu * (rng.uniform(9, 16) if epithelial else rng.uniform(3.5, 6))
            x0, y0, x1, y1 = _window(canvas, (x, y), 1.35 * radius + 4)
            if x0 >= x1 or y0 >= y1:
                continue
            st.draw_host_cell(
                canvas.pixels[y0:y1, x0:x1],
                rng,
                center=(x - x0, y - y0),
                radius=radius,
                nucleus=not epithelial or rng.random() < 0.5,
            )
            box = (x0, y0, x1, y1)
        if box is not None:
            boxes.append(box)
    return boxes


def _draw_neutrophil(
    canvas: _Canvas, rng: np.random.Generator, centre: tuple[float, float], radius: float
) -> Box | None:
    """A round, granular cell with a nucleus of 2-5 lobes joined by thin strands."""
    x0, y0, x1, y1 = _window(canvas, centre, 1.35 * radius + 4)
    if x0 >= x1 or y0 >= y1:
        return None
    view = canvas.pixels[y0:y1, x0:x1]
    local = (centre[0] - x0, centre[1] - y0)
    st.draw_host_cell(view, rng, center=local, radius=radius, nucleus=False)
    h, w = view.shape[:2]
    nucleus = np.zeros((h, w), np.float32)
    n_lobes = int(rng.integers(2, 6))
    start, arc = rng.uniform(0, 2 * np.pi), rng.uniform(2.0, 4.5)
    ring = radius * rng.uniform(0.3, 0.45)
    one = 16  # cv2 fixed point, 4 bits
    lobes = []
    for i in range(n_lobes):
        phi = start + arc * i / max(n_lobes - 1, 1)
        cx = local[0] + ring * np.cos(phi) + rng.normal(0, 0.05 * radius)
        cy = local[1] + ring * np.sin(phi) + rng.normal(0, 0.05 * radius)
        lobes.append((round(cx * one), round(cy * one)))
        axes = (
            round(radius * rng.uniform(0.2, 0.3) * one),
            round(radius * rng.uniform(0.15, 0.22) * one),
        )
        cv2.ellipse(
            nucleus, lobes[-1], axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA, 4
        )
    for a, b in pairwise(lobes):
        thickness = max(1, round(0.06 * radius))
        cv2.line(nucleus, a, b, 1.0, thickness, cv2.LINE_AA, 4)
    nucleus = np.asarray(cv2.GaussianBlur(nucleus, (0, 0), max(0.04 * radius, 0.7)), np.float32)
    texture = 1.0 + 0.25 * st.noise_field(h, w, rng, max(2.0, 0.1 * radius))
    density = np.float32(rng.uniform(0.5, 1.1))
    view *= np.exp(-st.tint([nucleus * texture * density], [st.HOST_NUCLEUS_OD]))
    return x0, y0, x1, y1


def _draw_fine_specks(canvas: _Canvas, rng: np.random.Generator) -> None:
    """Tiny sharp particles and soft out-of-focus blobs everywhere (as in the Gram crops)."""
    ppu, area = canvas.ppu, canvas.area_um2
    st.draw_specks(
        canvas.pixels,
        rng,
        count=int(rng.poisson(0.2 * area)),
        radius_px=(0.5, 0.1 * ppu + 0.5),
        density=(0.3, 1.0),
        blur_px=0.05 * ppu,
    )
    st.draw_specks(
        canvas.pixels,
        rng,
        count=int(rng.poisson(0.06 * area)),
        radius_px=(0.2 * ppu, 0.55 * ppu),
        density=(0.1, 0.4),
        blur_px=0.2 * ppu,
        palette=(*st.DEBRIS_OD_PALETTE, *st.MUCUS_OD_PALETTE),
    )


def _draw_debris(canvas: _Canvas, rng: np.random.Generator) -> list[Box]:
    """Conspicuous non-bacterial particles, bacterium-sized, returned as boxes.

    Crystal-violet precipitate (dark, angular, often several granules together) is the
    classic false positive of Gram stains; pink clumps of mucus and grey dust come next.
    """
    boxes: list[Box] = []
    for _ in range(int(rng.poisson(_DEBRIS_PER_UM2 * canvas.area_um2 * rng.uniform(0.3, 2.0)))):
        u = rng.random()
        centre = (float(rng.uniform(0, canvas.width)), float(rng.uniform(0, canvas.height)))
        if u < 0.45:  # precipitate: 1-6 angular granules
            n, size, colour = int(rng.integers(1, 7)), (0.12, 0.45), st.DEBRIS_OD_PALETTE[3]
            dens, blur = (0.8, 2.0), 0.04
        elif u < 0.8:  # amorphous clump, soft-edged
            n, size, colour = 1, (0.5, 1.6), st.DEBRIS_OD_PALETTE[2]
            dens, blur = (0.35, 0.9), 0.15
        else:  # grey or brownish dust
            n, size = int(rng.integers(1, 3)), (0.1, 0.35)
            colour = st.DEBRIS_OD_PALETTE[int(rng.integers(2))]
            dens, blur = (0.6, 1.4), 0.05
        box = _draw_particles(canvas, rng, centre, n, size, colour, dens, blur)
        if box is not None:
            boxes.append(box)
    return boxes


def _draw_particles(
    canvas: _Canvas,
    rng: np.random.Generator,
    centre: tuple[float, float],
    count: int,
    size_um: tuple[float, float],
    colour: st.RGB,
    density: tuple[float, float],
    blur_um: float,
) -> Box | None:
    """Irregular polygons around ``centre``; returns the box of what was drawn."""
    ppu = canvas.ppu
    spread = ppu * 0.6 * (count > 1)
    reach = ppu * size_um[1] * 1.3 + spread + 3 * blur_um * ppu + 4
    x0, y0, x1, y1 = _window(canvas, centre, reach)
    if x0 >= x1 or y0 >= y1:
        return None
    view = canvas.pixels[y0:y1, x0:x1]
    field = np.zeros(view.shape[:2], np.float32)
    for _ in range(count):
        r = ppu * rng.uniform(*size_um)
        cx = centre[0] - x0 + rng.normal(0, spread / 2 + 1e-6)
        cy = centre[1] - y0 + rng.normal(0, spread / 2 + 1e-6)
        k = int(rng.integers(4, 9))
        phi = np.sort(rng.uniform(0, 2 * np.pi, k))
        rr = r * rng.uniform(0.45, 1.0, k)
        pts = np.stack([cx + rr * np.cos(phi), cy + rr * np.sin(phi)], axis=1)
        value = float(rng.uniform(*density))
        cv2.fillPoly(field, [np.round(pts * 16).astype(np.int32)], value, cv2.LINE_AA, 4)
    field = np.asarray(cv2.GaussianBlur(field, (0, 0), max(blur_um * ppu, 0.4)), np.float32)
    view *= np.exp(-st.tint([field], [colour]))
    ys, xs = np.nonzero(field > 0.15)
    if ys.size == 0:
        return None
    return int(xs.min()) + x0, int(ys.min()) + y0, int(xs.max()) + x0 + 1, int(ys.max()) + y0 + 1


# --- Optics and camera ------------------------------------------------------------------------


def _finish(canvas: _Canvas, rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """Uneven lamp, chromatic fringes, focus, colour balance, noise and quantisation."""
    scale = canvas.ppu / _BASE_PX_PER_UM
    img = st.apply_illumination(canvas.pixels, rng, vignette=0.3, gradient=0.35)
    img = st.chromatic_aberration(img, rng, max_shift=0.8 * scale)
    # The real crops are soft (oil immersion, focus on a thick smear): most images get a
    # moderate blur, a third a strong one.
    sharp = rng.random() < 0.65
    sigma = rng.uniform(0.5, 1.2) if sharp else rng.uniform(1.2, 2.2)
    img = st.apply_blur(img, float(sigma) * scale)
    img = st.jitter_colour(img, rng)
    img = st.add_sensor_noise(img, rng, read_sigma=float(rng.uniform(0.004, 0.02)))
    return st.to_uint8(img)


# --- Writing ----------------------------------------------------------------------------------


def _image_rng(seed: int, split_index: int, index: int) -> np.random.Generator:
    """Independent generator per image, so an image never depends on generation order."""
    return np.random.default_rng(np.random.SeedSequence([_STREAM_TAG, seed, split_index, index]))


@dataclass
class _Tally:
    images: int = 0
    negatives: int = 0
    objects: npt.NDArray[np.int64] | None = None

    def add(self, smear: Smear) -> None:
        counts = np.bincount(smear.classes, minlength=len(GRAM_CLASSES))
        self.objects = counts if self.objects is None else self.objects + counts
        self.images += 1
        self.negatives += int(smear.classes.size == 0)

    def per_class(self) -> dict[str, int]:
        counts = self.objects if self.objects is not None else np.zeros(len(GRAM_CLASSES))
        return {name: int(counts[i]) for i, name in enumerate(GRAM_CLASSES)}


def _smear_size(magnification: float) -> tuple[int, int]:
    """The size of the smears train and test images are fields of, at their magnification."""
    return (round(DEFAULT_LARGE[0] * magnification), round(DEFAULT_LARGE[1] * magnification))


def _write_split(
    images: Path,
    labels: Path,
    split_index: int,
    n: int,
    size: int | tuple[int, int],
    magnification: float,
    seed: int,
    part_of: tuple[int, int] | None,
    crowding: float = 1.0,
) -> _Tally:
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    split = _SPLITS[split_index]
    tally = _Tally()
    for i in range(n):
        rng = _image_rng(seed, split_index, i)
        negative = False if split == "large" else None
        smear = render_gram_smear(
            rng,
            size,
            magnification=magnification,
            negative=negative,
            part_of=part_of,
            crowding=crowding,
        )
        h, w = smear.image.shape[:2]
        stem = f"{split}_{i:05d}"
        write_image(
            images / f"{stem}.png", smear.image, [cv2.IMWRITE_PNG_COMPRESSION, _PNG_COMPRESSION]
        )
        (labels / f"{stem}.txt").write_text(
            label_lines(smear.boxes, smear.classes, w, h, number=LABEL_NUMBER), encoding="utf-8"
        )
        tally.add(smear)
    return tally


def _data_yaml(root: Path, has_test: bool, has_large: bool) -> str:
    """``data.yaml`` in Ultralytics' keys (split folders, ``nc``, ``names``).

    No ``path`` key: readers then take the file's own folder as the root, so a copied
    or moved dataset reads its own files (an absolute ``path`` would point back to the
    original).
    """
    names = ", ".join(GRAM_CLASSES)
    lines = [
        "# Synthetic Gram-stained smears (mediscope.data.synthetic.gram_stain); see README.txt",
        "train: images/train",
    ]
    if has_test:
        lines.append("test: images/test")
    if has_large:
        lines.append("# large smears for tiled inference: large/images, large/labels")
    lines += [f"nc: {len(GRAM_CLASSES)}", f"names: [{names}]"]
    return "\n".join(lines) + "\n"


def _readme(
    summary: GramStainSummary,
    seed: int,
    size: int,
    large: tuple[int, int] | None,
    crowding: float = 1.0,
) -> str:
    lines = [
        "Synthetic Gram-stained smears generated by mediscope "
        "(mediscope.data.synthetic.gram_stain).",
        "",
        "Bright-field-like RGB images of Gram-stained lower-respiratory smears with YOLO boxes",
        "in 4 classes: 0 G-cocci (pink/red), 1 G+cocci (violet), 2 G-bacilli (pink/red rods),",
        "3 G+bacilli (violet rods). One box per bacterial cell: each coccus of a pair, chain or",
        "cluster has its own box. Debris, stain precipitate and host cells have no boxes.",
        "Images without bacteria have an empty label file.",
        "Images are synthetic; do not use them for clinical decisions.",
        "",
        "Layout: images/<split>/<split>_NNNNN.png and labels/<split>/<split>_NNNNN.txt",
        "(lines 'class cx cy w h', normalised to the image size); large smears for tiled",
        "inference in large/images and large/labels.",
        f"seed: {seed}",
        f"image size: {size}x{size} px" + (f"; large: {large[0]}x{large[1]} px" if large else ""),
    ]
    if crowding != 1.0:
        lines.append(f"crowding of the train and test images: {crowding:g} x the default")
    for split, n in summary.images.items():
        objects = ", ".join(f"{c}={k}" for c, k in summary.objects[split].items())
        lines.append(f"{split}: {n} images ({summary.negatives[split]} negative); {objects}")
    return "\n".join(lines) + "\n"


def _validate(
    count: int,
    test_count: int,
    size: int,
    seed: int,
    large: tuple[int, int] | None,
    large_count: int,
) -> tuple[int, int] | None:
    """Reject arguments that would write nothing useful, before touching the disk."""
    if count < 1:
        raise DataError(f"count must be at least 1, got {count}", where="count", hint="e.g. 200")
    if test_count < 0:
        raise DataError(f"test_count must be 0 or more, got {test_count}", where="test_count")
    if size < _MIN_SIZE:
        raise DataError(f"size must be at least {_MIN_SIZE} px, got {size}", where="size")
    if seed < 0:
        raise DataError(f"seed must be 0 or more, got {seed}", where="seed")
    if large_count < 0:
        raise DataError(f"large_count must be 0 or more, got {large_count}", where="large_count")
    if large is not None:
        if len(large) != 2 or min(large) < size:
            raise DataError(
                f"large must be (width, height) of at least the image size {size}, got {large}",
                where="large",
                hint="e.g. 2000x1500",
            )
        if large_count == 0:
            raise DataError(
                "large smears need large_count of 1 or more", where="large_count", hint="e.g. 2"
            )
    if large_count == 0:
        return None
    return (int(large[0]), int(large[1])) if large is not None else DEFAULT_LARGE


def generate_gram_stain(
    dst: str | Path,
    *,
    count: int = 200,
    test_count: int = 50,
    size: int = 320,
    seed: int = 0,
    large: tuple[int, int] | None = None,
    large_count: int = 0,
    fields: bool = True,
    crowding: float = 1.0,
    overwrite: bool = False,
) -> GramStainSummary:
    """Write a YOLO detection dataset of synthetic Gram-stained smears.

    Layout::

        dst/data.yaml                    path, train, test, nc, names (Ultralytics style)
        dst/images/train/train_NNNNN.png
        dst/labels/train/train_NNNNN.txt  "class cx cy w h" per line, normalised
        dst/images/test/...  dst/labels/test/...      (unless test_count is 0)
        dst/large/images/large_NNNNN.png  dst/large/labels/large_NNNNN.txt
        dst/README.txt
        dst/large/classes.txt            (with large smears) the class names, one per line

    Classes: 0 G-cocci, 1 G+cocci, 2 G-bacilli, 3 G+bacilli, one box per bacterial cell,
    in the shares of the Clinical Bacteria DataSet. About 8 % of the train and test images
    are negatives (empty label file). Large smears are drawn at the magnification of the
    ``size`` images, so that tiles of ``size`` px cut from them look like training images.
    Train and test images are fields of such a smear (``fields``): bacteria gather in
    clumps there, so some fields hold many times the mean number of cells and others few,
    as the tiles of a large smear do.

    The same seed always gives byte-identical images and labels (``data.yaml`` also names
    the folder), and image ``i`` of a split does not depend on how many are generated.
    Everything is written to a hidden sibling folder first and then renamed, so a failed
    run never leaves a half-written ``dst``.

    Args:
        dst: Destination folder; created if missing.
        count: Training images (at least 1).
        test_count: Test images (0 writes no test split).
        size: Side of the square train and test images in px (at least 64); cells are
            about 20 px wide at 320 px and scale with it.
        seed: Non-negative random seed.
        large: ``(width, height)`` of the large smears; (2000, 1500) if None and
            ``large_count`` is set.
        large_count: Number of large smears (0 writes none).
        fields: Draw each train and test image as a random field of a 2,000 x 1,500 smear
            (at 320 px), as crowded as that part of it; False draws each as a whole smear
            of its own, whose crowding varies less.
        crowding: Bacteria per area of the train and test images against the default
            (large smears keep the default): 2 trains a detector on fields as crowded
            as the clumps of a dense smear, and gives it about 1.8 times the cells per
            image to learn from.
        overwrite: Replace a non-empty ``dst``.

    Returns:
        The dataset root and, per split, images, negatives and boxes per class.

    Raises:
        DataError: On invalid arguments, or if ``dst`` is non-empty and not ``overwrite``.

    Example:
        >>> summary = generate_gram_stain("data/gram-stain", count=20, test_count=5)
        >>> summary.images
        {'train': 20, 'test': 5}
    """
    large_size = _validate(count, test_count, size, seed, large, large_count)
    if not 0 < crowding < float("inf"):  # NaN and infinity too
        raise DataError(
            f"crowding must be positive, got {crowding}", where="crowding", hint="e.g. 2"
        )
    root = Path(dst)
    target = root.expanduser().resolve()  # "." or "data/" must still have a name and a parent
    magnification = size / 320.0
    tallies: dict[str, _Tally] = {}
    with staged_dir(target, overwrite=overwrite) as tmp:
        for split_index, (split, n) in enumerate((("train", count), ("test", test_count))):
            if n > 0:
                images, labels = tmp / "images" / split, tmp / "labels" / split
                part_of = _smear_size(magnification) if fields else None
                tallies[split] = _write_split(
                    images, labels, split_index, n, size, magnification, seed, part_of, crowding
                )
        if large_size is not None:
            tallies["large"] = _write_split(
                tmp / "large" / "images",
                tmp / "large" / "labels",
                2,
                large_count,
                large_size,
                magnification,
                seed,
                None,
            )
        summary = GramStainSummary(
            root=root,
            images={k: t.images for k, t in tallies.items()},
            objects={k: t.per_class() for k, t in tallies.items()},
            negatives={k: t.negatives for k, t in tallies.items()},
        )
        (tmp / "data.yaml").write_text(
            _data_yaml(target, "test" in tallies, "large" in tallies), encoding="utf-8"
        )
        (tmp / "README.txt").write_text(
            _readme(summary, seed, size, large_size, crowding), encoding="utf-8"
        )
        if (tmp / "large").is_dir():  # the large smears read on their own (tile, predict)
            (tmp / "large" / "classes.txt").write_text(
                "\n".join(GRAM_CLASSES) + "\n", encoding="utf-8"
            )
    return summary
