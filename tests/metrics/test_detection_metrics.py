"""COCO-style detection mAP: against pycocotools and faster-coco-eval, hand-checked cases,
the per-epoch torchmetrics accumulator, and speed."""

from __future__ import annotations

import contextlib
import io
import time
from typing import Any

import numpy as np
import pytest
import torch

from mediscope.metrics.detection import DetectionMAP, box_iou, evaluate_detections

CLASSES = ["rbc", "wbc", "platelet", "parasite"]  # "parasite" never has ground truth
STATS = [
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
]
TOLERANCE = 1e-4
#: Largest difference to each reference over all comparisons, reported at the end.
MAX_DIFFERENCE: dict[str, float] = {"pycocotools": 0.0, "faster_coco_eval": 0.0}


def random_boxes(rng: np.random.Generator, n: int, size: int = 512) -> np.ndarray:
    """Boxes of all three COCO sizes: sides from 4 to 200 px, inside the image."""
    sides = np.exp(rng.uniform(np.log(4), np.log(200), size=(n, 2)))
    corner = rng.uniform(0, size - sides)
    return np.concatenate([corner, corner + sides], axis=1)


def random_case(seed: int, n_images: int = 40) -> tuple[list[dict], list[dict]]:
    """Ground truth of three classes (the fourth absent), and predictions: jittered copies
    of some true boxes with wrong labels now and then, plus random false boxes. Some
    images are empty, some have only predictions, some only ground truth."""
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for i in range(n_images):
        n_gt = 0 if i % 7 == 0 else int(rng.integers(0, 12))
        gt_boxes = random_boxes(rng, n_gt)
        gt_labels = rng.integers(0, 3, size=n_gt)
        keep = rng.random(n_gt) < 0.8
        jitter = rng.normal(0, 0.12, size=(int(keep.sum()), 4)) * np.tile(
            gt_boxes[keep, 2:] - gt_boxes[keep, :2], 2
        )
        found = gt_boxes[keep] + jitter
        found[:, 2:] = np.maximum(found[:, 2:], found[:, :2] + 1)
        found_labels = gt_labels[keep].copy()
        swap = rng.random(len(found_labels)) < 0.1
        found_labels[swap] = rng.integers(0, 4, size=int(swap.sum()))
        n_false = 0 if i % 11 == 0 else int(rng.integers(0, 8))
        boxes = np.concatenate([found, random_boxes(rng, n_false)])
        labels = np.concatenate([found_labels, rng.integers(0, 4, size=n_false)])
        if i % 13 == 5:  # an image with ground truth and no predictions
            boxes, labels = boxes[:0], labels[:0]
        scores = rng.random(len(boxes))
        preds.append({"boxes": boxes, "scores": scores, "labels": labels})
        targets.append({"boxes": gt_boxes, "labels": gt_labels})
    return preds, targets


def coco_inputs(
    preds: list[dict], targets: list[dict], classes: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ground truth as a COCO dataset and the predictions as COCO results."""
    images, annotations, results = [], [], []
    for i, (pred, target) in enumerate(zip(preds, targets, strict=True)):
        images.append({"id": i + 1, "width": 512, "height": 512, "file_name": f"{i}.png"})
        for box, label in zip(target["boxes"], target["labels"], strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": int(label) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
        for box, score, label in zip(pred["boxes"], pred["scores"], pred["labels"], strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            results.append(
                {
                    "image_id": i + 1,
                    "category_id": int(label) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                }
            )
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def pycocotools_eval(preds: list[dict], targets: list[dict], classes: list[str]) -> Any:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset, results = coco_inputs(preds, targets, classes)
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = dataset
        truth.createIndex()
        evaluator = COCOeval(truth, truth.loadRes(results), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def faster_eval(preds: list[dict], targets: list[dict], classes: list[str]) -> Any:
    from faster_coco_eval import COCO, COCOeval_faster

    dataset, results = coco_inputs(preds, targets, classes)
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(dataset)
        evaluator = COCOeval_faster(truth, truth.loadRes(results), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def coco_value(value: float) -> float:
    """COCO writes -1 where there is no ground truth; mediscope NaN."""
    return float("nan") if value == -1 else float(value)


def per_class_ap(precision: np.ndarray, k: int) -> float:
    values = precision[:, :, k, 0, -1]
    values = values[values > -1]
    return float(values.mean()) if values.size else float("nan")


def compare(reference: str, evaluator: Any, report: Any, classes: list[str]) -> None:
    stats = [coco_value(v) for v in evaluator.stats[: len(STATS)]]
    ours = [report.metrics[key] for key in STATS]
    np.testing.assert_allclose(ours, stats, atol=TOLERANCE, rtol=0, equal_nan=True)
    theirs = np.asarray(evaluator.eval["precision"])
    per_class = [per_class_ap(theirs, k) for k in range(len(classes))]
    np.testing.assert_allclose(
        [report.metrics[f"ap/{name}"] for name in classes],
        per_class,
        atol=TOLERANCE,
        rtol=0,
        equal_nan=True,
    )
    # the whole precision array, every threshold, recall point, class, area and limit
    order = [list(report.iou_thresholds).index(t) for t in np.linspace(0.5, 0.95, 10)]
    np.testing.assert_allclose(report.precision[order], theirs, atol=TOLERANCE, rtol=0)
    recall = np.asarray(evaluator.eval["recall"])
    np.testing.assert_allclose(report.recall[order], recall, atol=TOLERANCE, rtol=0)
    difference = max(
        np.nanmax(np.abs(np.array(ours) - np.array(stats)), initial=0.0),
        np.abs(report.precision[order] - theirs).max(initial=0.0),
        np.abs(report.recall[order] - recall).max(initial=0.0),
    )
    MAX_DIFFERENCE[reference] = max(MAX_DIFFERENCE[reference], float(difference))


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_equals_pycocotools_and_faster_coco_eval(seed: int) -> None:
    preds, targets = random_case(seed)
    report = evaluate_detections(preds, targets, CLASSES)
    assert np.isnan(report.metrics["ap/parasite"])  # no ground truth: out of the mean
    assert report.metrics["gt/parasite"] == 0
    assert "parasite" not in report.curves
    compare("pycocotools", pycocotools_eval(preds, targets, CLASSES), report, CLASSES)
    compare("faster_coco_eval", faster_eval(preds, targets, CLASSES), report, CLASSES)


def test_equals_pycocotools_with_tied_scores_and_whole_pixel_boxes() -> None:
    """Scores rounded to one decimal and boxes to whole pixels: many equal scores and
    equal IoUs, so the order of ties (images, then boxes, in their given order) counts."""
    preds, targets = random_case(8, n_images=60)
    for pred, target in zip(preds, targets, strict=True):
        pred["scores"] = np.round(pred["scores"], 1)
        pred["boxes"] = np.round(pred["boxes"])
        target["boxes"] = np.round(target["boxes"])
        pred["boxes"][:, 2:] = np.maximum(pred["boxes"][:, 2:], pred["boxes"][:, :2] + 1)
        target["boxes"][:, 2:] = np.maximum(target["boxes"][:, 2:], target["boxes"][:, :2] + 1)
    report = evaluate_detections(preds, targets, CLASSES)
    compare("pycocotools", pycocotools_eval(preds, targets, CLASSES), report, CLASSES)
    compare("faster_coco_eval", faster_eval(preds, targets, CLASSES), report, CLASSES)


def test_equals_references_with_few_detections_allowed() -> None:
    """maxDets [1, 10, 100] against the default; here many boxes per image and class, so
    the limits cut."""
    rng = np.random.default_rng(7)
    preds, targets = [], []
    for _ in range(6):
        gt = random_boxes(rng, 30)
        boxes = np.concatenate([gt + rng.normal(0, 3, gt.shape), random_boxes(rng, 120)])
        preds.append(
            {"boxes": boxes, "scores": rng.random(len(boxes)), "labels": np.zeros(len(boxes))}
        )
        targets.append({"boxes": gt, "labels": np.zeros(30)})
    report = evaluate_detections(preds, targets, ["cell"])
    compare("pycocotools", pycocotools_eval(preds, targets, ["cell"]), report, ["cell"])
    compare("faster_coco_eval", faster_eval(preds, targets, ["cell"]), report, ["cell"])
    assert report.metrics["mar_1"] < report.metrics["mar_10"] < report.metrics["mar_100"]


def test_no_predictions_and_no_ground_truth() -> None:
    _, targets = random_case(3, n_images=10)
    empty = [
        {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0)} for _ in targets
    ]
    report = evaluate_detections(empty, targets, CLASSES)
    for key in ("map", "map_50", "map_75", "mar_100", "ap/rbc", "recall/wbc"):
        assert report.metrics[key] == 0.0
    assert np.isnan(report.metrics["ap/parasite"])
    reference = faster_eval(empty, targets, CLASSES)
    assert reference.stats[0] == 0 and reference.stats[8] == 0
    # nothing at all: every mean is NaN, not an error
    blank = [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0)} for _ in targets]
    nothing = evaluate_detections(empty, blank, CLASSES)
    assert all(np.isnan(nothing.metrics[key]) for key in ("map", "map_50", "mar_100"))
    assert nothing.curves == {}
    assert np.isnan(evaluate_detections([], [], CLASSES).metrics["map"])


def test_perfect_predictions_score_one() -> None:
    _, targets = random_case(4)
    perfect = [
        {
            "boxes": torch.as_tensor(t["boxes"]),
            "scores": torch.linspace(1, 0.5, len(t["boxes"])),
            "labels": torch.as_tensor(t["labels"]),
        }
        for t in targets
    ]
    metrics = evaluate_detections(perfect, targets, CLASSES).metrics
    for key in ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_100"):
        assert metrics[key] == pytest.approx(1.0)
    for name in CLASSES[:3]:
        assert metrics[f"ap/{name}"] == pytest.approx(1.0)
        assert metrics[f"recall/{name}"] == 1.0
        assert metrics[f"gt/{name}"] == sum(
            int((t["labels"] == CLASSES.index(name)).sum()) for t in targets
        )


def test_hand_checked_case() -> None:
    """Two true boxes of one class in one image; three detections.

    Scores 0.9 (IoU 0.81 with box A), 0.8 (a false box), 0.7 (IoU 0.625 with box B).
    At IoU 0.5 ranks are TP, FP, TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1; the
    envelope is 1 up to recall 0.5 and 2/3 after, so AP50 = (51 * 1 + 50 * 2/3) / 101.
    """
    truth = [{"boxes": np.array([[0, 0, 100, 100], [200, 200, 300, 300]]), "labels": [0, 0]}]
    found = [
        {
            "boxes": np.array([[0, 0, 90, 90], [400, 400, 450, 450], [200, 200, 300, 360]]),
            "scores": [0.9, 0.8, 0.7],
            "labels": [0, 0, 0],
        }
    ]
    assert box_iou(found[0]["boxes"], truth[0]["boxes"])[[0, 2], [0, 1]] == pytest.approx(
        [0.81, 0.625]
    )
    report = evaluate_detections(found, truth, ["cell"])
    expected_50 = (51 * 1 + 50 * 2 / 3) / 101
    assert report.metrics["map_50"] == pytest.approx(expected_50)
    # at 0.65 .. 0.80 only box A is found (recall 1/2, AP 51/101); above 0.81 nothing
    expected = (3 * expected_50 + 4 * 51 / 101) / 10
    assert report.metrics["map"] == pytest.approx(expected)
    assert report.metrics["map_75"] == pytest.approx(51 / 101)
    assert report.metrics["recall/cell"] == 1.0
    # one detection per image: box A only, found at the 7 thresholds 0.50 .. 0.80
    assert report.metrics["mar_1"] == pytest.approx((7 * 0.5) / 10)
    assert report.metrics["mar_100"] == pytest.approx((3 * 1 + 4 * 0.5) / 10)
    curve = report.curves["cell"]
    assert curve.recall == pytest.approx([0.5, 0.5, 1.0])
    assert curve.precision == pytest.approx([1.0, 2 / 3, 2 / 3])
    assert curve.scores == pytest.approx([0.9, 0.8, 0.7])
    # both true boxes are large (100 x 100 > 96 x 96): no small or medium ground truth
    assert np.isnan(report.metrics["map_small"]) and np.isnan(report.metrics["map_medium"])
    # for "large", the unmatched 50 x 50 false box is outside the range and ignored:
    # AP 1 wherever both true boxes are found
    assert report.metrics["map_large"] == pytest.approx((3 * 1 + 4 * 51 / 101) / 10)


def test_only_asked_thresholds_are_averaged() -> None:
    preds, targets = random_case(2, n_images=15)
    full = evaluate_detections(preds, targets, CLASSES)
    single = evaluate_detections(preds, targets, CLASSES, iou_thresholds=[0.5])
    assert single.metrics["map"] == pytest.approx(full.metrics["map_50"])
    assert single.metrics["map_75"] == pytest.approx(full.metrics["map_75"])
    assert "mar_300" in evaluate_detections(preds, targets, CLASSES, max_detections=300).metrics


def test_bad_inputs() -> None:
    good = {"boxes": np.zeros((1, 4)), "scores": np.ones(1), "labels": np.zeros(1)}
    with pytest.raises(ValueError, match="1 predictions for 2 targets"):
        evaluate_detections([good], [good, good], ["a"])
    with pytest.raises(ValueError, match=r"labels outside 0\.\.0"):
        evaluate_detections([{**good, "labels": np.array([1])}], [good], ["a"])
    with pytest.raises(ValueError, match="different lengths"):
        evaluate_detections([{**good, "scores": np.ones(2)}], [good], ["a"])
    with pytest.raises(ValueError, match="has no 'scores'"):
        evaluate_detections([{"boxes": np.zeros((1, 4)), "labels": [0]}], [good], ["a"])


def test_epoch_metric_equals_the_function() -> None:
    preds, targets = random_case(5, n_images=20)
    metric = DetectionMAP(num_classes=len(CLASSES), prefix="val/")
    for first in range(0, 20, 6):
        metric.update(
            [{k: torch.as_tensor(v) for k, v in p.items()} for p in preds[first : first + 6]],
            [{k: torch.as_tensor(v) for k, v in t.items()} for t in targets[first : first + 6]],
        )
    values = metric.compute()
    assert set(values) == {"val/map", "val/map_50", "val/map_75"}
    expected = evaluate_detections(preds, targets, CLASSES).metrics
    for key in ("map", "map_50", "map_75"):
        assert values[f"val/{key}"].item() == pytest.approx(expected[key], abs=1e-6)
    metric.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):  # torchmetrics' warning
        assert np.isnan(metric.compute()["val/map"].item())


def test_speed_500_images_of_50_boxes() -> None:
    rng = np.random.default_rng(0)
    preds, targets = [], []
    for _ in range(500):
        gt = random_boxes(rng, 50, size=2048)
        labels = rng.integers(0, 5, size=50)
        boxes = gt + rng.normal(0, 0.03, gt.shape) * np.tile(gt[:, 2:] - gt[:, :2], 2)
        preds.append({"boxes": boxes, "scores": rng.random(50), "labels": labels})
        targets.append({"boxes": gt, "labels": labels})
    start = time.perf_counter()
    report = evaluate_detections(preds, targets, [f"c{i}" for i in range(5)])
    seconds = time.perf_counter() - start
    print(f"evaluate_detections: 500 images x 50 boxes in {seconds:.3f} s")
    assert report.metrics["map_50"] > 0.9
    assert seconds < 2.0


def test_report_largest_difference() -> None:
    """Runs last in this file: prints the largest difference measured to each reference."""
    print(f"largest difference to the references: {MAX_DIFFERENCE}")
    assert all(value <= TOLERANCE for value in MAX_DIFFERENCE.values())
