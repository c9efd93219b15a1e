"""Boundary metrics (HD95, ASSD, NSD): hand-computed cases, empty-mask conventions, and
MONAI / MedPy as references on random masks."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage

from mediscope.metrics.surface import (
    boundary,
    class_surface_scores,
    directed_distances,
    image_surface_means,
    surface_intervals,
    surface_report,
    surface_scores,
)


def _square(shape: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[rows, cols] = True
    return mask


def test_shifted_square_by_hand() -> None:
    # a 6 x 6 square and the same square one column to the right: each outline has 20
    # pixels, 10 of which lie on the other outline (distance 0) and 10 one pixel off
    true = _square((12, 12), slice(3, 9), slice(3, 9))
    pred = _square((12, 12), slice(3, 9), slice(4, 10))
    assert boundary(true).sum() == 20
    d = directed_distances(boundary(true), boundary(pred), np.ones(2))
    assert sorted(d.tolist()) == [0.0] * 10 + [1.0] * 10
    scores = surface_scores(pred, true, tolerance=1.0)
    assert scores.hd95 == pytest.approx(1.0)
    assert scores.assd == pytest.approx(0.5)
    assert scores.nsd == pytest.approx(1.0)
    assert surface_scores(pred, true, tolerance=0.5).nsd == pytest.approx(0.5)
    # with 2 µm pixels the distances double, and a 1 µm tolerance keeps only the zeros
    in_um = surface_scores(pred, true, tolerance=1.0, spacing=2.0)
    assert (in_um.hd95, in_um.assd, in_um.nsd) == pytest.approx((2.0, 1.0, 0.5))


def test_single_pixels_three_four_five() -> None:
    true = np.zeros((10, 10), bool)
    pred = np.zeros((10, 10), bool)
    true[1, 1], pred[4, 5] = True, True
    scores = surface_scores(pred, true, tolerance=4.9)
    assert (scores.hd95, scores.assd, scores.nsd) == pytest.approx((5.0, 5.0, 0.0))
    # anisotropic pixels: rows 2 µm, columns 1 µm: sqrt(6² + 4²)
    assert surface_scores(pred, true, tolerance=1, spacing=(2.0, 1.0)).hd95 == pytest.approx(
        math.sqrt(52)
    )


def test_empty_masks_conventions() -> None:
    empty = np.zeros((30, 40), bool)
    blob = _square((30, 40), slice(5, 10), slice(5, 10))
    both_empty = surface_scores(empty, empty, tolerance=2)
    assert all(math.isnan(v) for v in (both_empty.hd95, both_empty.assd, both_empty.nsd))
    for pred, true in ((empty, blob), (blob, empty)):  # missed, and invented
        scores = surface_scores(pred, true, tolerance=2)
        assert (scores.hd95, scores.assd, scores.nsd) == (50.0, 50.0, 0.0)  # the diagonal
    assert surface_scores(empty, blob, tolerance=2, spacing=0.5).hd95 == 25.0


def test_ignored_pixels_are_not_boundary() -> None:
    true = _square((12, 12), slice(3, 9), slice(3, 9))
    pred = true.copy()
    pred[0, 0] = True  # a far speck, inside an ignored region
    valid = np.ones((12, 12), bool)
    valid[:2, :2] = False
    assert surface_scores(pred, true, tolerance=1).hd95 == pytest.approx(0.0)  # q95 of 21
    assert surface_scores(pred, true, tolerance=1).assd > 0
    assert surface_scores(pred, true, tolerance=1, valid=valid).assd == 0.0


def test_classes_images_and_split_means() -> None:
    # class 1 in both images, class 2 only in the first (absent from both in the second)
    target = np.zeros((2, 12, 12), int)
    pred = np.zeros((2, 12, 12), int)
    target[:, 3:9, 3:9] = 1
    pred[0, 3:9, 4:10] = 1  # shifted: hd95 1, assd 0.5
    pred[1, 3:9, 3:9] = 1  # exact: 0, 0
    target[0, 0, 0] = 2  # class 2 missed in image 0: the diagonal
    per_image = np.stack(
        [
            class_surface_scores(p, t, num_classes=3, tolerance=1)
            for p, t in zip(pred, target, strict=True)
        ]
    )
    assert per_image.shape == (2, 2, 3)
    assert np.isnan(per_image[1, 1]).all()
    diagonal = math.hypot(12, 12)
    report = surface_report(per_image, ["background", "a", "b"])
    assert report["hd95/a"] == pytest.approx(0.5)
    assert report["assd/a"] == pytest.approx(0.25)
    assert report["hd95/b"] == pytest.approx(diagonal)
    assert report["nsd/b"] == 0.0
    assert report["hd95_mean"] == pytest.approx((0.5 + diagonal) / 2)
    assert report["nsd_mean"] == pytest.approx(0.5)
    assert "hd95/background" not in report
    assert image_surface_means(per_image[1]) == {"hd95": 0.0, "assd": 0.0, "nsd": 1.0}
    assert math.isnan(image_surface_means(np.full((2, 3), np.nan))["hd95"])


def test_intervals_bracket_the_values() -> None:
    rng = np.random.default_rng(0)
    per_image = np.stack([rng.uniform(0, 10, size=(1, 3)) for _ in range(30)])
    per_image[:, :, 2] = rng.uniform(0, 1, size=(30, 1))
    report = surface_report(per_image, ["bg", "cell"])
    intervals = surface_intervals(per_image, ["bg", "cell"], resamples=200, seed=1)
    for key in ("hd95_mean", "assd_mean", "nsd_mean", "hd95/cell"):
        assert intervals[key].low < report[key] < intervals[key].high


def _random_masks(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    shape = tuple(rng.integers(16, 48, size=2))
    pred = ndimage.gaussian_filter(rng.random(shape), 2) > 0.5
    true = ndimage.gaussian_filter(rng.random(shape), 2) > 0.5
    return pred, true


def test_against_monai_on_random_masks() -> None:
    torch = pytest.importorskip("torch")
    metrics = pytest.importorskip("monai.metrics")
    rng = np.random.default_rng(3)
    compared = 0
    for trial in range(25):
        pred, true = _random_masks(rng)
        if not pred.any() or not true.any():
            continue
        spacing = (0.5, 0.8) if trial % 2 else None
        ours = surface_scores(pred, true, tolerance=1.5, spacing=spacing)

        def onehot(mask: np.ndarray) -> object:
            return torch.tensor(np.stack([~mask, mask])[None].astype(np.float32))

        extra = {} if spacing is None else {"spacing": spacing}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hd95 = metrics.compute_hausdorff_distance(
                onehot(pred), onehot(true), percentile=95, **extra
            )
            assd = metrics.compute_average_surface_distance(
                onehot(pred), onehot(true), symmetric=True, **extra
            )
            nsd = metrics.compute_surface_dice(onehot(pred), onehot(true), [1.5], **extra)
        assert ours.hd95 == pytest.approx(hd95.item(), rel=1e-5, abs=1e-5)
        assert ours.assd == pytest.approx(assd.item(), rel=1e-5, abs=1e-5)
        assert ours.nsd == pytest.approx(nsd.item(), abs=1e-6)
        compared += 1
    assert compared >= 20


def test_directed_distances_against_medpy() -> None:
    binary = pytest.importorskip("medpy.metric.binary")
    rng = np.random.default_rng(4)
    for _ in range(15):
        pred, true = _random_masks(rng)
        if not pred.any() or not true.any():
            continue
        ours = directed_distances(boundary(pred), boundary(true), np.array([0.7, 1.3]))
        # medpy's asd is the mean distance of pred's outline to true's
        assert ours.mean() == pytest.approx(binary.asd(pred, true, voxelspacing=(0.7, 1.3)))
        # and its hd the largest of both directions: our HD100
        back = directed_distances(boundary(true), boundary(pred), np.ones(2))
        both = max(directed_distances(boundary(pred), boundary(true), np.ones(2)).max(), back.max())
        assert both == pytest.approx(binary.hd(pred, true))
