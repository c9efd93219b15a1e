"""Per-class count errors on large synthetic smears for NMS, WBF and the tile-edge merge.

Trains the detection demo (its data, config and epoch budget: ``mediscope demo
gram-stain``) once and keeps the run under ``--dir`` (later runs reuse it), then counts
the bacteria of large smears with known truth: the demo's 1,600 x 1,200 smear and
``--smears`` smears of 2,000 x 1,500 (seed 1), drawn at the training magnification.
For each merge method (``inference.merge``) the model predicts every smear in tiles
(the run's counting threshold, its F1-optimal score on validation) and the per-class
counts are compared with the labels: mean absolute count error and mean relative error
(|counted - true| / true) per class, over the smears, and for the demo's smear alone.
Each smear's density of objects is given relative to the training tiles' mean, and for
the ``edge`` merge each smear's confusion matrix (true class against counted class at
IoU 0.5, missed objects, detections of no object) says where its count errors come
from, and the class-oracle counts (each box given the class of the true object under it)
how much of them no reclassification of the boxes can fix. ``--train-images`` trains on
more (or fewer) tiles made as the demo makes its own.
When the run's flipped views vote (``inference.tta``, the demo's setting), the same
weights also count with one view (``edge``), at the threshold a validation with one
view calibrates (on a copy of the run): the votes' baseline, in the same results.
Results: ``benchmarks/results/counting.json`` (or ``--output``).

Usage:
    python benchmarks/counting.py [--dir CACHE] [--epochs 8] [--smears 2]
        [--train-images 200] [--output FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import time
from pathlib import Path

import numpy as np

from mediscope.files import write_json_atomic

RESULTS = Path(__file__).parent / "results" / "counting.json"
METHODS = ("nms", "wbf", "edge")
#: Tiles the demo trains and validates on (``mediscope.demo.smear_data``).
DEMO_IMAGES = 200


def truth_boxes(label_file: Path, width: int, height: int) -> dict[str, np.ndarray]:
    """The boxes (pixels, x1 y1 x2 y2) and labels of a YOLO label file."""
    rows = [line.split() for line in label_file.read_text().splitlines() if line.strip()]
    table = np.array(rows, dtype=np.float64).reshape(-1, 5)
    x, y, w, h = (
        table[:, 1] * width,
        table[:, 2] * height,
        table[:, 3] * width,
        table[:, 4] * height,
    )
    boxes = np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=1)
    return {"boxes": boxes, "labels": table[:, 0].astype(np.int64)}


def class_oracle_counts(
    found: dict[str, np.ndarray], truth: dict[str, np.ndarray], classes: int
) -> list[int]:
    """Counts if every detection took the class of the true object it overlaps most (IoU
    above 0.1; others keep their own): the count errors left are the detector's misses,
    duplicates and detections of nothing, the part no reclassification of the boxes fixes."""
    from mediscope.metrics.detection import box_iou

    labels = np.asarray(found["labels"], np.int64).copy()
    if len(labels) and len(truth["labels"]):
        iou = box_iou(np.asarray(found["boxes"], np.float64), truth["boxes"])
        near = iou.max(axis=1) > 0.1
        labels[near] = truth["labels"][iou.argmax(axis=1)[near]]
    return np.bincount(labels, minlength=classes).tolist()


def truth_counts(label_file: Path, classes: int) -> list[int]:
    """Objects per class of a YOLO label file."""
    counts = [0] * classes
    for line in label_file.read_text().splitlines():
        if line.strip():
            counts[int(line.split()[0])] += 1
    return counts


class CachedDetections:
    """A backend wrapper that detects each tile batch once: the merge methods compared
    see the same tile detections, and the network runs once per tile."""

    def __init__(self, backend: object) -> None:
        self.backend = backend
        self.name = getattr(backend, "name", "eager")
        self.cache: dict[bytes, list] = {}

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self.backend.run(batch)  # type: ignore[attr-defined,no-any-return]

    def detect(self, batch: np.ndarray, **settings: float) -> list:
        key = hashlib.sha1(np.ascontiguousarray(batch).tobytes()).digest()
        if key not in self.cache:
            self.cache[key] = self.backend.detect(batch, **settings)  # type: ignore[attr-defined]
        return self.cache[key]


class ColourDetector:
    """A perfect detector of what a tile shows: squares of a pure colour, channel k
    being class k (an object cut by the tile edge is reported as its visible part)."""

    name = "eager"

    def detect(self, batch: np.ndarray, **_: float) -> list:
        import cv2

        found = []
        for tile in batch:
            boxes, labels = [], []
            for k, plane in enumerate(tile):
                mask = ((plane > 0.5) & (tile.sum(axis=0) < 1.5)).astype(np.uint8)
                count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
                boxes += [[x, y, x + w, y + h] for x, y, w, h, _ in stats[1:count]]
                labels += [k] * (count - 1)
            scores = np.full(len(boxes), 0.9, np.float32)
            found.append((np.array(boxes, np.float32).reshape(-1, 4), scores, np.array(labels)))
        return found


def perfect_detector_counts(seeds: int = 3) -> dict:
    """Counts of squares of 10 to 60 px in three colours on 900 x 1,300 images, tiles of
    256 px with 0.25 overlap, by a perfect detector: only the merge can miscount."""
    from mediscope.runtime.info import InferenceSettings, ModelInfo
    from mediscope.runtime.predictor import Predictor

    out: dict = {"truth": [], **{m: [] for m in METHODS}}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        image = np.zeros((900, 1300, 3), np.uint8)
        taken = np.zeros(image.shape[:2], bool)
        truth = [0, 0, 0]
        for _ in range(400):
            side = int(rng.integers(10, 61))
            x, y = int(rng.integers(0, 1300 - side)), int(rng.integers(0, 900 - side))
            if taken[max(0, y - 4) : y + side + 4, max(0, x - 4) : x + side + 4].any():
                continue
            k = int(rng.integers(0, 3))
            image[y : y + side, x : x + side, k] = 255
            taken[y : y + side, x : x + side] = True
            truth[k] += 1
        out["truth"].append(truth)
        for method in METHODS:
            settings = InferenceSettings(window=(256, 256), overlap=0.25, merge=method)
            info = ModelInfo(
                task="detection", classes=["r", "g", "b"], image_size=(256, 256),
                channels=3, mean=[0.0] * 3, std=[1.0] * 3, inference=settings,
            )  # fmt: skip
            result = Predictor(ColourDetector(), info).predict(image)  # type: ignore[arg-type]
            labels = np.asarray(result.class_indices)  # type: ignore[union-attr]
            out[method].append([int((labels == k).sum()) for k in range(3)])
    true = np.array(out["truth"], float)
    out["max_class_mean_rel_error"] = {
        m: round(float((np.abs(np.array(out[m]) - true) / true).mean(axis=0).max()), 4)
        for m in METHODS
    }
    return out


def trained_run(cache: Path, epochs: int | None, images: int = DEMO_IMAGES) -> Path:
    """The demo detector trained once under ``cache`` (its folder is remembered), on the
    demo's smears or on ``images`` tiles made as the demo makes its 200."""
    from mediscope.api import fit
    from mediscope.data.synthetic.gram_stain import generate_gram_stain
    from mediscope.demo import (
        DETECTION_CONFIG,
        SMEARS_CROWDING,
        SMEARS_VERSION,
        detection_demo_config,
        packaged_config_text,
        smear_data,
    )

    suffix = "" if images == DEMO_IMAGES else f"-{images}"
    # a run is reused for the same data version, demo config, epochs and tiles only
    text = packaged_config_text(DETECTION_CONFIG).encode()
    digest = hashlib.sha1(text).hexdigest()[:8]
    marker = cache / f"run-{SMEARS_VERSION}-{digest}-{epochs or 'demo'}{suffix}.txt"
    if marker.is_file() and Path(marker.read_text().strip()).is_dir():
        return Path(marker.read_text().strip())
    data = smear_data(cache)
    if images != DEMO_IMAGES:
        data = cache / f"smears-{SMEARS_VERSION}-{images}"
        if not (data / "data.yaml").is_file():
            generate_gram_stain(
                data, count=images, test_count=50, size=256, seed=0, crowding=SMEARS_CROWDING
            )
    config = detection_demo_config(data, cache / "runs", epochs)
    result = fit(config)
    marker.write_text(str(result.run_dir))
    return Path(result.run_dir)


def one_view_counts(cache: Path, run: Path, smears: list[Path], true: np.ndarray) -> dict:
    """Counts of ``run``'s weights with one view (``inference.tta`` off), the ``edge``
    merge, at the threshold a one-view validation of a copy of the run calibrates."""
    import shutil
    import subprocess
    import sys

    import mediscope

    copy = cache / "one-view" / run.name
    if not (copy / "val_metrics.json").is_file() or not (copy / "one-view.txt").is_file():
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(run, copy)
        command = [sys.executable, "-m", "mediscope", "validate", str(copy)]
        subprocess.run([*command, "--set", "inference.tta=false"], check=True, capture_output=True)
        (copy / "one-view.txt").write_text("validated with inference.tta=false\n")
    predictor = mediscope.load(copy, overrides=["inference.tta=false", "inference.merge=edge"])
    classes = predictor.classes
    counted = []
    for path in smears:
        labels = np.asarray(predictor.predict(path).class_indices)  # type: ignore[union-attr]
        counted.append([int((labels == k).sum()) for k in range(len(classes))])
    rel = np.abs(np.array(counted, float) - true) / np.maximum(true, 1)
    return {
        "score_threshold": predictor.info.inference.score_threshold,
        "per_class": {
            name: {
                "mean_rel_error": round(float(rel[:, k].mean()), 4),
                "demo_smear_rel_error": round(float(rel[0, k]), 4),
            }
            for k, name in enumerate(classes)
        },
        "max_class_mean_rel_error": round(float(rel.mean(axis=0).max()), 4),
        "demo_smear_max_rel_error": round(float(rel[0].max()), 4),
        "counts": counted,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path.home() / ".cache" / "mediscope-bench")
    parser.add_argument("--epochs", type=int, default=None, help="default: the demo's")
    parser.add_argument("--smears", type=int, default=2)
    parser.add_argument(
        "--train-images",
        type=int,
        default=DEMO_IMAGES,
        help="tiles to train and validate on (the demo's 200 by default; others are made "
        "as the demo makes its own)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="the JSON written")
    args = parser.parse_args()
    import mediscope
    from mediscope.data.synthetic.gram_stain import generate_gram_stain
    from mediscope.demo import smear_data
    from mediscope.metrics.detection_errors import analyse_detections, confusion_csv

    cache = args.dir
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    run = trained_run(cache, args.epochs, args.train_images)
    train_seconds = time.perf_counter() - started
    extra = cache / f"large-2000x1500-{args.smears}"
    if not (extra / "data.yaml").is_file():
        generate_gram_stain(
            extra, count=1, test_count=0, size=256, seed=1, large=(2000, 1500),
            large_count=args.smears,
        )  # fmt: skip
    demo_smears = sorted((smear_data(cache) / "large" / "images").glob("*.png"))
    smears = demo_smears + sorted((extra / "large" / "images").glob("*.png"))
    predictor = mediscope.load(run)
    predictor.backend = CachedDetections(predictor.backend)  # type: ignore[assignment]
    classes = predictor.classes
    truth = [
        truth_counts(p.parent.parent / "labels" / f"{p.stem}.txt", len(classes)) for p in smears
    ]
    # Objects per training tile's area: the tiles' mean against each smear's. A smear much
    # denser than the tiles the model learnt from has more touching and overlapping cells.
    from PIL import Image

    def area(path: Path) -> int:
        with Image.open(path) as image:
            return int(image.width * image.height)

    tiles = sorted((smear_data(cache) / "labels" / "train").glob("*.txt"))
    per_tile = float(np.mean([sum(truth_counts(t, len(classes))) for t in tiles]))
    tile_area = area(tiles[0].parents[2] / "images" / "train" / f"{tiles[0].stem}.png")
    density = [
        round(sum(counts) / (area(path) / tile_area) / per_tile, 2)
        for path, counts in zip(smears, truth, strict=True)
    ]
    figures: dict[str, dict] = {}
    for method in METHODS:
        predictor.info.inference.merge = method
        counted, seconds = [], 0.0
        confusions: list[list[str]] = []
        oracle: list[list[int]] = []
        for path in smears:
            tic = time.perf_counter()
            result = predictor.predict(path)
            seconds += time.perf_counter() - tic
            labels = np.asarray(result.class_indices)  # type: ignore[union-attr]
            counted.append([int((labels == k).sum()) for k in range(len(classes))])
            if method == "edge":
                found = {"boxes": result.boxes, "scores": result.scores, "labels": labels}  # type: ignore[union-attr]
                truth_file = path.parent.parent / "labels" / f"{path.stem}.txt"
                height, width = result.image_size  # type: ignore[union-attr]
                true_boxes = truth_boxes(truth_file, width, height)
                errors = analyse_detections([found], [true_boxes], classes, score_threshold=0.0)
                confusions.append(confusion_csv(errors).splitlines())
                oracle.append(class_oracle_counts(found, true_boxes, len(classes)))
        got, true = np.array(counted, float), np.array(truth, float)
        abs_err = np.abs(got - true)
        rel = abs_err / np.maximum(true, 1)
        figures[method] = {
            "seconds": round(seconds, 2),  # the first method's includes the network
            "per_class": {
                name: {
                    "mean_abs_error": round(float(abs_err[:, k].mean()), 2),
                    "mean_rel_error": round(float(rel[:, k].mean()), 4),
                    "demo_smear_rel_error": round(float(rel[0, k]), 4),
                }
                for k, name in enumerate(classes)
            },
            "max_class_mean_rel_error": round(float(rel.mean(axis=0).max()), 4),
            "demo_smear_max_rel_error": round(float(rel[0].max()), 4),
            "counts": counted,
        }
        if confusions:
            # where the errors come from: true class (rows) against counted class, missed
            # objects and detections of no object ("background"), matched at IoU 0.5
            figures[method]["confusion_per_smear"] = confusions
            # the same boxes, each with its true object's class: what is left is localisation
            wrong = np.abs(np.array(oracle, float) - true) / np.maximum(true, 1)
            figures[method]["class_oracle"] = {
                "counts": oracle,
                "demo_smear_rel_error": [round(float(e), 4) for e in wrong[0]],
                "max_class_mean_rel_error": round(float(wrong.mean(axis=0).max()), 4),
            }
        print(method, figures[method]["per_class"], flush=True)
    if predictor.info.inference.tta:
        figures["edge_one_view"] = one_view_counts(cache, run, smears, np.array(truth, float))
        print("edge, one view", figures["edge_one_view"]["per_class"], flush=True)
    perfect = perfect_detector_counts()
    print("perfect detector", perfect["max_class_mean_rel_error"], flush=True)
    summary = {
        "perfect_detector": perfect,
        "smears": [f"{p.parent.parent.parent.name}/{p.name}" for p in smears],
        "truth": truth,
        "training_tile_objects": round(per_tile, 2),
        "density_vs_training_tiles": density,
        "classes": classes,
        "model": f"detection demo run ({run.name}), "
        f"epochs {args.epochs or 'demo default'}, {args.train_images} train + val tiles, "
        f"trained in {round(train_seconds)} s "
        "(0 s when reused)",
        "score_threshold": predictor.info.inference.score_threshold,
        "window": list(predictor.info.inference.window or ()),
        "overlap": predictor.info.inference.overlap,
        "tta": predictor.info.inference.tta,  # the image and its flips vote on each object
        "methods": figures,
        "best_method": min(METHODS, key=lambda m: figures[m]["max_class_mean_rel_error"]),
        "load_average": os.getloadavg(),
        "cpu_threads": os.cpu_count(),
        "machine": platform.platform(),
    }
    write_json_atomic(args.output, summary)
    print({k: v for k, v in summary.items() if k != "methods"})


if __name__ == "__main__":
    main()
