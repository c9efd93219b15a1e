"""Tests of the synthetic dermoscopy lesion generator and its ``data synth lesions`` command."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from mediscope.data.synthetic import lesions
from mediscope.data.synthetic.lesions import (
    AREA_RANGE,
    LESION_CLASSES,
    MELANOMA,
    MULTICLASS_LESION_CLASSES,
    NEVUS,
    LesionSummary,
    generate_lesions,
    render_lesion_image,
)
from mediscope.errors import DataError


def _files(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every file under ``root``."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _mask(path: Path) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert mask is not None, path
    return np.asarray(mask)


def _renders(n: int, size: int | tuple[int, int] = 64, seed: int = 5) -> list[Any]:
    return [render_lesion_image(np.random.default_rng([seed, i]), size=size) for i in range(n)]


@pytest.fixture(scope="module")
def multiclass_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LesionSummary]:
    root = tmp_path_factory.mktemp("lesions") / "multi"
    summary = generate_lesions(root, train=16, val=4, test=4, size=48, seed=2, multiclass=True)
    return root, summary


# --- render_lesion_image ------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 32, (40, 56), 128])
def test_render_shapes_dtypes_and_values(size: int | tuple[int, int]) -> None:
    image, mask = render_lesion_image(np.random.default_rng(0), size=size)
    h, w = (size, size) if isinstance(size, int) else size
    assert image.shape == (h, w, 3) and image.dtype == np.uint8
    assert mask.shape == (h, w) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) <= {0, NEVUS, MELANOMA}


def test_render_depends_only_on_rng_state() -> None:
    a = render_lesion_image(np.random.default_rng(7))
    b = render_lesion_image(np.random.default_rng(7))
    c = render_lesion_image(np.random.default_rng(8))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert np.abs(a[0].astype(int) - c[0].astype(int)).mean() > 5


def test_lesion_area_stays_in_the_stated_range() -> None:
    lo, hi = AREA_RANGE
    assert (lo, hi) == (0.10, 0.60)
    shares = [float((mask > 0).mean()) for _, mask in _renders(60)]
    assert min(shares) >= lo and max(shares) <= hi
    # Sizes really vary: both small and large lesions occur.
    assert min(shares) < 0.2 and max(shares) > 0.4


def test_images_look_like_dermoscopy() -> None:
    for image, mask in _renders(30, size=96):
        grey = image.astype(np.float32).mean(axis=2)
        h, w = grey.shape
        yy, xx = np.mgrid[0:h, 0:w]
        rho = np.hypot(yy - h / 2, xx - w / 2) / (0.5 * np.hypot(h, w))  # 1 at the corners
        skin = (rho < 0.6) & (mask == 0)
        if skin.sum() < 50:  # a lesion fills the whole middle: compare with the ring around
            skin = (rho < 0.75) & (mask == 0)
        skin_grey = grey[skin]
        # The lesion is pigmented: clearly darker than the skin around it.
        assert grey[mask > 0].mean() < 0.8 * skin_grey.mean()
        # Skin is textured, not a flat colour.
        assert skin_grey.std() > 2.0
        # The dermoscope's round field leaves the corners darker than the skin in the middle.
        assert grey[rho > 0.95].mean() < 0.8 * skin_grey.mean()
        # Skin tones are warm (red above blue), as under a dermoscope's white light.
        assert image[..., 0][skin].mean() > image[..., 2][skin].mean()


def test_skin_tone_varies_between_images() -> None:
    means = []
    for image, mask in _renders(40, size=48):
        means.append(image[mask == 0].astype(np.float32).mean())
    assert max(means) - min(means) > 40


def test_melanoma_like_lesions_are_darker_and_less_regular_than_nevus_like() -> None:
    darkness = {NEVUS: [], MELANOMA: []}
    roundness = {NEVUS: [], MELANOMA: []}
    for image, mask in _renders(60, size=96, seed=11):
        grey = image.astype(np.float32).mean(axis=2)
        for kind in (NEVUS, MELANOMA):
            region = (mask == kind).astype(np.uint8)
            if region.sum() < 100:
                continue
            darkness[kind].append(float(grey[region > 0].mean()))
            contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            largest = max(contours, key=cv2.contourArea)
            hull = cv2.convexHull(largest)
            roundness[kind].append(cv2.contourArea(largest) / max(cv2.contourArea(hull), 1.0))
    assert len(darkness[NEVUS]) > 10 and len(darkness[MELANOMA]) > 10
    assert np.mean(darkness[MELANOMA]) < np.mean(darkness[NEVUS]) - 10
    # Solidity (area / convex hull area): nevi are convex ovals, melanomas lobed.
    assert np.mean(roundness[NEVUS]) > 0.95
    assert np.mean(roundness[MELANOMA]) < np.mean(roundness[NEVUS]) - 0.03


def test_hairs_cross_the_lesion_but_never_change_the_mask(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rngs = [np.random.default_rng([21, i]) for i in range(12)]
    with_hair = [render_lesion_image(rng, size=64) for rng in rngs]
    real = lesions._hair_od

    def hairless(h: int, w: int, u: float, rng: np.random.Generator) -> np.ndarray:
        return real(h, w, u, rng) * 0.0  # same random draws, nothing drawn

    monkeypatch.setattr(lesions, "_hair_od", hairless)
    without = [render_lesion_image(np.random.default_rng([21, i]), size=64) for i in range(12)]
    hair_on_lesion = 0
    for (image, mask), (bare, bare_mask) in zip(with_hair, without, strict=True):
        assert np.array_equal(mask, bare_mask)
        darker = bare.astype(int).sum(axis=2) - image.astype(int).sum(axis=2) > 30
        assert np.all(image.astype(int).sum(axis=2) <= bare.astype(int).sum(axis=2) + 3)
        hair_on_lesion += int(np.any(darker & (mask > 0)))
    assert hair_on_lesion >= 3


def test_hair_draws_thin_dark_curves() -> None:
    # Over several draws, some images get hairs: thin lines covering a small share of pixels.
    shares = []
    for i in range(20):
        od = lesions._hair_od(128, 128, 1.0, np.random.default_rng(i))
        shares.append(float((od[..., 1] > 0.3).mean()))
    assert min(shares) == 0.0  # some images have no hair
    assert 0.0 < np.median([s for s in shares if s > 0]) < 0.1


def test_mask_edge_is_where_the_pigment_fades_to_half() -> None:
    # Exact alignment: the mask is f < 1, and the drawn coverage is 0.5 at f == 1.
    f = np.linspace(0.5, 1.5, 101, dtype=np.float32)[None, :].repeat(3, 0)
    lesion = lesions._Lesion(kind=NEVUS, f=f, radius=20.0, centre=(1.0, 50.0))
    coverage = lesions._coverage(lesion, 1.0, np.random.default_rng(0))
    assert coverage[1, 50] == pytest.approx(0.5, abs=1e-6)
    assert np.all(coverage[:, :50] > 0.5) and np.all(coverage[:, 51:] < 0.5)


def test_normalise_to_area_hits_the_area_exactly() -> None:
    field = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    scaled = lesions._normalise_to_area(field, 0.3)
    assert int((scaled < 1.0).sum()) == 600  # 30 % of 2000 pixels


def test_render_rejects_a_tiny_size() -> None:
    with pytest.raises(DataError, match="at least 16 px"):
        render_lesion_image(np.random.default_rng(0), size=(15, 64))


# --- generate_lesions -----------------------------------------------------------------------


def test_layout_counts_and_metadata(tmp_path: Path) -> None:
    dst = tmp_path / "lesions"
    summary = generate_lesions(dst, train=3, val=2, test=1, size=32, seed=4)
    assert summary.root == dst
    assert summary.classes == LESION_CLASSES == ("background", "lesion")
    assert summary.counts == {"train": 3, "val": 2, "test": 1}
    assert sorted(p.name for p in dst.iterdir()) == ["README.txt", "classes.txt", "img", "labels"]
    assert (dst / "classes.txt").read_text(encoding="utf-8") == "background\nlesion\n"
    readme = (dst / "README.txt").read_text(encoding="utf-8")
    assert "seed: 4" in readme and "train=3, val=2, test=1" in readme
    for split, n in summary.counts.items():
        images = sorted(p.name for p in (dst / "img" / split).iterdir())
        labels = sorted(p.name for p in (dst / "labels" / split).iterdir())
        assert images == [f"{split}_{i:04d}.jpg" for i in range(n)]
        assert [Path(x).stem for x in labels] == [Path(x).stem for x in images]
        assert all(x.endswith(".png") for x in labels)
    image = cv2.imread(str(dst / "img" / "val" / "val_0001.jpg"), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.shape == (32, 32, 3) and image.dtype == np.uint8
    mask = _mask(dst / "labels" / "val" / "val_0001.png")
    assert mask.shape == (32, 32) and mask.dtype == np.uint8  # single channel


def test_binary_masks_hold_0_and_1_and_match_the_pixel_shares(tmp_path: Path) -> None:
    summary = generate_lesions(tmp_path / "d", train=6, val=2, test=2, size=32, seed=1)
    masks = [_mask(p) for p in sorted((tmp_path / "d" / "labels").rglob("*.png"))]
    assert len(masks) == 10
    assert set(np.unique(np.stack(masks)).tolist()) == {0, 1}
    lesion_share = float(np.mean([(m == 1).mean() for m in masks]))
    assert summary.pixel_shares["lesion"] == pytest.approx(lesion_share)
    assert sum(summary.pixel_shares.values()) == pytest.approx(1.0)
    assert summary.lesions["lesion"] >= 10  # every image has at least one lesion


def test_multiclass_has_both_kinds_and_same_images_as_binary(
    multiclass_set: tuple[Path, LesionSummary], tmp_path: Path
) -> None:
    root, summary = multiclass_set
    assert summary.classes == MULTICLASS_LESION_CLASSES == ("background", "nevus", "melanoma")
    assert (root / "classes.txt").read_text().splitlines() == list(MULTICLASS_LESION_CLASSES)
    masks = {p.name: _mask(p) for p in (root / "labels").rglob("*.png")}
    values = np.unique(np.stack(list(masks.values())))
    assert values.tolist() == [0, 1, 2]
    assert summary.lesions["nevus"] > 0 and summary.lesions["melanoma"] > 0
    assert all(summary.pixel_shares[c] > 0.05 for c in ("nevus", "melanoma"))
    # --multiclass only splits the lesion label: the images and the lesion regions are equal.
    binary = tmp_path / "binary"
    generate_lesions(binary, train=16, val=4, test=4, size=48, seed=2)
    for rel, content in _files(root).items():
        if rel.endswith(".jpg"):
            assert (binary / rel).read_bytes() == content
    for name, mask in masks.items():
        split = name.split("_")[0]
        assert np.array_equal(_mask(binary / "labels" / split / name), (mask > 0).astype(np.uint8))


def test_lesion_area_of_written_masks_is_in_range(
    multiclass_set: tuple[Path, LesionSummary],
) -> None:
    root, _ = multiclass_set
    for path in (root / "labels").rglob("*.png"):
        share = float((_mask(path) > 0).mean())
        assert AREA_RANGE[0] <= share <= AREA_RANGE[1], path.name


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    generate_lesions(tmp_path / "a", train=3, val=1, test=1, size=32, seed=9)
    generate_lesions(tmp_path / "b", train=3, val=1, test=1, size=32, seed=9)
    generate_lesions(tmp_path / "c", train=3, val=1, test=1, size=32, seed=10)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) == 2 * 5 + 2
    assert a == b
    images = [k for k in a if k.endswith(".jpg")]
    assert all(a[k] != c[k] for k in images)


def test_images_do_not_depend_on_counts(tmp_path: Path) -> None:
    generate_lesions(tmp_path / "small", train=2, val=1, test=0, size=32, seed=3)
    generate_lesions(tmp_path / "large", train=4, val=2, test=2, size=32, seed=3)
    small, large = _files(tmp_path / "small"), _files(tmp_path / "large")
    pairs = [k for k in small if k.startswith(("img/", "labels/"))]
    assert len(pairs) == 6
    assert all(large[k] == small[k] for k in pairs)
    assert not (tmp_path / "small" / "img" / "test").exists()  # a split of 0 is not written


def test_every_image_is_a_different_draw(tmp_path: Path) -> None:
    generate_lesions(tmp_path / "d", train=4, val=4, test=4, size=32, seed=0)
    images = [v for k, v in _files(tmp_path / "d").items() if k.endswith(".jpg")]
    assert len(set(images)) == 12


def test_non_square_size(tmp_path: Path) -> None:
    generate_lesions(tmp_path / "d", train=1, val=0, test=0, size=(40, 64))
    image = cv2.imread(str(tmp_path / "d" / "img" / "train" / "train_0000.jpg"))
    assert image is not None and image.shape == (40, 64, 3)
    assert _mask(tmp_path / "d" / "labels" / "train" / "train_0000.png").shape == (40, 64)


def test_refuses_a_non_empty_destination_and_writes_nothing(tmp_path: Path) -> None:
    dst = tmp_path / "data"
    dst.mkdir()
    (dst / "keep.txt").write_text("precious")
    with pytest.raises(DataError, match="not empty") as caught:
        generate_lesions(dst, train=2, val=1, test=1, size=32)
    assert caught.value.where == str(dst.resolve())
    assert caught.value.hint is not None and "overwrite" in caught.value.hint
    assert [p.name for p in dst.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_overwrite_replaces_the_destination(tmp_path: Path) -> None:
    dst = tmp_path / "data"
    dst.mkdir()
    (dst / "old.txt").write_text("old")
    generate_lesions(dst, train=1, val=1, test=1, size=32, overwrite=True)
    assert not (dst / "old.txt").exists()
    assert (dst / "classes.txt").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_failure_midway_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = lesions.render_lesion_image

    def flaky(rng: np.random.Generator, *, size: int | tuple[int, int] = 128) -> Any:
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("disk on fire")
        return real(rng, size=size)

    monkeypatch.setattr(lesions, "render_lesion_image", flaky)
    with pytest.raises(RuntimeError, match="disk on fire"):
        generate_lesions(tmp_path / "ds", train=3, val=2, test=1, size=16)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "where"),
    [
        ({"train": 0}, "train"),
        ({"val": -1}, "val"),
        ({"test": -2}, "test"),
        ({"seed": -1}, "seed"),
        ({"size": 8}, "size"),
        ({"size": (64, 12)}, "size"),
    ],
)
def test_bad_arguments_are_refused_before_writing(
    tmp_path: Path, kwargs: dict[str, Any], where: str
) -> None:
    with pytest.raises(DataError) as caught:
        generate_lesions(tmp_path / "d", **kwargs)
    assert caught.value.where == where and caught.value.hint
    assert list(tmp_path.iterdir()) == []


# --- CLI ------------------------------------------------------------------------------------


def test_cli_writes_the_dataset_and_ends_with_its_path(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    dst = tmp_path / "lesions"
    args = ["data", "synth", "lesions", dst, "--train", "3", "--val", "1", "--test", "1"]
    result = cli(*args, "--size", "32", "--seed", "2", "--multiclass")
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    assert lines[:3] == ["train: 3 images", "val: 1 images", "test: 1 images"]
    assert lines[3].startswith("lesions: nevus ")
    assert lines[4].startswith("pixels: background ") and "melanoma" in lines[4]
    assert lines[-1] == f"data: {dst}"
    assert len(list((dst / "img" / "train").iterdir())) == 3


def test_cli_refuses_a_non_empty_destination(cli: Callable[..., Any], tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("x")
    result = cli("data", "synth", "lesions", tmp_path, "--train", "1", "--size", "16")
    assert result.code == 2
    assert "not empty" in result.err and "--overwrite" in result.err
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]
