"""Segmentation pictures: class colours, palette mask PNGs, overlays, probability maps,
best/worst selection and galleries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mediscope.errors import DataError
from mediscope.inference.pictures import (
    OKABE_ITO,
    class_colors,
    load_probability_map,
    overlay,
    save_mask_png,
    save_probability_map,
)
from mediscope.reports.segmentation import (
    HEADER_HEIGHT,
    ROW_HEIGHT,
    GalleryItem,
    best_and_worst,
    write_gallery,
)

SKIN = np.array([222, 178, 150])


def disc(height: int, width: int, cy: float, cx: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return np.hypot(yy - cy, xx - cx) < radius


def skin_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = SKIN + rng.normal(0, 6, (height, width, 3))
    image[disc(height, width, height / 2, width / 2, min(height, width) / 4)] = (110, 70, 50)
    return np.clip(image, 0, 255).astype(np.uint8)


def test_class_colors_black_background_then_distinct_and_visible_on_skin() -> None:
    colors = class_colors(30)
    assert colors.shape == (30, 3) and colors.dtype == np.uint8
    assert colors[0].tolist() == [0, 0, 0]
    assert [tuple(c) for c in colors[1:8].tolist()] == list(OKABE_ITO)
    assert len({tuple(c) for c in colors.tolist()}) == 30
    # the first object colours stand out against skin tones
    assert all(np.linalg.norm(colors[i].astype(float) - SKIN) > 80 for i in (1, 2, 3))
    assert class_colors(1).shape == (1, 3) and class_colors(0).shape == (0, 3)


def test_mask_png_reads_back_as_indices_and_shows_the_palette(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    mask = rng.integers(0, 4, size=(37, 53)).astype(np.int64)
    mask[:3] = 255  # ignored pixels survive too
    colors = class_colors(4)
    path = save_mask_png(tmp_path / "masks" / "a.png", mask, colors)
    with Image.open(path) as image:
        assert image.mode == "P" and image.size == (53, 37)
        assert np.array_equal(np.asarray(image), mask)
        palette = np.array(image.getpalette()[: 3 * 256]).reshape(256, 3)
        rgb = np.asarray(image.convert("RGB"))
    assert np.array_equal(palette[:4], colors)
    assert np.array_equal(rgb[10, 10], colors[mask[10, 10]])
    assert rgb[0, 0].tolist() == [255, 255, 255]
    assert [p.name for p in path.parent.iterdir()] == ["a.png"]  # no temporary left


def test_bad_mask_raises_and_writes_nothing(tmp_path: Path) -> None:
    colors = class_colors(2)
    with pytest.raises(DataError, match=r"bad.png: mask values 0..300"):
        save_mask_png(tmp_path / "bad.png", np.array([[0, 300]]), colors)
    with pytest.raises(DataError, match="2-D array of class indices"):
        save_mask_png(tmp_path / "bad.png", np.zeros((4, 4), dtype=np.float32), colors)
    assert list(tmp_path.iterdir()) == []


def test_overlay_colours_objects_draws_contours_and_leaves_background() -> None:
    image = skin_image(80, 120)
    mask = np.zeros((80, 120), dtype=np.uint8)
    mask[disc(80, 120, 40, 40, 20)] = 1
    mask[10:30, 80:110] = 2
    mask[70:, :] = 255  # ignore: untouched like the background
    colors = class_colors(3)
    out = overlay(image, mask, colors, thickness=2)
    assert out.shape == image.shape and out.dtype == np.uint8

    untouched = (mask == 0) | (mask == 255)
    assert np.array_equal(out[untouched], image[untouched])
    objects = (mask == 1) | (mask == 2)
    assert (out[objects] != image[objects]).any(axis=1).all()
    # inside, far from the outline: 55 % image + 45 % class colour, by hand
    inside = (40, 40)
    expected = np.rint(0.55 * image[inside] + 0.45 * colors[1]).astype(np.uint8)
    assert np.array_equal(out[inside], expected)
    assert np.array_equal(out[20, 95], np.rint(0.55 * image[20, 95] + 0.45 * colors[2]))
    # the outline is in the class's own colour on the object's border pixels
    assert np.array_equal(out[40, 21], colors[1]) and np.array_equal(out[40, 59], colors[1])
    assert np.array_equal(out[10, 95], colors[2]) and np.array_equal(out[29, 95], colors[2])
    assert np.array_equal(out[20, 80], colors[2]) and np.array_equal(out[20, 109], colors[2])
    assert not np.array_equal(out[15, 95], colors[2])  # 5 px inside: fill, not outline

    plain = overlay(image, mask, colors, contours=False)
    assert np.array_equal(plain[10, 95], np.rint(0.55 * image[10, 95] + 0.45 * colors[2]))
    grey = overlay(image[:, :, :1], mask, colors)
    assert grey.shape == (80, 120, 3)
    assert np.array_equal(grey[mask == 0], np.repeat(image[:, :, :1], 3, axis=2)[mask == 0])


def test_objects_get_class_tags_where_there_is_room_and_a_legend_band() -> None:
    from mediscope.inference.pictures import labelled_overlay, tag_regions

    classes = ["background", "nevus", "melanoma"]
    colors = class_colors(3)
    image = np.full((200, 200, 3), 90, dtype=np.uint8)
    mask = np.zeros((200, 200), dtype=np.uint8)
    mask[40:160, 40:160] = 1  # room for a tag
    mask[5:9, 180:184] = 2  # none
    base = overlay(image, mask, colors)
    tagged = tag_regions(base, mask, colors, ["", "N", "M"])
    changed = (tagged != base).any(axis=-1)
    ys, xs = np.nonzero(changed)
    assert changed.any() and 60 < ys.mean() < 140 and 60 < xs.mean() < 140  # inside nevus
    assert not changed[:20, 170:].any()  # the small melanoma stays untagged
    assert (tagged[changed] == colors[1]).all(axis=-1).mean() > 0.3  # on the class colour
    shown = labelled_overlay(image, mask, classes)
    band = shown.shape[0] - 200
    assert band > 0 and shown.shape[1] == 200
    np.testing.assert_array_equal(shown[band:], tagged)
    for colour in colors[1:]:  # a swatch of each object class in the band
        assert (shown[:band] == colour).all(axis=-1).any()


def test_probability_map_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(3, 20, 30))
    probs = np.exp(logits) / np.exp(logits).sum(axis=0)
    path = save_probability_map(tmp_path / "p.npz", probs.astype(np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]
    with np.load(path) as archive:
        assert archive["probabilities"].dtype == np.float16
    back = load_probability_map(path)
    assert back.shape == (3, 20, 30) and back.dtype == np.float32
    np.testing.assert_allclose(back, probs, atol=1e-3)
    with pytest.raises(ValueError, match=r"\(K, H, W\)"):
        save_probability_map(tmp_path / "q.npz", probs[0])
    (tmp_path / "junk.npz").write_text("not an archive")
    with pytest.raises(DataError, match="junk.npz: not a probability map"):
        load_probability_map(tmp_path / "junk.npz")


def test_best_and_worst_order_ties_and_small_sets() -> None:
    scores = [("d", 0.5), ("a", 0.9), ("c", 0.5), ("b", 0.1), ("e", float("nan")), ("f", 0.9)]
    best, worst = best_and_worst(scores, 3)
    assert best == ["a", "f", "c"]  # 0.9 ties by id, then the first 0.5 by id
    assert worst == ["b", "c", "d"]
    best, worst = best_and_worst(scores, 10)  # more than there are: all scored ones
    assert best == ["a", "f", "c", "d", "b"] and worst == ["b", "c", "d", "a", "f"]
    assert best_and_worst(scores, 0) == ([], [])
    assert best_and_worst([], 5) == ([], [])


MAGENTA = (255, 0, 255)


def magenta_items(k: int, size: tuple[int, int] = (60, 80)) -> list[GalleryItem]:
    """Rows whose images are plain magenta, a colour nothing else in a gallery has."""
    height, width = size
    items = []
    for i in range(k):
        image = np.empty((height, width, 3), dtype=np.uint8)
        image[:] = MAGENTA
        target = disc(height, width, height / 2, width / 2, height / 4).astype(np.uint8)
        pred = np.roll(target, 3 * i, axis=1)
        items.append(GalleryItem(image, target, pred, title=f"img/val/case-{i}", score=1 - i / 10))
    return items


def magenta_runs(png: Path) -> int:
    """Bands of pixel rows that show magenta: one per gallery row."""
    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    is_magenta = (np.abs(pixels - np.array(MAGENTA)).sum(axis=2) < 30).any(axis=1)
    return int(np.sum(is_magenta[1:] & ~is_magenta[:-1]) + is_magenta[0])


@pytest.mark.parametrize("k", [1, 3])
def test_gallery_has_one_row_per_sample_and_a_predictable_size(tmp_path: Path, k: int) -> None:
    colors = class_colors(2)
    path = write_gallery(
        tmp_path / "plots" / "val_best.png",
        magenta_items(k),
        colors=colors,
        class_names=["background", "lesion"],
        title=f"val: the {k} best images by Dice",
        dpi=100,
    )
    assert [p.name for p in path.parent.iterdir()] == ["val_best.png"]
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"))
    panel = ROW_HEIGHT * 80 / 60  # the images are 4:3
    assert width == round((3 * panel + 0.3) * 100)
    assert height == round((HEADER_HEIGHT + k * ROW_HEIGHT) * 100)
    assert magenta_runs(path) == k
    # the lesion colour is on show: legend, fills and outlines
    assert (np.abs(pixels.astype(int) - colors[1]).sum(axis=2) == 0).sum() > 100


def test_gallery_of_big_grey_images_without_ground_truth(tmp_path: Path) -> None:
    image = skin_image(900, 1200)[:, :, :1]  # one channel, larger than a panel
    pred = disc(900, 1200, 450, 600, 225).astype(np.uint8)
    items = [GalleryItem(image, None, pred, title="x" * 200, score=None)]
    path = write_gallery(
        tmp_path / "g.png",
        items,
        colors=class_colors(2),
        class_names=["background", "lesion"],
        title="no truth",
    )
    with Image.open(path) as png:
        assert png.size == (round((3 * ROW_HEIGHT * 4 / 3 + 0.3) * 100), 325)


def test_empty_gallery_still_writes_a_picture(tmp_path: Path) -> None:
    path = write_gallery(
        tmp_path / "g.png", [], colors=class_colors(2), class_names=["a", "b"], title="none"
    )
    with Image.open(path) as png:
        assert png.size[1] == round((HEADER_HEIGHT + ROW_HEIGHT) * 100)
