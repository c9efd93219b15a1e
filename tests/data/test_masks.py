"""read_mask: class-index, palette, binary and colour masks into class indices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mediscope.data.masks import read_mask
from mediscope.errors import DataError

INDEX = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
PALETTE = {"background": [0, 0, 0], "cat": [255, 0, 0], "dog": [0, 128, 255]}
CLASSES = ["background", "cat", "dog"]


def save(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def test_index_mask_mode_l(tmp_path: Path) -> None:
    mask = read_mask(save(tmp_path / "m.png", INDEX), num_classes=3)
    assert mask.dtype == np.uint8 and mask.tolist() == INDEX.tolist()


def test_palette_png_gives_the_indices_not_the_colours(tmp_path: Path) -> None:
    image = Image.frombytes("P", (INDEX.shape[1], INDEX.shape[0]), INDEX.tobytes())
    image.putpalette([0, 0, 0, 200, 30, 30, 30, 200, 30] + [0] * (256 * 3 - 9))
    image.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    assert read_mask(tmp_path / "p.png", num_classes=3).tolist() == INDEX.tolist()


def test_rgb_mask_through_the_palette(tmp_path: Path) -> None:
    colours = np.array(list(PALETTE.values()), dtype=np.uint8)
    path = save(tmp_path / "rgb.png", colours[INDEX])
    by_name = read_mask(path, num_classes=3, palette=PALETTE, classes=CLASSES)
    assert by_name.tolist() == INDEX.tolist()
    as_list = read_mask(path, num_classes=3, palette=colours.tolist(), mode="palette")
    assert as_list.tolist() == INDEX.tolist()


def test_unknown_colour_names_the_file_and_colour(tmp_path: Path) -> None:
    colours = np.array(list(PALETTE.values()), dtype=np.uint8)
    rgb = colours[INDEX]
    rgb[1, 2] = [10, 20, 30]
    path = save(tmp_path / "rgb.png", rgb)
    with pytest.raises(DataError, match=r"colour \[10, 20, 30\] is not in the palette") as info:
        read_mask(path, num_classes=3, palette=PALETTE, classes=CLASSES)
    assert info.value.where == str(path)
    ignored = read_mask(path, num_classes=3, palette=PALETTE, classes=CLASSES, ignore_index=255)
    assert ignored.tolist() == [[0, 1, 2], [2, 1, 255]]


def test_colour_mask_without_palette(tmp_path: Path) -> None:
    colours = np.array(list(PALETTE.values()), dtype=np.uint8)
    path = save(tmp_path / "rgb.png", colours[INDEX])
    with pytest.raises(DataError, match="colour mask but no palette"):
        read_mask(path, num_classes=3)
    gray = save(tmp_path / "gray_rgb.png", np.repeat(INDEX[..., None], 3, axis=2))
    assert read_mask(gray, num_classes=3).tolist() == INDEX.tolist()  # equal channels


def test_binary_0_255_becomes_0_1(tmp_path: Path) -> None:
    path = save(tmp_path / "b.png", np.array([[0, 255], [255, 0]], dtype=np.uint8))
    assert read_mask(path, num_classes=2).tolist() == [[0, 1], [1, 0]]
    assert read_mask(path, num_classes=2, mode="binary").tolist() == [[0, 1], [1, 0]]
    # 255 is the ignore value here, not the object: kept as is.
    assert read_mask(path, num_classes=2, ignore_index=255).tolist() == [[0, 255], [255, 0]]
    # With three classes 255 is no class: an error, not a silent binary mask.
    with pytest.raises(DataError, match="mask values 255 are not classes 0..2"):
        read_mask(path, num_classes=3)


def test_binary_0_1_kept(tmp_path: Path) -> None:
    path = save(tmp_path / "b.png", np.array([[0, 1], [1, 1]], dtype=np.uint8))
    assert read_mask(path, num_classes=2).tolist() == [[0, 1], [1, 1]]
    assert read_mask(path, num_classes=2, mode="binary").tolist() == [[0, 1], [1, 1]]
    bilevel = tmp_path / "bilevel.png"
    Image.fromarray(np.array([[0, 255]], dtype=np.uint8)).convert("1").save(bilevel)
    assert read_mask(bilevel, num_classes=2).tolist() == [[0, 1]]


def test_out_of_range_values_name_the_file_and_values(tmp_path: Path) -> None:
    path = save(tmp_path / "m.png", np.array([[0, 1, 3], [7, 255, 1]], dtype=np.uint8))
    with pytest.raises(DataError) as info:
        read_mask(path, num_classes=3)
    error = info.value
    assert (
        error.where == str(path) and "mask values 3, 7, 255 are not classes 0..2" in error.message
    )
    assert error.hint is not None and "data.ignore_index" in error.hint
    with pytest.raises(DataError, match="mask values 3, 7 are not"):
        read_mask(path, num_classes=3, ignore_index=255)
    with pytest.raises(DataError, match="binary mask with values 0, 1, 3, 7, 255"):
        read_mask(path, num_classes=2, mode="binary")


def test_ignore_index_is_kept(tmp_path: Path) -> None:
    path = save(tmp_path / "m.png", np.array([[0, 255], [2, 1]], dtype=np.uint8))
    assert read_mask(path, num_classes=3, ignore_index=255).tolist() == [[0, 255], [2, 1]]


def test_16_bit_mask(tmp_path: Path) -> None:
    path = tmp_path / "m16.png"
    Image.fromarray(np.array([[0, 1], [2, 300]], dtype=np.uint16)).save(path)
    with pytest.raises(DataError, match="mask values 300"):
        read_mask(path, num_classes=3)
    Image.fromarray(np.array([[0, 1], [2, 1]], dtype=np.uint16)).save(path)
    mask = read_mask(path, num_classes=3)
    assert mask.dtype == np.uint8 and mask.tolist() == [[0, 1], [2, 1]]


def test_truncated_and_missing_files(tmp_path: Path) -> None:
    path = save(tmp_path / "m.png", np.random.default_rng(0).integers(0, 3, (64, 64), np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="unreadable or truncated mask") as info:
        read_mask(path, num_classes=3)
    assert info.value.where == str(path)
    (tmp_path / "text.png").write_text("not a png")
    with pytest.raises(DataError, match="unreadable"):
        read_mask(tmp_path / "text.png", num_classes=3)
    with pytest.raises(DataError, match="mask file not found"):
        read_mask(tmp_path / "none.png", num_classes=3)


def test_bad_palettes(tmp_path: Path) -> None:
    path = save(tmp_path / "rgb.png", np.full((2, 2, 3), [255, 0, 0], dtype=np.uint8))
    with pytest.raises(DataError, match="palette classes cow are not in data.classes"):
        read_mask(path, num_classes=3, palette={"cow": [1, 2, 3]}, classes=CLASSES)
    with pytest.raises(DataError, match="given twice"):
        read_mask(path, num_classes=3, palette=[[0, 0, 0], [0, 0, 0]])
    with pytest.raises(DataError, match="colours for 2 classes"):
        read_mask(path, num_classes=2, palette=[[0, 0, 0], [255, 0, 0], [0, 255, 0]])
