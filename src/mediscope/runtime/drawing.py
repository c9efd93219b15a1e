"""Drawing predictions on images: class colours, mask overlays with contours, and boxes
labelled with their class and score.

NumPy, OpenCV and Pillow only (no torch, no matplotlib), so that a model's results can be
drawn wherever :mod:`mediscope.runtime` runs. :mod:`mediscope.inference.pictures` builds
its files on these functions.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont


def as_array(values: Any, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``values`` (a list, an array or a tensor) as a NumPy array of ``dtype`` and ``shape``.

    Tensors are recognised by their ``detach`` method (no torch import needed).

    Example:
        >>> as_array([[1, 2, 3, 4]], np.float64, (-1, 4)).shape
        (1, 4)
    """
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype).reshape(shape)


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


#: matplotlib's ``tab20`` colours as 0..255 RGB (the classes after the Okabe-Ito ones).
TAB20: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180),
    (174, 199, 232),
    (255, 127, 14),
    (255, 187, 120),
    (44, 160, 44),
    (152, 223, 138),
    (214, 39, 40),
    (255, 152, 150),
    (148, 103, 189),
    (197, 176, 213),
    (140, 86, 75),
    (196, 156, 148),
    (227, 119, 194),
    (247, 182, 210),
    (127, 127, 127),
    (199, 199, 199),
    (188, 189, 34),
    (219, 219, 141),
    (23, 190, 207),
    (158, 218, 229),
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
    colours: list[tuple[int, int, int]] = [(0, 0, 0), *OKABE_ITO, *TAB20]
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
    rgb = to_rgb(image)
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


def heatmap_overlay(
    image: np.ndarray, heatmap: np.ndarray, *, image_weight: float = 0.55
) -> np.ndarray:
    """A heatmap (such as a Grad-CAM) in the jet colours, blended over the image.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (grey ``(H, W)`` or ``(H, W, 1)`` also works).
        heatmap: ``(h, w)`` values in 0..1 (clipped), resized to the image's size
            (bilinear) when it differs.
        image_weight: Share of the image in the blend; the heatmap gets the rest.

    Returns:
        ``(H, W, 3)`` uint8 RGB.

    Example:
        >>> image = np.zeros((4, 6, 3), np.uint8)
        >>> heatmap_overlay(image, np.ones((2, 3))).shape
        (4, 6, 3)
    """
    rgb = to_rgb(image)
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"expected an (H, W) heatmap, got {heat.shape}")
    if not 0.0 <= image_weight <= 1.0:
        raise ValueError(f"image_weight must be in 0..1, got {image_weight}")
    height, width = rgb.shape[:2]
    if heat.shape != (height, width):
        resized = cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR)
        heat = np.asarray(resized, dtype=np.float32)
    levels = np.rint(255 * np.clip(np.nan_to_num(heat), 0.0, 1.0)).astype(np.uint8)
    colour = cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    blend = image_weight * rgb.astype(np.float32) + (1 - image_weight) * colour
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)
