"""Drawing predictions on images: class colours, mask overlays with contours, and boxes
labelled with their class and score.

NumPy, OpenCV and Pillow only (no torch, no matplotlib), so that a model's results can be
drawn wherever :mod:`mediscope.runtime` runs. :mod:`mediscope.inference.pictures` builds
its files on these functions.
"""

from __future__ import annotations

import colorsys
import re
from collections.abc import Sequence
from typing import Any, Literal

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


#: Above this many boxes, tags show class initials (where the box has room for them).
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


def class_tags(classes: Sequence[str]) -> list[str]:
    """Short, distinct tags of class names: the initial of each word, with ``+`` and
    ``-`` kept; more letters where two tags would be the same.

    Example:
        >>> class_tags(["G-cocci", "G+cocci", "G-bacilli", "G+bacilli"])
        ['G-c', 'G+c', 'G-b', 'G+b']
        >>> class_tags(["nevus", "neutrophil", "melanoma"])
        ['Nev', 'Neu', 'M']
    """
    words = [re.findall(r"[^\W_]+|[+-]", name) or [name] for name in classes]

    def tag(parts: list[str], letters: int) -> str:
        text = "".join(p if p in "+-" else p[:letters] for p in parts)
        return text[:1].upper() + text[1:]

    letters = [1] * len(classes)
    tags = [tag(parts, 1) for parts in words]
    longest = max((len(w) for parts in words for w in parts), default=1)
    for _ in range(longest):
        clashing = [i for i, t in enumerate(tags) if tags.count(t) > 1]
        if not clashing:
            break
        for i in clashing:
            letters[i] += 1
            tags[i] = tag(words[i], letters[i])
    return [t if tags.count(t) == 1 else name for t, name in zip(tags, classes, strict=True)]


#: How boxes are tagged: class names, class initials (where the box has room), nothing;
#: ``auto``: names, or initials above :data:`DENSE` boxes.
TagMode = Literal["auto", "names", "initials", "none"]


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
    tags: TagMode = "auto",
    legend: bool = False,
) -> np.ndarray:
    """The image with class-coloured boxes, each labelled with its class and score.

    Outline width and text size grow with the image (:func:`line_width`,
    :func:`font_size`), so that boxes and labels stay readable when a 4000 px smear is
    shown whole, but never much beyond the objects' own size: on a smear of many small
    bacteria the tags stay small. Labels sit on a filled tag of the class colour above
    the box (inside it at the image's top edge). With more than :data:`DENSE` boxes a
    tag shows the class initials (:func:`class_tags`) and the score, only where the box
    is as wide as the tag. The best-scored boxes are drawn last, on top.

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
        tags: What the boxes' tags say (:data:`TagMode`).
        legend: Add a band above the image (:func:`legend_band`) naming each class
            with its colour, tag and number of boxes, and the total: the picture is
            then taller than the image.

    Returns:
        A new uint8 RGB image: ``(H, W, 3)``, or taller with the legend.
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
    mode = tags if tags != "auto" else ("initials" if len(box_array) > DENSE else "names")
    short = class_tags(classes) if mode == "initials" else list(classes)
    picture = Image.fromarray(np.ascontiguousarray(rgb))
    draw = ImageDraw.Draw(picture)
    order = np.argsort(score_array, kind="stable") if score_array is not None else None
    for i in order if order is not None else range(len(box_array)):
        colour = tuple(int(c) for c in palette[label_array[i]])
        x1, y1, x2, y2 = (float(v) for v in box_array[i])
        draw.rectangle((x1, y1, max(x1, x2), max(y1, y2)), outline=colour, width=line)
        if mode == "none":
            continue
        texts = [short[label_array[i]]]
        if score_array is not None:
            texts.insert(0, f"{texts[0]} {score_array[i]:.2f}")
        for text in texts:
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            if mode == "names" or right - left + 2 <= x2 - x1:
                break
        else:
            continue  # initials: no room on this box
        pad = max(1, line // 2)
        tag_w, tag_h = right - left + 2 * pad, bottom - top + 2 * pad
        tag_x = min(max(0.0, x1), max(0.0, width - tag_w))
        tag_y = y1 - tag_h if y1 - tag_h >= 0 else max(0.0, y1)
        draw.rectangle((tag_x, tag_y, tag_x + tag_w, tag_y + tag_h), fill=colour)
        draw.text(
            (tag_x + pad - left, tag_y + pad - top), text, font=font, fill=_text_colour(colour)
        )
    out = np.asarray(picture)
    if not legend:
        return out
    counts = np.bincount(label_array, minlength=len(classes))
    tagged = mode == "initials"
    entries: list[LegendEntry] = [(f"{len(box_array)} objects:", None, None)]
    entries += [
        (f"{name} {int(n)}", palette[k], short[k] if tagged else None)
        for k, (name, n) in enumerate(zip(classes, counts, strict=False))
    ]
    return legend_band(out, entries)


#: A legend entry: its text, its colour (None: plain text) and the tag drawn on its
#: colour before the text (None: a plain swatch).
LegendEntry = tuple[str, Any, str | None]


def legend_band(
    picture: np.ndarray, entries: Sequence[LegendEntry], *, text_size: int | None = None
) -> np.ndarray:
    """``picture`` with a white band above it that holds the legend: per entry a swatch
    of its colour (with its tag on it, as on the picture) and its text, wrapped onto as
    many lines as the picture's width needs. Nothing of the picture is covered.

    Args:
        picture: ``(H, W, 3)`` uint8 RGB.
        entries: ``(text, colour or None, tag or None)`` each.
        text_size: Text height in pixels; default :func:`font_size` of the picture.

    Returns:
        ``(H + band, W, 3)`` uint8 RGB.

    Example:
        >>> band = legend_band(np.zeros((40, 200, 3), np.uint8), [("lesion", (86, 180, 233), "L")])
        >>> band.shape[0] > 40 and band.shape[1] == 200
        True
    """
    rgb = to_rgb(picture)
    height, width = rgb.shape[:2]
    size = text_size or font_size(height, width)
    while True:  # smaller text until the widest entry fits (a small picture), 8 px at least
        font = ImageFont.load_default(size=size)
        placed, row, widest, line_h = _legend_layout(entries, font, width)
        if widest <= width - 4 or size <= 8:
            break
        size -= 1
    band = Image.new("RGB", (width, (row + 1) * line_h + 6), (255, 255, 255))
    draw = ImageDraw.Draw(band)
    for x, row, text, colour, tag, tag_w in placed:
        y = 3 + row * line_h
        if colour is not None:
            fill = tuple(int(c) for c in colour)
            draw.rectangle((x, y + 1, x + tag_w, y + line_h - 3), fill=fill, outline=(64, 64, 64))
            if tag:
                left, top, right, bottom = draw.textbbox((0, 0), tag, font=font)
                tx = x + (tag_w - (right - left)) / 2 - left
                ty = y + 1 + (line_h - 4 - (bottom - top)) / 2 - top
                draw.text((tx, ty), tag, font=font, fill=_text_colour(fill))
            x += tag_w + 4
        _, top, _, bottom = draw.textbbox((0, 0), text, font=font)
        ty = y + 1 + (line_h - 4 - (bottom - top)) / 2 - top
        draw.text((x, ty), text, font=font, fill=(0, 0, 0))
    return np.concatenate([np.asarray(band), rgb], axis=0)


def _legend_layout(
    entries: Sequence[LegendEntry], font: Any, width: int
) -> tuple[list[tuple[int, int, str, Any, str | None, int]], int, int, int]:
    """Where :func:`legend_band` puts each entry: ``(x, line, text, colour, tag, tag
    width)``, the last line's index, the widest entry and the line height."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = int(probe.textbbox((0, 0), "Hg", font=font)[3]) + 6
    gap = max(6, line_h // 2)
    placed = []
    x, row, widest = gap // 2, 0, 0
    for text, colour, tag in entries:
        tag_w = 0
        if colour is not None:
            tag_w = line_h - 4
            if tag:
                left, _, right, _ = probe.textbbox((0, 0), tag, font=font)
                tag_w = max(tag_w, int(right - left) + 6)
        left, _, right, _ = probe.textbbox((0, 0), text, font=font)
        entry_w = tag_w + (4 if tag_w else 0) + int(right - left)
        widest = max(widest, entry_w)
        if x > gap // 2 and x + entry_w > width - gap // 2:
            x, row = gap // 2, row + 1
        placed.append((x, row, text, colour, tag, tag_w))
        x += entry_w + gap
    return placed, row, widest, line_h


def draw_truth_boxes(image: np.ndarray, boxes: Any, *, thickness: int | None = None) -> np.ndarray:
    """Ground-truth boxes: a white outline edged in black on both sides, which shows on
    pale and on dark backgrounds alike (a white line alone vanishes on a pale smear).

    Args:
        image: ``(H, W, 3)`` uint8 RGB (grey also works).
        boxes: ``(N, 4)`` xyxy pixels.
        thickness: Width of the white line; default 1 px per 500 px of the longer side,
            at least 1. Each black edge is about half as wide, at least 1 px.

    Returns:
        A new ``(H, W, 3)`` uint8 RGB image.
    """
    rgb = to_rgb(image).copy()
    width = thickness or max(1, round(max(rgb.shape[:2]) / 500))
    edge = max(1, width // 2)
    for x1, y1, x2, y2 in np.round(as_array(boxes, np.float64, (-1, 4))).astype(int):
        cv2.rectangle(rgb, (x1, y1), (x2, y2), (0, 0, 0), width + 2 * edge)
        cv2.rectangle(rgb, (x1, y1), (x2, y2), (255, 255, 255), width)
    return rgb


def tag_regions(
    picture: np.ndarray,
    mask: np.ndarray,
    colors: np.ndarray,
    tags: Sequence[str],
    *,
    text_size: int | None = None,
    per_class: int = 3,
) -> np.ndarray:
    """Class tags (:func:`class_tags`) on the objects of a mask, where there is room:
    each tag sits at the point of its object farthest from the object's border, on the
    class colour, and only when it fits inside the object. At most ``per_class``
    objects of each class (the largest) are tagged; the background (class 0) never.

    Args:
        picture: ``(H, W, 3)`` uint8 RGB, usually :func:`overlay` of ``mask``.
        mask: ``(H, W)`` class indices.
        colors: ``(K, 3)`` uint8 class colours.
        tags: The K tags (the background's is not used).
        text_size: Text height in pixels; default about 1/25 of the shorter side, 12..28.
        per_class: Objects tagged per class.

    Returns:
        A new ``(H, W, 3)`` uint8 RGB image.
    """
    rgb = to_rgb(picture)
    mask = np.asarray(mask)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask {mask.shape} and picture {rgb.shape[:2]} differ in size")
    size = text_size or int(np.clip(round(min(mask.shape) / 25), 12, 28))
    font = ImageFont.load_default(size=size)
    out = Image.fromarray(np.ascontiguousarray(rgb))
    draw = ImageDraw.Draw(out)
    for index in range(1, min(len(colors), len(tags))):
        region = (mask == index).astype(np.uint8)
        if not region.any():
            continue
        left, top, right, bottom = draw.textbbox((0, 0), tags[index], font=font)
        tag_w, tag_h = right - left + 6, bottom - top + 6
        _, labelled, stats, _ = cv2.connectedComponentsWithStats(region, connectivity=8)
        largest = np.argsort(-stats[1:, cv2.CC_STAT_AREA])[:per_class] + 1
        for component in largest:
            if stats[component, cv2.CC_STAT_AREA] < 2 * tag_w * tag_h:
                break  # the rest are smaller still
            x0, y0, w, h = (int(v) for v in stats[component, :4])
            inside = (labelled[y0 : y0 + h, x0 : x0 + w] == component).astype(np.uint8)
            distance = cv2.distanceTransform(np.pad(inside, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
            cy, cx = np.unravel_index(int(np.argmax(distance)), distance.shape)
            if distance[cy, cx] < 0.5 * np.hypot(tag_w, tag_h):
                continue  # no room for the tag inside this object
            x, y = x0 + cx - tag_w / 2, y0 + cy - tag_h / 2
            fill = tuple(int(c) for c in colors[index])
            draw.rectangle((x, y, x + tag_w, y + tag_h), fill=fill, outline=(32, 32, 32))
            draw.text((x + 3 - left, y + 3 - top), tags[index], font=font, fill=_text_colour(fill))
    return np.asarray(out)


def labelled_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    classes: Sequence[str],
    colors: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`overlay` of the mask, its objects tagged with their class initials where
    there is room (:func:`tag_regions`), under a legend band naming each object class
    with its tag and share of the pixels (:func:`legend_band`).

    Args:
        image: ``(H, W, 3)`` uint8 RGB (grey also works).
        mask: ``(H, W)`` class indices.
        classes: The K class names, background first.
        colors: ``(K, 3)`` uint8 class colours; default :func:`class_colors`.

    Returns:
        ``(H + band, W, 3)`` uint8 RGB.
    """
    colors = class_colors(len(classes)) if colors is None else np.asarray(colors)
    mask = np.asarray(mask)
    tags = class_tags(classes)
    drawn = tag_regions(overlay(image, mask, colors), mask, colors, tags)
    shares = np.bincount(mask.ravel().astype(np.int64), minlength=len(classes)) / max(mask.size, 1)
    entries: list[LegendEntry] = [
        (f"{name} {100 * shares[k]:.1f} %", colors[k], tags[k])
        for k, name in enumerate(classes)
        if k > 0 or len(classes) == 1
    ]
    return legend_band(drawn, entries)


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
