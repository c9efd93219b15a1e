"""Pictures of segmentations: class colours, palette mask PNGs, overlays with contours,
probability maps, and galleries of the best and worst images (image / ground truth /
prediction).

Every file is written atomically: a crash or a bad input never leaves half a PNG behind.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib.patches import Patch
from PIL import Image

from mediscope.errors import DataError
from mediscope.files import write_with
from mediscope.reports.plotting import plt

#: Okabe-Ito colours, told apart with every common colour-vision deficiency. Sky blue
#: comes first because the first object class (a lesion) sits on skin tones and dark
#: pigment, where blue stands out best; orange, close to skin, comes late.
OKABE_ITO: tuple[tuple[int, int, int], ...] = (
    (86, 180, 233),  # sky blue
    (240, 228, 66),  # yellow
    (0, 158, 115),  # bluish green
    (204, 121, 167),  # reddish purple
    (0, 114, 178),  # blue
    (213, 94, 0),  # vermillion
    (230, 159, 0),  # orange
)

#: Palette entry of mask values without a class colour (255, the usual ignore value).
UNLABELLED = (255, 255, 255)

#: Gallery geometry, in inches: the height of one row and of the header (title, legend).
ROW_HEIGHT = 2.5
HEADER_HEIGHT = 0.75


def class_colors(n: int) -> np.ndarray:
    """Colours of ``n`` classes: black for the background (class 0), distinct ones after.

    The first seven object classes get the Okabe-Ito colours; the next twenty
    matplotlib's ``tab20``; any more, hues spaced by the golden ratio at a few
    saturations and brightnesses. No two classes share a colour.

    Returns:
        ``(n, 3)`` uint8 RGB.
    """
    colours: list[tuple[int, int, int]] = [(0, 0, 0), *OKABE_ITO]
    table = plt.get_cmap("tab20")
    colours += [tuple(round(255 * c) for c in table(i)[:3]) for i in range(20)]  # type: ignore[misc]
    taken = set(colours)
    step = 0
    while len(colours) < n:
        hue = (step * 0.618034) % 1.0
        rgb = colorsys.hsv_to_rgb(hue, (0.85, 0.55)[step % 2], (0.95, 0.75, 0.55)[step % 3])
        colour = (round(255 * rgb[0]), round(255 * rgb[1]), round(255 * rgb[2]))
        step += 1
        if colour not in taken:
            taken.add(colour)
            colours.append(colour)
    return np.array(colours[: max(n, 0)], dtype=np.uint8).reshape(-1, 3)


def save_mask_png(path: str | Path, mask: np.ndarray, colors: np.ndarray) -> Path:
    """Writes a class-index mask as a palette (mode P) PNG.

    Pixel values are the class indices, so ``np.asarray(Image.open(path))`` gives the mask
    back; the embedded palette shows each class in its colour in any image viewer (values
    without a class colour, such as the ignore value 255, in white).

    Args:
        path: The PNG to write.
        mask: ``(H, W)`` integer class indices in 0..255.
        colors: ``(K, 3)`` uint8 class colours (:func:`class_colors`).

    Returns:
        ``path``.

    Raises:
        DataError: The mask is not 2-D or holds values a PNG palette cannot index.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise DataError(
            f"a mask must be a 2-D array of class indices, got {mask.dtype} {mask.shape}",
            where=path,
            hint="pass argmax(probabilities) as integers",
        )
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise DataError(
            f"mask values {mask.min()}..{mask.max()} do not fit a PNG palette (0..255)",
            where=path,
            hint="a palette PNG holds at most 256 classes",
        )
    palette = np.tile(np.array(UNLABELLED, dtype=np.uint8), (256, 1))
    colors = np.asarray(colors, dtype=np.uint8)[:256]
    palette[: len(colors)] = colors
    height, width = mask.shape
    image = Image.frombytes("P", (width, height), np.ascontiguousarray(mask, np.uint8).tobytes())
    image.putpalette(palette.ravel().tolist())
    return write_with(path, lambda tmp: image.save(tmp, format="PNG"))


def _rgb(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 from a grey ``(H, W)`` / ``(H, W, 1)`` or an RGB(A) image."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got {image.shape}")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, :3]


def contour_thickness(height: int, width: int) -> int:
    """Contour width in pixels that stays visible when a large image is shown whole."""
    return max(1, round(max(height, width) / 300))


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    colors: np.ndarray,
    *,
    alpha: float = 0.45,
    contours: bool = True,
    thickness: int | None = None,
) -> np.ndarray:
    """The mask's classes blended over the image, with class-coloured contours.

    Background pixels (class 0) and values without a colour (such as the ignore value 255)
    are left exactly as they are; contours are drawn on the objects' own border pixels, so
    they never spill onto the background.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (grey ``(H, W)`` or ``(H, W, 1)`` also works).
        mask: ``(H, W)`` class indices.
        colors: ``(K, 3)`` uint8 class colours (:func:`class_colors`).
        alpha: Opacity of the class colour over the object.
        contours: Draw each object's outline in its full class colour.
        thickness: Contour width in pixels; default: 1 px per 300 px of the longer side,
            at least 1.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    rgb = _rgb(image)
    mask = np.asarray(mask)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask {mask.shape} and image {rgb.shape[:2]} differ in size")
    colors = np.asarray(colors, dtype=np.uint8)
    out = rgb.copy()
    width = thickness or contour_thickness(*mask.shape)
    for index in range(1, len(colors)):
        region = mask == index
        if not region.any():
            continue
        blend = (1 - alpha) * rgb[region] + alpha * colors[index].astype(np.float32)
        out[region] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
        if contours:
            out[_inner_border(region, width)] = colors[index]
    return out


def _inner_border(region: np.ndarray, width: int) -> np.ndarray:
    """The pixels of ``region`` within about ``width`` pixels of its outline."""
    binary = region.astype(np.uint8)
    found, _ = cv2.findContours(binary, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    canvas = np.zeros_like(binary)
    # a line of width 2w centred on the outline covers w pixels inside the object
    cv2.drawContours(canvas, found, -1, 1, thickness=2 * width)
    return (canvas > 0) & region


def save_probability_map(path: str | Path, probs: Any) -> Path:
    """Writes per-class probabilities as float16 in a compressed ``.npz``.

    The array is stored under the key ``probabilities`` with shape ``(K, H, W)``. float16
    keeps about three decimals, plenty for thresholds and calibration, at a quarter of
    the float64 size before compression; read it back with :func:`load_probability_map`.

    Args:
        path: The ``.npz`` file to write.
        probs: ``(K, H, W)`` probabilities (NumPy array or CPU tensor).

    Returns:
        ``path``.
    """
    data = np.asarray(probs, dtype=np.float16)
    if data.ndim != 3:
        raise ValueError(f"expected probabilities (K, H, W), got {data.shape}")

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:  # a file handle: numpy would add .npz to a name
            np.savez_compressed(handle, probabilities=data)

    return write_with(path, write)


def load_probability_map(path: str | Path) -> np.ndarray:
    """The ``(K, H, W)`` float32 probabilities written by :func:`save_probability_map`."""
    try:
        with np.load(path) as archive:
            return archive["probabilities"].astype(np.float32)
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(
            f"not a probability map: {exc}",
            where=path,
            hint="write it with `mediscope predict ... --probabilities`",
        ) from None


@dataclass
class GalleryItem:
    """One gallery row.

    Attributes:
        image: ``(H, W, 3)`` (or grey) uint8 image at its own size.
        target: ``(H, W)`` true class indices, or None when there is no ground truth.
        pred: ``(H, W)`` predicted class indices.
        title: The sample's id.
        score: Its score (Dice), or None.
    """

    image: np.ndarray
    target: np.ndarray | None
    pred: np.ndarray
    title: str
    score: float | None = None


def best_and_worst(scores: Sequence[tuple[str, float]], k: int) -> tuple[list[str], list[str]]:
    """Ids of the ``k`` highest and the ``k`` lowest scores.

    Ties are broken by id (ascending in both lists), so the choice is deterministic.
    Samples without a score (NaN) are left out of both. With fewer than ``k`` samples,
    both lists hold all of them.

    Returns:
        (best ids, highest first; worst ids, lowest first).
    """
    scored = [(str(i), float(s)) for i, s in scores if not math.isnan(float(s))]
    if k <= 0:
        return [], []
    best = sorted(scored, key=lambda item: (-item[1], item[0]))[:k]
    worst = sorted(scored, key=lambda item: (item[1], item[0]))[:k]
    return [i for i, _ in best], [i for i, _ in worst]


def write_gallery(
    path: str | Path,
    items: Sequence[GalleryItem],
    *,
    colors: np.ndarray,
    class_names: Sequence[str],
    title: str,
    score_name: str = "Dice",
    dpi: int = 100,
) -> Path:
    """A PNG grid: one row per item, panels image / ground truth / prediction.

    Each row is titled with the sample's id and score; the header holds ``title`` and a
    legend of the class colours. Rows are :data:`ROW_HEIGHT` inches high at ``dpi``, and
    the figure has a fixed size (no tight cropping), so its pixel size is
    ``(3 * panel width + margins, HEADER_HEIGHT + rows * ROW_HEIGHT) * dpi``.

    Args:
        path: The PNG to write.
        items: The rows, in order.
        colors: ``(K, 3)`` uint8 class colours.
        class_names: Class names, background first.
        title: The figure's title.
        score_name: What the score is, for the row titles.
        dpi: Pixels per inch.

    Returns:
        ``path``.
    """
    colors = np.asarray(colors, dtype=np.uint8)
    aspect = max((item.image.shape[1] / item.image.shape[0] for item in items), default=1.0)
    panel = ROW_HEIGHT * min(max(aspect, 0.6), 2.5)  # very wide or tall images get a cap
    width = 3 * panel + 0.3
    height = HEADER_HEIGHT + ROW_HEIGHT * max(len(items), 1)
    fig = plt.figure(figsize=(width, height), dpi=dpi, layout="constrained")
    parts = fig.subfigures(
        2, 1, squeeze=False, height_ratios=[HEADER_HEIGHT, height - HEADER_HEIGHT]
    )
    header, body = parts[0, 0], parts[1, 0]
    _header(header, title, colors, class_names)
    if items:
        # one subfigure per row, so each row gets its own title above its three panels
        rows = body.subfigures(len(items), 1, squeeze=False)[:, 0]
        for row, item in zip(rows, items, strict=True):
            _row(row, item, colors, score_name, round((ROW_HEIGHT - 0.45) * dpi))
    else:
        body.text(0.5, 0.5, "no images", ha="center", va="center", fontsize=10)
    try:
        return write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    finally:
        plt.close(fig)


def _header(fig: Any, title: str, colors: np.ndarray, class_names: Sequence[str]) -> None:
    fig.suptitle(title, fontsize=11, fontweight="bold")
    handles = [
        Patch(facecolor=colors[i] / 255.0, edgecolor="black", linewidth=0.5, label=name)
        for i, name in enumerate(class_names)
        if 0 < i < len(colors)
    ]
    if handles:
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=min(len(handles), 6),
            fontsize=9,
            frameon=False,
            title="fill and outline per class; background unmarked",
            title_fontsize=8,
        )


def _row(fig: Any, item: GalleryItem, colors: np.ndarray, score_name: str, pixels: int) -> None:
    image, target, pred = _display_size(item, pixels)
    label = _shorten(item.title)
    if item.score is not None:
        label = f"{label}   {score_name} {item.score:.3f}"
    fig.suptitle(label, fontsize=9)
    axes = fig.subplots(1, 3)
    truth = None if target is None else overlay(image, target, colors, thickness=2)
    panels = [
        (image, "image"),
        (truth, "ground truth"),
        (overlay(image, pred, colors, thickness=2), "prediction"),
    ]
    for ax, (picture, name) in zip(axes, panels, strict=True):
        ax.set_title(name, fontsize=8, pad=2)
        ax.set_xticks([])
        ax.set_yticks([])
        if picture is None:
            ax.imshow(image, alpha=0.3)
            ax.text(0.5, 0.5, "no ground truth", transform=ax.transAxes, ha="center", va="center")
        else:
            ax.imshow(picture, interpolation="nearest")


def _display_size(
    item: GalleryItem, pixels: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Image and masks resized to about ``pixels`` high, so that contours drawn on them are
    1-2 px on screen whatever the image's own size (a 3000 px photograph or a 32 px crop)."""
    image = _rgb(item.image)
    height, width = image.shape[:2]
    scale = pixels / height
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    shrink = scale < 1

    def resize_mask(mask: np.ndarray | None) -> np.ndarray | None:
        if mask is None:
            return None
        mask = np.asarray(mask)
        if mask.shape != (height, width):
            raise ValueError(f"mask {mask.shape} and image {(height, width)} differ in size")
        return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)

    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_NEAREST)
    pred = resize_mask(item.pred)
    assert pred is not None
    return resized, resize_mask(item.target), pred


def _shorten(text: str, limit: int = 70) -> str:
    if len(text) <= limit:
        return text
    half = (limit - 1) // 2
    return f"{text[:half]}…{text[-half:]}"
