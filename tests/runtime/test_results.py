"""Typed results of a model: counts, areas, tables, JSON, run-length masks, pictures,
and that they load without torch, matplotlib or pandas."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import mediscope.runtime.drawing as drawing
import mediscope.runtime.results as results
from mediscope.data.formats.coco import rle_decode as coco_rle_decode
from mediscope.runtime.results import (
    ClassificationResult,
    DetectionResult,
    SegmentationResult,
    mask_from_rle,
    rle_decode,
    rle_encode,
)

SRC = Path(__file__).resolve().parents[2] / "src"
HEAVY = (
    "torch",
    "lightning",
    "timm",
    "segmentation_models_pytorch",
    "albumentations",
    "matplotlib",
    "pandas",
)


def grey(height: int, width: int, value: int = 128) -> np.ndarray:
    return np.full((height, width, 3), value, dtype=np.uint8)


def detections() -> DetectionResult:
    return DetectionResult(
        boxes=np.array([[10.0, 20.0, 30.0, 40.0], [50.0, 5.0, 70.0, 25.0], [5, 60, 25, 75]]),
        scores=np.array([0.9, 0.3, 0.6], dtype=np.float32),
        class_indices=[0, 2, 0],
        classes=["cocci", "bacilli", "spirilla"],
        image_size=(80, 100),
        path="smear.png",
    )


def segmentation() -> SegmentationResult:
    mask = np.zeros((40, 50), dtype=np.int64)
    mask[5:15, 10:30] = 1  # 200 px
    mask[20:23, 0:5] = 2  # 15 px
    return SegmentationResult(mask, ["background", "lesion", "border"], path="skin.png")


# -- classification ------------------------------------------------------------------------


def test_classification_top_repr_and_json() -> None:
    probs = {"gram_positive": 0.25, "gram_negative": 0.7, "yeast": 0.05}
    result = ClassificationResult("gram_negative", 1, probs, path="a.png")
    assert result.top(2) == [("gram_negative", 0.7), ("gram_positive", 0.25)]
    assert result.top(10) == [("gram_negative", 0.7), ("gram_positive", 0.25), ("yeast", 0.05)]
    assert repr(result) == "ClassificationResult(label='gram_negative', p=0.70, path='a.png')"
    assert "path" not in repr(ClassificationResult("yeast", 2, probs))
    data = json.loads(result.to_json())
    assert data == {
        "task": "classification",
        "path": "a.png",
        "label": "gram_negative",
        "index": 1,
        "probabilities": probs,
        "cam_shape": None,
    }


def test_classification_overlay_needs_and_shows_the_cam() -> None:
    probs = {"a": 0.6, "b": 0.4}
    with pytest.raises(ValueError, match="no Grad-CAM"):
        ClassificationResult("a", 0, probs).overlay(grey(8, 8))
    cam = np.zeros((4, 6), dtype=np.float32)
    cam[:2, :3] = 1.0  # the top-left quarter is hot
    result = ClassificationResult("a", 0, probs, cam=cam)
    assert json.loads(result.to_json())["cam_shape"] == [4, 6]
    image = grey(40, 60)
    out = result.overlay(image)
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    hot, cold = out[5, 5].astype(int), out[35, 55].astype(int)
    # jet: hot is red, cold is blue
    assert hot[0] > hot[2] + 50 and cold[2] > cold[0] + 50
    with pytest.raises(ValueError, match=r"\(H, W\) cam"):
        ClassificationResult("a", 0, probs, cam=np.zeros((1, 4, 6)))


# -- detection -----------------------------------------------------------------------------


def test_detection_counts_names_filter_and_repr() -> None:
    result = detections()
    assert len(result) == 3
    assert result.class_names == ["cocci", "spirilla", "cocci"]
    assert result.counts() == {"cocci": 2, "bacilli": 0, "spirilla": 1}
    assert result.boxes.dtype == np.float64 and result.class_indices.dtype == np.int64
    kept = result.filter(0.5)
    assert kept is not result and len(result) == 3
    assert kept.scores.tolist() == pytest.approx([0.9, 0.6])
    assert kept.boxes.tolist() == [[10, 20, 30, 40], [5, 60, 25, 75]]
    assert kept.counts() == {"cocci": 2, "bacilli": 0, "spirilla": 0}
    assert kept.path == "smear.png" and kept.image_size == (80, 100)
    assert repr(result) == "DetectionResult(3 objects: cocci 2, spirilla 1; path='smear.png')"
    empty = result.filter(1.5)
    assert len(empty) == 0 and repr(empty) == "DetectionResult(0 objects; path='smear.png')"
    assert empty.counts() == {"cocci": 0, "bacilli": 0, "spirilla": 0}
    assert repr(result.filter(0.8)).startswith("DetectionResult(1 object: cocci 1;")


def test_detection_rejects_mismatched_arrays() -> None:
    with pytest.raises(ValueError, match="differ in number"):
        DetectionResult(np.zeros((2, 4)), np.zeros(1), [0, 0], ["a"], (8, 8))
    with pytest.raises(ValueError, match="outside 0..0"):
        DetectionResult(np.zeros((1, 4)), np.zeros(1), [1], ["a"], (8, 8))


def test_detection_dataframe_columns_and_values() -> None:
    frame = detections().to_dataframe()
    assert list(frame.columns) == [
        "x1",
        "y1",
        "x2",
        "y2",
        "score",
        "class_index",
        "class_name",
        "path",
    ]
    assert frame[["x1", "y1", "x2", "y2"]].to_numpy().tolist() == detections().boxes.tolist()
    assert frame["score"].tolist() == pytest.approx([0.9, 0.3, 0.6])
    assert frame["class_index"].tolist() == [0, 2, 0]
    assert frame["class_name"].tolist() == ["cocci", "spirilla", "cocci"]
    assert frame["path"].tolist() == ["smear.png"] * 3
    empty = detections().filter(2.0).to_dataframe()
    assert len(empty) == 0 and list(empty.columns) == list(frame.columns)


def test_detection_json_round_trip() -> None:
    result = detections()
    data = json.loads(result.to_json(indent=2))
    assert data["task"] == "detection" and data["path"] == "smear.png"
    assert data["image_size"] == [80, 100]
    assert data["classes"] == result.classes
    assert data["counts"] == result.counts()
    assert np.array_equal(np.array(data["boxes"]), result.boxes)
    assert np.array_equal(np.array(data["scores"]), result.scores)  # float32 -> float64 exact
    assert data["class_indices"] == result.class_indices.tolist()
    assert data["class_names"] == result.class_names
    again = DetectionResult(
        data["boxes"],
        data["scores"],
        data["class_indices"],
        data["classes"],
        tuple(data["image_size"]),
        data["path"],
    )
    assert again.to_dict() == result.to_dict()


def test_detection_draw_changes_box_pixels_only() -> None:
    result = DetectionResult([[20, 30, 60, 70]], [0.8], [1], ["a", "b"], (100, 120))
    image = grey(100, 120)
    out = result.draw(image)
    assert out.shape == (100, 120, 3) and out.dtype == np.uint8
    assert (image == 128).all()  # the input is left alone
    changed = (out != image).any(axis=2)
    assert changed[30:71, 20].all()  # the left edge of the box
    assert not changed[80:, :].any() and not changed[:, 80:].any()  # far from the box
    colour = drawing.class_colors(3)[2]  # class 1 -> the second object colour
    assert out[50, 20].tolist() == colour.tolist()
    names_only = result.draw(image, scores=False)
    assert not np.array_equal(names_only, out)  # no "0.80" in the tag
    with pytest.raises(ValueError, match="image size"):
        result.draw(grey(50, 50))


# -- segmentation --------------------------------------------------------------------------


def test_segmentation_areas_fractions_and_repr() -> None:
    result = segmentation()
    assert result.areas() == {"background": 2000 - 215, "lesion": 200, "border": 15}
    assert result.fractions() == {
        "background": 1785 / 2000,
        "lesion": 200 / 2000,
        "border": 15 / 2000,
    }
    assert sum(result.fractions().values()) == pytest.approx(1.0)
    assert repr(result) == (
        "SegmentationResult(40x50; lesion 10.0 %, border 0.8 %, background 89.2 %; path='skin.png')"
    )
    absent = SegmentationResult(np.zeros((3, 3), np.uint8), ["background", "lesion"])
    assert absent.areas() == {"background": 9, "lesion": 0}
    assert repr(absent) == "SegmentationResult(3x3; background 100.0 %)"


def test_segmentation_rejects_bad_masks_and_probabilities() -> None:
    with pytest.raises(ValueError, match="integer mask"):
        SegmentationResult(np.zeros((4, 4), np.float32), ["a", "b"])
    with pytest.raises(ValueError, match="outside 0..1"):
        SegmentationResult(np.full((4, 4), 2), ["a", "b"])
    with pytest.raises(ValueError, match="do not match"):
        SegmentationResult(np.zeros((4, 4), int), ["a", "b"], np.zeros((3, 4, 4)))
    probs = np.full((2, 4, 4), 0.5, dtype=np.float64)
    assert SegmentationResult(np.zeros((4, 4), int), ["a", "b"], probs).probabilities.dtype == (
        np.float32
    )


def test_segmentation_json_round_trip_restores_the_mask() -> None:
    result = segmentation()
    data = json.loads(result.to_json())
    assert data["task"] == "segmentation" and data["path"] == "skin.png"
    assert data["classes"] == result.classes
    assert data["shape"] == [40, 50]
    assert data["areas"] == result.areas()
    assert data["fractions"] == result.fractions()
    assert set(data["rle"]) == set(result.classes)
    assert np.array_equal(mask_from_rle(data["rle"], data["classes"]), result.mask)
    # each class's encoding is a COCO RLE on its own
    for index, name in enumerate(result.classes):
        assert np.array_equal(coco_rle_decode(data["rle"][name]), result.mask == index)


def test_segmentation_overlay_changes_the_object_only() -> None:
    result = segmentation()
    image = grey(40, 50)
    out = result.overlay(image, alpha=0.5)
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    changed = (out != image).any(axis=2)
    assert changed[result.mask > 0].all()
    assert not changed[result.mask == 0].any()  # background untouched
    assert not np.array_equal(result.overlay(image, alpha=0.9, contours=False), out)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    arrays(
        np.int64,
        st.tuples(st.integers(0, 9), st.integers(0, 9)),
        elements=st.integers(0, 3),
    )
)
def test_rle_round_trip(mask: np.ndarray) -> None:
    classes = ["background", "a", "b", "c"]
    data = json.loads(SegmentationResult(mask, classes).to_json())
    restored = mask_from_rle(data["rle"], classes)
    assert restored.shape == mask.shape and np.array_equal(restored, mask)
    for index, name in enumerate(classes):
        rle = data["rle"][name]
        assert sum(rle["counts"]) == mask.size
        assert np.array_equal(rle_decode(rle), mask == index)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_rle_matches_pycocotools() -> None:
    coco_mask = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(3)
    binary = rng.random((13, 17)) < 0.3
    binary[0, 0] = True  # starts with a set pixel: a leading zero run
    rle = rle_encode(binary)
    assert rle["counts"][0] == 0
    decoded = coco_mask.decode(coco_mask.frPyObjects(rle, *rle["size"]))
    assert np.array_equal(decoded.astype(bool), binary)


def test_rle_errors() -> None:
    with pytest.raises(ValueError, match="do not cover"):
        rle_decode({"size": [2, 2], "counts": [1, 1]})
    with pytest.raises(ValueError, match="no run-length"):
        mask_from_rle({}, ["a"])
    with pytest.raises(ValueError, match="unknown class"):
        mask_from_rle({"x": rle_encode(np.zeros((2, 2)))}, ["a"])
    with pytest.raises(ValueError, match="differ in size"):
        mask_from_rle({"a": rle_encode(np.zeros((2, 2))), "b": rle_encode(np.zeros((2, 3)))}, "ab")


# -- the modules themselves ----------------------------------------------------------------


@pytest.mark.parametrize("module", [results, drawing])
def test_docstring_examples_run(module: object) -> None:
    outcome = doctest.testmod(module)  # type: ignore[arg-type]
    assert outcome.attempted > 0 and outcome.failed == 0


def test_class_colors_keep_matplotlibs_tab20() -> None:
    colormaps = pytest.importorskip("matplotlib").colormaps
    table = colormaps["tab20"]
    expected = [tuple(round(255 * c) for c in table(i)[:3]) for i in range(20)]
    assert list(drawing.TAB20) == expected
    assert drawing.class_colors(28)[8:].tolist() == [list(c) for c in expected]


def test_results_and_drawing_import_without_heavy_packages() -> None:
    code = (
        "import sys\n"
        "import mediscope.runtime.results, mediscope.runtime.drawing\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
