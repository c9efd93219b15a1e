"""Pictures of predictions: class colours, palette mask PNGs, overlays with contours,
probability maps, and boxes drawn on images with their class and score.

Prediction writes them beside its files and the reports show them; every file is
written atomically: a crash or a bad input never leaves half a PNG behind.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from mediscope.errors import DataError
from mediscope.files import write_with
from mediscope.runtime.detection_files import as_array

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


def class_colors(n: int) -> np.ndarray:
    """Colours of ``n`` classes: black for the background (class 0), distinct ones after.

    The first seven object classes get the Okabe-Ito colours; the next twenty
    matplotlib's ``tab20``; any more, hues spaced by the golden ratio at a few
    saturations and brightnesses. No two classes share a colour.

    Returns:
        ``(n, 3)`` uint8 RGB.
    """
    colours: list[tuple[int, int, int]] = [(0, 0, 0), *OKABE_ITO]
    table = colormaps["tab20"]
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


def to_rgb(image: np.ndarray) -> np.ndarray:
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
    rgb = to_rgb(image)
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


#: Above this many boxes, tags show scores only and a colour legend names the classes.
DENSE = 40


def line_width(height: int, width: int) -> int:
    """Box outline width that stays visible when a large image is shown whole."""
    return max(2, round(max(height, width) / 300))


def font_size(height: int, width: int) -> int:
    """Label text height in pixels: about 1/50 of the longer side, at least 12."""
    return max(12, round(max(height, width) / 50))


def _text_colour(colour: Sequence[int]) -> tuple[int, int, int]:
    """Black on light colours, white on dark ones (relative luminance)."""
    luminance = 0.2126 * colour[0] + 0.7152 * colour[1] + 0.0722 * colour[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def draw_detections(
    image: np.ndarray,
    boxes: Any,
    labels: Any,
    scores: Any | None,
    classes: Sequence[str],
    *,
    colors: np.ndarray | None = None,
    thickness: int | None = None,
    text_size: int | None = None,
) -> np.ndarray:
    """The image with class-coloured boxes, each labelled with its class and score.

    Outline width and text size grow with the image (:func:`line_width`,
    :func:`font_size`), so that boxes and labels stay readable when a 4000 px smear is
    shown whole, but never much beyond the objects' own size: on a smear of many small
    bacteria the tags stay small. Labels sit on a filled tag of the class colour above
    the box (inside it at the image's top edge); with more than :data:`DENSE` boxes a
    tag shows the score only and a legend of the class colours is drawn in the corner.
    The best-scored boxes are drawn last, on top.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (grey ``(H, W)`` also works).
        boxes: ``(N, 4)`` xyxy pixels.
        labels: ``(N,)`` class indices.
        scores: ``(N,)`` scores, or None (ground truth: class names only).
        classes: Class names (no background).
        colors: ``(C, 3)`` uint8 class colours; default: the segmentation class colours
            without the background's (Okabe-Ito first).
        thickness: Outline width in pixels; default :func:`line_width`.
        text_size: Label text height in pixels; default :func:`font_size`.

    Returns:
        A new ``(H, W, 3)`` uint8 RGB image.
    """
    rgb = np.asarray(image)
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {rgb.dtype}")
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got {rgb.shape}")
    rgb = np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb[:, :, :3]
    height, width = rgb.shape[:2]
    box_array = as_array(boxes, np.float64, (-1, 4))
    label_array = as_array(labels, np.int64, (-1,))
    score_array = None if scores is None else as_array(scores, np.float64, (-1,))
    if len(label_array) != len(box_array) or (
        score_array is not None and len(score_array) != len(box_array)
    ):
        raise ValueError("boxes, labels and scores differ in length")
    if label_array.size and (label_array.min() < 0 or label_array.max() >= len(classes)):
        raise ValueError(f"labels outside 0..{len(classes) - 1}")
    palette = class_colors(len(classes) + 1)[1:] if colors is None else np.asarray(colors)
    sides = np.maximum(box_array[:, 2] - box_array[:, 0], box_array[:, 3] - box_array[:, 1])
    typical = float(np.median(sides)) if len(sides) else float(max(height, width))
    line = thickness or min(line_width(height, width), max(1, round(typical / 12)))
    size = text_size or min(font_size(height, width), max(10, round(typical * 0.6)))
    font = ImageFont.load_default(size=size)
    dense = len(box_array) > DENSE
    picture = Image.fromarray(np.ascontiguousarray(rgb))
    draw = ImageDraw.Draw(picture)
    order = np.argsort(score_array, kind="stable") if score_array is not None else None
    for i in order if order is not None else range(len(box_array)):
        colour = tuple(int(c) for c in palette[label_array[i]])
        x1, y1, x2, y2 = (float(v) for v in box_array[i])
        draw.rectangle((x1, y1, max(x1, x2), max(y1, y2)), outline=colour, width=line)
        text = "" if dense and score_array is not None else classes[label_array[i]]
        if score_array is not None:
            text = f"{text} {score_array[i]:.2f}".strip()
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        pad = max(1, line // 2)
        tag_w, tag_h = right - left + 2 * pad, bottom - top + 2 * pad
        tag_x = min(max(0.0, x1), max(0.0, width - tag_w))
        tag_y = y1 - tag_h if y1 - tag_h >= 0 else max(0.0, y1)
        draw.rectangle((tag_x, tag_y, tag_x + tag_w, tag_y + tag_h), fill=colour)
        draw.text(
            (tag_x + pad - left, tag_y + pad - top), text, font=font, fill=_text_colour(colour)
        )
    if dense:
        _legend(draw, classes, palette, ImageFont.load_default(size=font_size(height, width)))
    return np.asarray(picture)


def _legend(
    draw: ImageDraw.ImageDraw, classes: Sequence[str], palette: np.ndarray, font: Any
) -> None:
    """Class names on their colours, stacked in the top-left corner."""
    y = 4.0
    for name, colour in zip(classes, palette, strict=False):
        fill = tuple(int(c) for c in colour)
        left, top, right, bottom = draw.textbbox((0, 0), name, font=font)
        draw.rectangle((4, y, 12 + right - left, y + 4 + bottom - top), fill=fill)
        draw.text((8 - left, y + 2 - top), name, font=font, fill=_text_colour(fill))
        y += bottom - top + 8
