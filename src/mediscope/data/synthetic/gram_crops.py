"""Synthetic Gram-stain crops: a small, deterministic 4-class image classification dataset.

Each crop shows one organism group (a coccus, a diplococcus, a chain, a cluster, one rod,
rods end to end...) centred on a realistic smear background. Classes differ in stain
(Gram-negative: red/pink safranin; Gram-positive: violet crystal violet) and shape (cocci
vs bacilli), with the imperfections of real smears: variable decolourisation, defocus,
debris, stain precipitate, host cells and neighbouring organisms.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mediscope.data.images import write_image
from mediscope.data.synthetic import stain as st
from mediscope.errors import DataError
from mediscope.files import staged_dir

GRAM_CLASSES: tuple[str, ...] = ("G-cocci", "G+cocci", "G-bacilli", "G+bacilli")

_GRAM_POSITIVE = (False, True, False, True)
_IS_ROD = (False, False, True, True)
# Arrangement frequencies (order of st.COCCI_ARRANGEMENTS / st.ROD_ARRANGEMENTS) follow
# typical organisms: Gram-negative cocci are mostly diplococci (Neisseria, Moraxella),
# Gram-positive cocci form clusters (staphylococci) and chains (streptococci); coryneform
# Gram-positive rods often lie in "V" shapes.
_COCCI_P = {False: (0.4, 0.45, 0.03, 0.12), True: (0.3, 0.25, 0.15, 0.3)}
_ROD_P = {False: (0.6, 0.25, 0.03, 0.12), True: (0.5, 0.3, 0.1, 0.1)}
# Keeps the per-image seeds of this generator apart from other generators given the same
# user seed ("GRAM" in ASCII).
_STREAM_TAG = 0x4752414D
_SPLITS = ("train", "test")
_BASE_PX_PER_UM = 14.0  # at 64 px: a crop spans about 4.6 um of the slide


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate_gram_crops` wrote.

    Attributes:
        root: The dataset folder.
        counts: ``split -> class -> number of images written``.
    """

    root: Path
    counts: dict[str, dict[str, int]]


def render_gram_crop(class_index: int, rng: np.random.Generator, *, size: int = 64) -> np.ndarray:
    """One HxWx3 uint8 RGB crop of the given class.

    Args:
        class_index: Index into :data:`GRAM_CLASSES`.
        rng: Random generator; the crop is a pure function of its state.
        size: Side length in px; organisms and texture scale with it.

    Returns:
        ``size x size x 3`` uint8 RGB image.

    Raises:
        DataError: If ``class_index`` or ``size`` is out of range.
    """
    if not 0 <= class_index < len(GRAM_CLASSES):
        raise DataError(f"class_index must be in 0..{len(GRAM_CLASSES) - 1}, got {class_index}")
    if size < 16:
        raise DataError(f"size must be at least 16 px, got {size}")
    ppu = _BASE_PX_PER_UM * size / 64.0 * float(rng.uniform(0.8, 1.25))
    canvas = st.make_background(size, size, rng, px_per_um=ppu)
    _draw_clutter(canvas, rng, ppu)
    positive, rod = _GRAM_POSITIVE[class_index], _IS_ROD[class_index]
    centre = size / 2.0 + rng.normal(0.0, 0.06 * size, 2)
    _draw_group(canvas, (float(centre[0]), float(centre[1])), positive, rod, rng, ppu)
    _draw_neighbours(canvas, class_index, rng, ppu)
    return _finish(canvas, rng, size)


def _draw_clutter(canvas: st.FloatImage, rng: np.random.Generator, ppu: float) -> None:
    """Host-cell fragments, sharp debris and out-of-focus blobs behind the organisms."""
    size = canvas.shape[0]
    if rng.random() < 0.22:
        # Host cells are 10-20x larger than bacteria; put the centre near or beyond an
        # edge so a crop shows a fragment of the cell, as around real bacteria.
        radius = ppu * rng.uniform(3.0, 7.0)
        phi = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(0.3, 1.0) * radius + 0.2 * size
        c = (size / 2 + dist * np.cos(phi), size / 2 + dist * np.sin(phi))
        st.draw_host_cell(canvas, rng, center=c, radius=radius, nucleus=rng.random() < 0.4)
    area = (size / ppu) ** 2  # in um^2
    st.draw_specks(
        canvas,
        rng,
        count=int(rng.poisson(0.25 * area)),
        radius_px=(0.5, 0.12 * ppu + 0.5),
        density=(0.3, 1.2),
        blur_px=0.05 * ppu,
    )
    st.draw_specks(
        canvas,
        rng,
        count=int(rng.poisson(0.08 * area)),
        radius_px=(0.2 * ppu, 0.55 * ppu),
        density=(0.1, 0.45),
        blur_px=0.2 * ppu,
        palette=(*st.DEBRIS_OD_PALETTE, *st.MUCUS_OD_PALETTE),
    )


def _draw_group(
    canvas: st.FloatImage,
    centre: tuple[float, float],
    positive: bool,
    rod: bool,
    rng: np.random.Generator,
    ppu: float,
) -> None:
    """One organism group of the given Gram type and shape, sharing one stain."""
    stain = st.gram_stain(positive, rng)
    if rod:
        _draw_bacilli(canvas, centre, positive, stain, rng, ppu)
    else:
        _draw_cocci(canvas, centre, positive, stain, rng, ppu)


def _cell_stain(stain: st.Stain, rng: np.random.Generator) -> st.Stain:
    """Cells of one group differ slightly in how much dye they kept."""
    return replace(stain, density=stain.density * float(rng.uniform(0.85, 1.15)))


def _draw_cocci(
    canvas: st.FloatImage,
    centre: tuple[float, float],
    positive: bool,
    stain: st.Stain,
    rng: np.random.Generator,
    ppu: float,
) -> None:
    """A single coccus, diplococcus, chain or cluster around ``centre``."""
    kind = str(rng.choice(st.COCCI_ARRANGEMENTS, p=_COCCI_P[positive]))
    radius = ppu * rng.uniform(0.42, 0.6)
    offsets = st.cocci_layout(kind, radius, rng)
    pair_axis = np.arctan2(offsets[0][1], offsets[0][0]) if kind == "pair" else 0.0
    for dx, dy in offsets:
        if kind == "pair":
            # Diplococci flatten where they touch (kidney-bean look): long axis across.
            angle, aspect = pair_axis + np.pi / 2, rng.uniform(1.1, 1.35)
        else:
            angle, aspect = rng.uniform(0, np.pi), rng.uniform(1.0, 1.15)
        st.draw_coccus(
            canvas,
            (centre[0] + dx, centre[1] + dy),
            radius * rng.uniform(0.92, 1.08),
            _cell_stain(stain, rng),
            angle=float(angle),
            aspect=float(aspect),
            rng=rng,
        )


def _draw_bacilli(
    canvas: st.FloatImage,
    centre: tuple[float, float],
    positive: bool,
    stain: st.Stain,
    rng: np.random.Generator,
    ppu: float,
) -> None:
    """One rod, rods end to end, a "V" or a few scattered rods around ``centre``."""
    kind = str(rng.choice(st.ROD_ARRANGEMENTS, p=_ROD_P[positive]))
    width = ppu * (rng.uniform(0.55, 0.85) if positive else rng.uniform(0.45, 0.75))
    # Coccobacilli (Haemophilus, Acinetobacter...) are the realistic confounder of cocci.
    short = rng.random() < 0.07
    length = ppu * (rng.uniform(1.2, 1.7) if short else rng.uniform(2.0, 3.8))
    if kind != "single":
        # Groups of long rods would not fit the crop, but a "V" of stubs would read as a blob.
        length = max(0.8 * length, 2.2 * width)
    # Bacillus / Clostridium-like rods have squarer ends than enteric Gram-negatives.
    ends = rng.uniform(0.45, 0.85) if positive and rng.random() < 0.4 else 1.0
    for dx, dy, angle in st.rod_layout(kind, length, width, rng):
        st.draw_rod(
            canvas,
            (centre[0] + dx, centre[1] + dy),
            length * rng.uniform(0.85, 1.15),
            width * rng.uniform(0.92, 1.08),
            _cell_stain(stain, rng),
            angle=angle,
            curvature=float(rng.normal(0, 0.07)) if rng.random() < 0.35 else 0.0,
            end_roundness=float(ends),
            rng=rng,
        )


def _draw_neighbours(
    canvas: st.FloatImage, class_index: int, rng: np.random.Generator, ppu: float
) -> None:
    """Organisms near the crop border, cut off: mostly the same class, rarely another one."""
    size = canvas.shape[0]
    for _ in range(int(rng.poisson(0.4))):
        other = rng.random() < 0.1
        cls = int(rng.integers(len(GRAM_CLASSES))) if other else class_index
        phi = rng.uniform(0, 2 * np.pi)
        dist = size * rng.uniform(0.45, 0.62)
        c = (size / 2 + dist * np.cos(phi), size / 2 + dist * np.sin(phi))
        _draw_group(canvas, c, _GRAM_POSITIVE[cls], _IS_ROD[cls], rng, ppu)


def _finish(canvas: st.FloatImage, rng: np.random.Generator, size: int) -> npt.NDArray[np.uint8]:
    """Optics and camera: illumination, focus, colour balance, noise, quantisation."""
    img = st.apply_illumination(canvas, rng, vignette=0.2, gradient=0.12)
    img = st.chromatic_aberration(img, rng, max_shift=0.8 * size / 64.0)
    img = st.apply_blur(img, float(rng.uniform(0.3, 1.2)) * size / 64.0)
    img = st.jitter_colour(img, rng)
    img = st.add_sensor_noise(img, rng, read_sigma=float(rng.uniform(0.004, 0.02)))
    return st.to_uint8(img)


def _crop_rng(seed: int, split_index: int, class_index: int, index: int) -> np.random.Generator:
    """Independent generator per image, so an image never depends on generation order."""
    return np.random.default_rng(
        np.random.SeedSequence([_STREAM_TAG, seed, split_index, class_index, index])
    )


def _validate(per_class: int, test_per_class: int, size: int, seed: int) -> None:
    """Reject arguments that would write nothing useful, before touching the disk."""
    if per_class < 1:
        raise DataError(f"per_class must be at least 1, got {per_class}")
    if test_per_class < 0:
        raise DataError(f"test_per_class must be 0 or more, got {test_per_class}")
    if size < 16:
        raise DataError(f"size must be at least 16 px, got {size}")
    if seed < 0:
        raise DataError(f"seed must be 0 or more, got {seed}")


def _write_split(root: Path, split_index: int, n: int, size: int, seed: int) -> dict[str, int]:
    """Render and save ``n`` images per class of one split; returns class -> count."""
    counts: dict[str, int] = {}
    for class_index, name in enumerate(GRAM_CLASSES):
        folder = root / _SPLITS[split_index] / name
        folder.mkdir(parents=True)
        for i in range(n):
            rng = _crop_rng(seed, split_index, class_index, i)
            write_image(
                folder / f"{name}_{i:05d}.png", render_gram_crop(class_index, rng, size=size)
            )
        counts[name] = n
    return counts


def _readme(seed: int, size: int, counts: dict[str, dict[str, int]]) -> str:
    """Human-readable description written next to the images."""
    lines = [
        "Synthetic Gram-stain crops generated by mediscope (mediscope.data.synthetic.gram_crops).",
        "",
        "Bright-field-like RGB crops of stained bacteria for 4-class image classification:",
        "G-cocci (pink/red, round), G+cocci (violet, round), G-bacilli (pink/red, rods),",
        "G+bacilli (violet, rods). Images are synthetic; do not use them for clinical decisions.",
        "",
        "Layout: <split>/<class>/<class>_<NNNNN>.png; class order is in classes.txt.",
        f"seed: {seed}",
        f"image size: {size}x{size} px",
    ]
    for split, per_class in counts.items():
        lines.append(f"{split}: " + ", ".join(f"{c}={n}" for c, n in per_class.items()))
    return "\n".join(lines) + "\n"


def generate_gram_crops(
    dst: str | Path,
    *,
    per_class: int = 300,
    test_per_class: int = 100,
    size: int = 64,
    seed: int = 0,
    overwrite: bool = False,
) -> SynthSummary:
    """Write an image-folder dataset of synthetic Gram-stain crops.

    Layout: ``dst/train/<class>/<class>_<NNNNN>.png`` and ``dst/test/<class>/...``, plus
    ``dst/classes.txt`` (one class name per line, in :data:`GRAM_CLASSES` order) and
    ``dst/README.txt`` (what it is, seed, counts).

    The same seed always gives byte-identical files. Everything is first written to a
    hidden sibling folder and then renamed, so an interrupted run never leaves a
    half-written ``dst``.

    Args:
        dst: Destination folder; created if missing.
        per_class: Training images per class.
        test_per_class: Test images per class (0 writes no test split).
        size: Image side length in px.
        seed: Non-negative random seed.
        overwrite: Replace a non-empty ``dst``.

    Returns:
        The dataset root and the number of images per split and class.

    Raises:
        DataError: On invalid arguments, or if ``dst`` is non-empty and not ``overwrite``.
    """
    _validate(per_class, test_per_class, size, seed)
    root = Path(dst)
    dst = root.expanduser().resolve()  # "." or "data/" must still have a name and a parent
    with staged_dir(dst, overwrite=overwrite) as tmp:
        counts = {"train": _write_split(tmp, 0, per_class, size, seed)}
        if test_per_class > 0:
            counts["test"] = _write_split(tmp, 1, test_per_class, size, seed)
        (tmp / "classes.txt").write_text("\n".join(GRAM_CLASSES) + "\n", encoding="utf-8")
        (tmp / "README.txt").write_text(_readme(seed, size, counts), encoding="utf-8")
    return SynthSummary(root=root, counts=counts)
