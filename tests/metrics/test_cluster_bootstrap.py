"""The cluster bootstrap: whole patients are resampled when the images carry a group."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mediscope.metrics.bootstrap import (
    bootstrap_unit,
    classification_intervals,
    group_codes,
    interval_keys,
    resample_indices,
    resampled_what,
    segmentation_intervals,
)
from mediscope.metrics.detection import detection_intervals


def _patients(n_patients: int, per_patient: int, seed: int = 0):
    """Binary labels and probabilities: each patient's images are near-identical copies."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n_patients)
    right = rng.random(n_patients) < 0.7  # each patient's images are all right or all wrong
    p_true = np.where(
        right, rng.uniform(0.55, 0.95, n_patients), rng.uniform(0.05, 0.45, n_patients)
    )
    labels_i = np.repeat(labels, per_patient)
    p_true_i = np.repeat(p_true, per_patient) + rng.normal(0, 1e-4, n_patients * per_patient)
    probs = np.zeros((len(labels_i), 2))
    probs[np.arange(len(labels_i)), labels_i] = p_true_i
    probs[np.arange(len(labels_i)), 1 - labels_i] = 1 - p_true_i
    groups = [f"p{i}" for i in np.repeat(np.arange(n_patients), per_patient)]
    return labels_i, probs, groups


def test_patient_interval_is_wider_by_about_sqrt_of_images_per_patient() -> None:
    # 200 patients x 10 near-identical images: resampling images treats 2000 images as
    # independent, resampling patients sees 200 independent units, so the interval is
    # wider by sqrt(10) = 3.16. Tolerance: 15 % (the width of a 95 % percentile interval
    # from 2000 resamples varies by a few percent; measured: 2.96-3.16 over three seeds).
    labels, probs, groups = _patients(200, 10)
    codes = group_codes(groups)
    assert codes is not None and bootstrap_unit(codes, len(labels)) == ("patient", 200)
    kwargs = dict(resamples=2000, seed=0)
    by_image = classification_intervals(labels, probs, ["a", "b"], **kwargs)
    by_patient = classification_intervals(labels, probs, ["a", "b"], groups=codes, **kwargs)
    for key in ("accuracy", "auroc_macro", "f1_macro"):
        ratio = (by_patient[key].high - by_patient[key].low) / (
            by_image[key].high - by_image[key].low
        )
        assert ratio == pytest.approx(math.sqrt(10), rel=0.15), key


def test_one_image_per_patient_is_the_image_bootstrap() -> None:
    # every group of size one: same number of units, the same interval up to resampling
    labels, probs, _ = _patients(300, 1, seed=1)
    codes = group_codes([f"p{i}" for i in range(300)])
    a = classification_intervals(labels, probs, ["a", "b"], resamples=2000, seed=0)
    b = classification_intervals(labels, probs, ["a", "b"], resamples=2000, seed=0, groups=codes)
    width = a["accuracy"].high - a["accuracy"].low
    assert b["accuracy"].high - b["accuracy"].low == pytest.approx(width, rel=0.1)


def test_resample_indices_take_whole_groups() -> None:
    groups = np.array([0, 0, 0, 1, 2, 2])
    for indices in resample_indices(6, 50, 3, groups=groups):
        counts = np.bincount(groups[indices], minlength=3)
        # every drawn group comes with all its images: counts are multiples of its size
        assert counts[0] % 3 == 0 and counts[2] % 2 == 0
        assert counts.sum() == len(indices)
    plain = resample_indices(6, 50, 3)
    assert all(len(i) == 6 for i in plain)
    with pytest.raises(ValueError, match="groups"):
        resample_indices(5, 1, 0, groups=groups)


def test_group_codes_and_images_without_a_group() -> None:
    assert group_codes(None) is None
    assert group_codes(["", None]) is None
    codes = group_codes(["a", None, "a", "b", ""])
    assert codes is not None
    assert codes.tolist() == [0, 1, 0, 2, 3]  # images without a group: one each
    assert bootstrap_unit(codes, 5) == ("patient", 4)
    assert bootstrap_unit(None, 5) == ("image", 5)


def test_metrics_file_keys_and_text() -> None:
    labels, probs, groups = _patients(20, 3)
    codes = group_codes(groups)
    intervals = classification_intervals(labels, probs, ["a", "b"], resamples=50, groups=codes)
    keys = interval_keys(intervals, resamples=50, confidence=0.9, unit=bootstrap_unit(codes, 60))
    assert keys["bootstrap_unit"] == "patient"
    assert keys["bootstrap_groups"] == 20.0
    assert resampled_what(keys) == "50 resamples of the 20 patients (cluster bootstrap)"
    plain = interval_keys(intervals, resamples=50, confidence=0.9, unit=("image", 60))
    assert resampled_what(plain) == "50 resamples of the 60 images"


def test_segmentation_and_detection_take_groups() -> None:
    rng = np.random.default_rng(0)
    classes = ["bg", "fg"]
    # 30 patients x 5 copies of one image's confusion matrix
    one = rng.integers(50, 200, size=(30, 2, 2))
    confusions = np.repeat(one, 5, axis=0)
    codes = np.repeat(np.arange(30), 5)
    image = segmentation_intervals(confusions, classes, resamples=1000, seed=0)
    patient = segmentation_intervals(confusions, classes, resamples=1000, seed=0, groups=codes)
    ratio = (patient["dice_mean"].high - patient["dice_mean"].low) / (
        image["dice_mean"].high - image["dice_mean"].low
    )
    assert ratio == pytest.approx(math.sqrt(5), rel=0.2)

    preds, targets = [], []
    for _ in range(20):
        boxes = rng.uniform(0, 50, size=(3, 2))
        truth = np.hstack([boxes, boxes + 20]).astype(np.float32)
        hit = rng.random(3) < 0.6
        pred = truth + np.where(hit, 0.0, 15.0)[:, None]
        for _ in range(4):
            preds.append({"boxes": pred, "scores": rng.uniform(0.3, 1, 3), "labels": np.zeros(3)})
            targets.append({"boxes": truth, "labels": np.zeros(3)})
    det_codes = np.repeat(np.arange(20), 4)
    det_image = detection_intervals(preds, targets, ["x"], resamples=300, seed=0)
    det_patient = detection_intervals(
        preds, targets, ["x"], resamples=300, seed=0, groups=det_codes
    )
    assert (det_patient["map_50"].high - det_patient["map_50"].low) > 1.4 * (
        det_image["map_50"].high - det_image["map_50"].low
    )
