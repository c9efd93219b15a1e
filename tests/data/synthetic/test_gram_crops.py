"""Tests of the synthetic Gram-stain crop generator and its drawing primitives."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from mediscope.data.synthetic import gram_crops
from mediscope.data.synthetic import stain as st
from mediscope.data.synthetic.gram_crops import (
    GRAM_CLASSES,
    SynthSummary,
    generate_gram_crops,
    render_gram_crop,
)
from mediscope.errors import DataError


def _files(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every file under ``root``."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _pngs(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in _files(root).items() if k.endswith(".png")}


def _crops(class_index: int, n: int, seed: int = 99) -> list[np.ndarray]:
    return [
        render_gram_crop(class_index, np.random.default_rng([seed, class_index, i]))
        for i in range(n)
    ]


# --- render_gram_crop -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 32, 64, 128])
@pytest.mark.parametrize("class_index", range(4))
def test_render_shape_dtype_and_content(class_index: int, size: int) -> None:
    img = render_gram_crop(class_index, np.random.default_rng(0), size=size)
    assert img.shape == (size, size, 3)
    assert img.dtype == np.uint8
    # A real picture: a bright background with something dark in it, not a flat image.
    grey = img.astype(np.float32).mean(axis=2)
    assert np.median(grey) > 100
    assert grey.min() < np.median(grey) - 30


def test_render_depends_only_on_rng_state() -> None:
    a = render_gram_crop(2, np.random.default_rng(5))
    b = render_gram_crop(2, np.random.default_rng(5))
    c = render_gram_crop(2, np.random.default_rng(6))
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 5


@pytest.mark.parametrize(("class_index", "size"), [(-1, 64), (4, 64), (0, 15)])
def test_render_rejects_bad_arguments(class_index: int, size: int) -> None:
    with pytest.raises(DataError):
        render_gram_crop(class_index, np.random.default_rng(0), size=size)


# --- generate_gram_crops: layout, determinism ----------------------------------------------


def test_layout_counts_and_metadata(tmp_path: Path) -> None:
    dst = tmp_path / "gram"
    summary = generate_gram_crops(dst, per_class=3, test_per_class=2, size=32, seed=7)

    assert isinstance(summary, SynthSummary)
    assert summary.root == dst
    assert summary.counts == {
        "train": dict.fromkeys(GRAM_CLASSES, 3),
        "test": dict.fromkeys(GRAM_CLASSES, 2),
    }
    assert (dst / "classes.txt").read_text(encoding="utf-8").splitlines() == list(GRAM_CLASSES)
    assert GRAM_CLASSES == ("G-cocci", "G+cocci", "G-bacilli", "G+bacilli")
    readme = (dst / "README.txt").read_text(encoding="utf-8")
    assert "seed: 7" in readme
    assert "G+bacilli=3" in readme and "G+bacilli=2" in readme

    for split, n in (("train", 3), ("test", 2)):
        assert sorted(p.name for p in (dst / split).iterdir()) == sorted(GRAM_CLASSES)
        for name in GRAM_CLASSES:
            files = sorted(p.name for p in (dst / split / name).iterdir())
            assert files == [f"{name}_{i:05d}.png" for i in range(n)]
    img = cv2.imread(str(dst / "train" / "G+cocci" / "G+cocci_00000.png"), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert sorted(p.name for p in dst.iterdir()) == ["README.txt", "classes.txt", "test", "train"]


def test_zero_test_images_writes_no_test_split(tmp_path: Path) -> None:
    summary = generate_gram_crops(tmp_path / "d", per_class=1, test_per_class=0, size=16)
    assert set(summary.counts) == {"train"}
    assert not (tmp_path / "d" / "test").exists()


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    generate_gram_crops(tmp_path / "a", per_class=3, test_per_class=2, size=32, seed=3)
    generate_gram_crops(tmp_path / "b", per_class=3, test_per_class=2, size=32, seed=3)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) == 4 * (3 + 2) + 2
    assert a == b


def test_different_seeds_give_different_images(tmp_path: Path) -> None:
    generate_gram_crops(tmp_path / "a", per_class=3, test_per_class=2, size=32, seed=3)
    generate_gram_crops(tmp_path / "b", per_class=3, test_per_class=2, size=32, seed=4)
    a, b = _pngs(tmp_path / "a"), _pngs(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a)


def test_every_image_is_a_different_draw(tmp_path: Path) -> None:
    # Train and test (and classes) use different per-image seeds: no two files are equal.
    generate_gram_crops(tmp_path / "a", per_class=4, test_per_class=4, size=32, seed=0)
    contents = list(_pngs(tmp_path / "a").values())
    assert len(contents) == 32
    assert len(set(contents)) == 32


def test_images_do_not_depend_on_generation_order(tmp_path: Path) -> None:
    # Image i of a class is the same whether 2 or 5 images per class are generated.
    generate_gram_crops(tmp_path / "small", per_class=2, test_per_class=1, size=32, seed=11)
    generate_gram_crops(tmp_path / "large", per_class=5, test_per_class=3, size=32, seed=11)
    small, large = _pngs(tmp_path / "small"), _pngs(tmp_path / "large")
    assert len(small) == 12
    assert all(large[k] == v for k, v in small.items())


# --- generate_gram_crops: safety -----------------------------------------------------------


def test_refuses_to_overwrite_non_empty_destination(tmp_path: Path) -> None:
    dst = tmp_path / "data"
    dst.mkdir()
    (dst / "keep.txt").write_text("precious")
    expected = (
        f"{dst}: folder exists and is not empty; "
        "choose another folder or pass overwrite=True (--overwrite)"
    )
    with pytest.raises(DataError, match=re.escape(expected)):
        generate_gram_crops(dst, per_class=1, test_per_class=1, size=16)
    assert (dst / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_overwrite_replaces_destination(tmp_path: Path) -> None:
    dst = tmp_path / "data"
    dst.mkdir()
    (dst / "old.txt").write_text("old")
    generate_gram_crops(dst, per_class=1, test_per_class=1, size=16, overwrite=True)
    assert not (dst / "old.txt").exists()
    assert (dst / "classes.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_empty_existing_destination_is_used(tmp_path: Path) -> None:
    dst = tmp_path / "empty"
    dst.mkdir()
    generate_gram_crops(dst, per_class=1, test_per_class=1, size=16)
    assert len(_pngs(dst)) == 8


def test_no_temporary_folder_left_after_success(tmp_path: Path) -> None:
    generate_gram_crops(tmp_path / "nested" / "ds", per_class=2, test_per_class=1, size=16)
    assert [p.name for p in tmp_path.iterdir()] == ["nested"]
    assert [p.name for p in (tmp_path / "nested").iterdir()] == ["ds"]


def test_failure_midway_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = gram_crops.render_gram_crop

    def flaky(class_index: int, rng: np.random.Generator, *, size: int = 64) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] > 5:
            raise RuntimeError("disk on fire")
        return real(class_index, rng, size=size)

    monkeypatch.setattr(gram_crops, "render_gram_crop", flaky)
    with pytest.raises(RuntimeError, match="disk on fire"):
        generate_gram_crops(tmp_path / "ds", per_class=3, test_per_class=1, size=16)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"per_class": 0},
        {"test_per_class": -1},
        {"size": 8},
        {"seed": -1},
    ],
)
def test_invalid_arguments_raise_data_error(tmp_path: Path, kwargs: dict[str, int]) -> None:
    with pytest.raises(DataError):
        generate_gram_crops(tmp_path / "ds", **kwargs)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


# --- the classes are separable by stain colour and shape -----------------------------------


def _object_mask(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels darker than halfway between the background (median) and the darkest pixel."""
    grey = img.astype(np.float32).mean(axis=2)
    return grey < (np.median(grey) + grey.min()) / 2, grey


def _blue_minus_red(img: np.ndarray) -> float:
    """Mean (B - R) of the object pixels, in [-1, 1]: > 0 violet, < 0 red/pink."""
    mask, _ = _object_mask(img)
    px = img[mask].astype(np.float32)
    return float((px[:, 2] - px[:, 0]).mean() / 255.0)


def _elongation(img: np.ndarray) -> float:
    """Long/short axis ratio of the dark blob that holds the darkest pixel."""
    mask, grey = _object_mask(img)
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    y, x = np.unravel_index(np.argmin(grey), grey.shape)
    ys, xs = np.nonzero(labels == labels[y, x])
    low, high = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(np.float64)))
    return float(np.sqrt(high / max(low, 1e-6)))


def test_gram_positive_objects_are_bluer_than_gram_negative() -> None:
    scores = {c: [_blue_minus_red(img) for img in _crops(c, 30)] for c in range(4)}
    for negative in (0, 2):
        assert np.median(scores[negative]) < -0.04
    for positive in (1, 3):
        assert np.median(scores[positive]) > 0.08
    # One fixed threshold sorts almost every crop by Gram type, but not trivially all
    # by a wide margin: the spreads must overlap a little or come close.
    neg = np.array(scores[0] + scores[2])
    pos = np.array(scores[1] + scores[3])
    accuracy = ((neg < 0.03).sum() + (pos >= 0.03).sum()) / (neg.size + pos.size)
    assert accuracy >= 0.9
    assert pos.min() - neg.max() < 0.1


def test_bacilli_are_more_elongated_than_cocci() -> None:
    elong = {c: np.median([_elongation(img) for img in _crops(c, 30)]) for c in range(4)}
    for cocci in (0, 1):
        assert elong[cocci] < 1.7
    for bacilli in (2, 3):
        assert elong[bacilli] > 2.2
    assert min(elong[2], elong[3]) > 1.5 * max(elong[0], elong[1])


# --- drawing primitives ---------------------------------------------------------------------


def test_draw_rod_returns_mask_and_box_along_its_axis() -> None:
    canvas = np.full((64, 64, 3), 0.9, np.float32)
    stain = st.Stain(od=st.CRYSTAL_VIOLET_OD, density=1.5)
    mark = st.draw_rod(canvas, (32.0, 32.0), 30.0, 8.0, stain, angle=0.0)
    assert mark.mask.shape == (64, 64) and mark.mask.dtype == bool
    assert mark.box is not None
    x0, y0, x1, y1 = mark.box
    assert 28 <= x1 - x0 <= 32 and 6 <= y1 - y0 <= 10
    assert abs((x0 + x1) / 2 - 32) <= 1 and abs((y0 + y1) / 2 - 32) <= 1
    # Drawn where the mask is: the object is dark and violet (blue > red), the rest untouched.
    inside = canvas[mark.mask]
    assert inside.mean() < 0.5 and (inside[:, 2] > inside[:, 0]).all()
    assert np.allclose(canvas[:10, :10], 0.9)


def test_draw_coccus_outside_canvas_returns_no_box() -> None:
    canvas = np.full((32, 32, 3), 0.9, np.float32)
    mark = st.draw_coccus(canvas, (-50.0, 10.0), 5.0, st.Stain(od=st.SAFRANIN_OD))
    assert mark.box is None and not mark.mask.any()
    assert np.allclose(canvas, 0.9)
