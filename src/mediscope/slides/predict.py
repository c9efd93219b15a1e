"""Streaming prediction over a whole slide, for the three tasks.

* classification: a grid of patches over the tissue, batched: a class map (one cell per
  patch), per-class probability maps, a tissue map over a thumbnail, the patches as CSV
  and GeoJSON, and the area of each class in mm² and percent;
* segmentation: blocks over the tissue, each predicted by the model's sliding window
  (with a margin, so windows blend across block edges), written block by block to a
  pyramidal TIFF mask;
* detection: tiles over the tissue, boxes merged across tile edges, counts per class and
  per mm² of tissue.

Memory is that of a batch (and a block), never that of the slide. Finished patches,
blocks and tiles are kept in ``.partial/`` of the output folder: a rerun after an
interruption skips them.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mediscope.errors import ConfigError
from mediscope.files import write_json_atomic, write_with
from mediscope.runtime.pipeline import merge_tiles, window_starts
from mediscope.runtime.predictor import Predictor
from mediscope.runtime.results import ClassificationResult, DetectionResult
from mediscope.slides.outputs import (
    area_rows,
    box_feature,
    colour,
    overlay_cells,
    write_csv,
    write_geojson,
)
from mediscope.slides.progress import Bar, State
from mediscope.slides.reader import Resolution, Slide
from mediscope.slides.tissue import TissueMask, tissue_mask, write_png

#: Segmentation blocks: side in pixels at the model's resolution (a multiple of 64).
BLOCK = 1024
#: Detection: boxes within this many pixels of an inner tile edge are left to the
#: neighbouring tile.
EDGE = 1.0
#: Folder (inside the output folder) of the work a rerun resumes.
PARTIAL = ".partial"


@dataclass
class SlideSettings:
    """How a slide is predicted.

    Attributes:
        mpp: Microns per pixel the model sees; None: ``level``.
        level: The pyramid level read when there is no ``mpp`` (None: 0).
        min_tissue: Classification: share of a patch that must be tissue for it to be
            predicted. Detection and segmentation: tiles and blocks with any tissue are.
        mask_side: Longer side of the low-resolution view the tissue mask is made on.
        picture_side: Longer side of the pictures (tissue map, overlays).
        block: Segmentation: side of the blocks predicted and written at a time (a
            multiple of 64).
        progress: Draw a progress bar.
        resume: Pick up the finished work of an interrupted run (False: start again).
    """

    mpp: float | None = None
    level: int | None = None
    min_tissue: float = 0.5
    mask_side: int = 2048
    picture_side: int = 1024
    block: int = BLOCK
    progress: bool = True
    resume: bool = True


@dataclass
class SlidePrediction:
    """What :func:`predict_slide` did.

    Attributes:
        slide: The slide file.
        folder: Where its outputs are.
        task: The model's task.
        total: Patches, blocks or tiles over the tissue.
        resumed: How many of them an earlier run had finished.
        summary: The content of ``summary.json``.
        files: Output name -> path.
    """

    slide: Path
    folder: Path
    task: str
    total: int
    resumed: int
    summary: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


def predict_slide(
    predictor: Predictor,
    slide_path: str | Path,
    output: str | Path,
    settings: SlideSettings | None = None,
) -> SlidePrediction:
    """Predicts a whole slide with a model, streaming, into the folder ``output``.

    Args:
        predictor: The model (:func:`mediscope.load`).
        slide_path: The slide (``.svs``, ``.ndpi``, pyramidal ``.tif``, ...).
        output: The folder to write (created; earlier outputs are replaced).
        settings: Resolution, tissue and display settings; default: the model's
            ``inference.mpp`` / ``inference.level``.

    Returns:
        A summary and the files written.

    Example:
        >>> model = mediscope.load("runs/nct-patches")  # doctest: +SKIP
        >>> done = predict_slide(model, "slide.svs", "out/slide")  # doctest: +SKIP
        >>> done.summary["classes"]["tumour"]["area_mm2"]  # doctest: +SKIP
        12.7
    """
    if settings is None:
        inference = predictor.info.inference
        settings = SlideSettings(mpp=inference.mpp, level=inference.level)
    folder = Path(output)
    state_dir = folder / PARTIAL
    with Slide(slide_path) as slide:
        resolution = slide.resolution(settings.mpp, settings.level)
        if predictor.task not in ("classification", "segmentation", "detection"):
            raise ConfigError(f"no slide prediction for the task {predictor.task!r}")
        folder.mkdir(parents=True, exist_ok=True)  # nothing is written before here
        if not settings.resume and state_dir.exists():
            shutil.rmtree(state_dir)
        mask, view = tissue_mask(slide, max_side=settings.mask_side)
        files = {"tissue_mask": mask.save(folder / "tissue_mask.png")}
        base = {
            "slide": slide.path.name,
            "size": list(slide.dimensions),
            "slide_mpp": slide.mpp,
            "reader": slide.backend,
            "level": resolution.level,
            "downsample": resolution.downsample,
            "mpp": resolution.mpp,
            "task": predictor.task,
            "classes": predictor.classes,
            "tissue_mm2": mask.area_mm2(),
            "tissue_fraction": round(mask.fraction, 6),
        }
        key = {
            **base,
            "image_size": predictor.info.image_size,
            "settings": [settings.min_tissue, settings.block],
        }
        job = _Job(
            predictor, slide, resolution, mask, view, folder, State(state_dir, key), settings
        )
        runner = {"classification": _classify, "segmentation": _segment, "detection": _detect}
        started = time.monotonic()
        total, resumed, summary = runner[predictor.task](job)
        files.update(job.files)
    summary = {**base, **summary, "seconds": round(time.monotonic() - started, 2)}
    files["summary"] = write_json_atomic(folder / "summary.json", summary)
    return SlidePrediction(
        slide=Path(slide_path),
        folder=folder,
        task=predictor.task,
        total=total,
        resumed=resumed,
        summary=summary,
        files=files,
    )


@dataclass
class _Job:
    predictor: Predictor
    slide: Slide
    resolution: Resolution
    mask: TissueMask
    view: np.ndarray
    folder: Path
    state: State
    settings: SlideSettings
    files: dict[str, Path] = field(default_factory=dict)

    def picture(self, cells: np.ndarray, cell_downsample: float, classes: list[str]) -> np.ndarray:
        return overlay_cells(
            self.view,
            self.mask.resolution.downsample,
            cells,
            cell_downsample,
            classes,
            max_side=self.settings.picture_side,
        )


def _run(
    job: _Job,
    label: str,
    todo: np.ndarray,
    done: np.ndarray,
    step: Any,
    batch: int | None = None,
) -> tuple[int, int]:
    """Calls ``step(group)`` on batches of the ``todo`` cells not ``done`` (rows first;
    ``batch`` cells, default the model's batch size), with a progress bar; saves the
    state now and then, and on the way out."""
    total, resumed = int(todo.sum()), int((todo & done).sum())
    cells = np.argwhere(todo & ~done)
    batch = batch or job.predictor.batch_size
    bar = Bar(label, total, resumed, show=job.settings.progress)
    try:
        for start in range(0, len(cells), batch):
            group = cells[start : start + batch]
            step(group)
            for row, col in group:
                done[row, col] = True
            bar.advance(len(group))
            job.state.maybe_save()
    finally:
        job.state.save()
        bar.close()
    return total, resumed


def _saved(job: _Job, fresh: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    loaded = job.state.load()
    arrays = fresh
    if loaded is not None and all(
        name in loaded and loaded[name].shape == array.shape for name, array in fresh.items()
    ):
        arrays = {name: loaded[name].astype(array.dtype) for name, array in fresh.items()}
    job.state.arrays = arrays
    return arrays


# --- classification -----------------------------------------------------------------------


def read_cells(
    slide: Slide, res: Resolution, cells: np.ndarray, size: tuple[int, int]
) -> list[np.ndarray]:
    """The patches of grid ``cells`` (row, col; ``size`` = patch height, width), reading
    each run of neighbouring cells of a row as one strip (one read instead of many)."""
    patch_h, patch_w = size
    patches: list[np.ndarray] = []
    start = 0
    while start < len(cells):
        row, first = int(cells[start][0]), int(cells[start][1])
        stop = start + 1
        while (
            stop < len(cells)
            and int(cells[stop][0]) == row
            and int(cells[stop][1]) == first + stop - start
        ):
            stop += 1
        count = stop - start
        strip = slide.read(res, first * patch_w, row * patch_h, count * patch_w, patch_h)
        patches.extend(strip[:, k * patch_w : (k + 1) * patch_w] for k in range(count))
        start = stop
    return patches


def _classify(job: _Job) -> tuple[int, int, dict[str, Any]]:
    predictor, res, slide = job.predictor, job.resolution, job.slide
    classes = predictor.classes
    patch_h, patch_w = predictor.info.image_size
    fractions = job.mask.window_fractions(res, (patch_h, patch_w), (patch_h, patch_w))
    todo = fractions >= job.settings.min_tissue
    rows, cols = todo.shape
    arrays = _saved(
        job,
        {
            "probabilities": np.full((rows, cols, len(classes)), np.nan, dtype=np.float32),
            "done": np.zeros((rows, cols), dtype=bool),
        },
    )
    probs, done = arrays["probabilities"], arrays["done"]

    def step(group: np.ndarray) -> None:
        patches = read_cells(slide, res, group, (patch_h, patch_w))
        results = predictor.predict_batch(patches)
        for (r, c), result in zip(group, results, strict=True):
            assert isinstance(result, ClassificationResult)
            probs[r, c] = [result.probabilities[name] for name in classes]

    total, resumed = _run(job, "patches", todo, done, step)
    predicted = todo & done
    class_map = np.where(predicted, np.nan_to_num(probs).argmax(axis=2), -1)
    folder = job.folder
    files = job.files
    files["class_map"] = write_png(
        folder / "class_map.png", np.where(class_map < 0, 255, class_map).astype(np.uint8)
    )
    maps = {name: np.where(predicted, probs[..., k], np.nan) for k, name in enumerate(classes)}

    def write_maps(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.savez_compressed(handle, class_map=class_map, **maps)  # type: ignore[arg-type]

    files["probability_maps"] = write_with(folder / "probability_maps.npz", write_maps)
    cell_downsample = res.downsample * patch_w
    files["tissue_map"] = write_png(
        folder / "tissue_map.png", job.picture(class_map, cell_downsample, classes)
    )
    # patches, level-0 pixels
    step_x, step_y = res.downsample * patch_w, res.downsample * patch_h
    columns = ["x", "y", "width", "height", "row", "col", "label", *classes]
    rows_out: list[list[Any]] = []
    features = []
    for r, c in np.argwhere(predicted):
        index = int(class_map[r, c])
        x, y = round(c * step_x), round(r * step_y)
        width, height = round(step_x), round(step_y)
        p = [round(float(v), 5) for v in probs[r, c]]
        rows_out.append([x, y, width, height, int(r), int(c), classes[index], *p])
        features.append(
            box_feature(
                (x, y, x + width, y + height),
                classes[index],
                index,
                {"probabilities": dict(zip(classes, p, strict=True))},
            )
        )
    files["patches"] = write_csv(folder / "patches.csv", columns, rows_out)
    files["geojson"] = write_geojson(folder / "patches.geojson", features)
    counts = [int((class_map == k).sum()) for k in range(len(classes))]
    unit = res.area_mm2(patch_h * patch_w)
    table = area_rows(classes, counts, unit)
    files["areas"] = write_csv(
        folder / "areas.csv", ["class", "patches", "area_mm2", "percent"], table
    )
    summary = {
        "patch_size": [patch_h, patch_w],
        "grid": [rows, cols],
        "patches": int(predicted.sum()),
        "classes": {
            row[0]: {"patches": row[1], "area_mm2": row[2] or None, "percent": row[3]}
            for row in table
        },
    }
    return total, resumed, summary


# --- segmentation -------------------------------------------------------------------------


def _segment(job: _Job) -> tuple[int, int, dict[str, Any]]:
    predictor, res, slide = job.predictor, job.resolution, job.slide
    classes = predictor.classes
    info = predictor.info
    window = info.inference.window or info.image_size
    windowed = Predictor(
        predictor.backend,
        dataclasses.replace(info, inference=dataclasses.replace(info.inference, window=window)),
        batch_size=predictor.batch_size,
    )
    margin = max(window) // 4
    block = int(job.settings.block)
    if block < 64 or block % 64:
        raise ConfigError(f"the block side must be a multiple of 64, got {block}", where="block")
    width, height = res.size
    rows, cols = math.ceil(height / block), math.ceil(width / block)
    tops, lefts = np.arange(rows) * block, np.arange(cols) * block
    fractions = job.mask.region_fractions(
        res, tops, np.minimum(tops + block, height), lefts, np.minimum(lefts + block, width)
    )
    todo = fractions > 0
    arrays = _saved(
        job,
        {
            "done": np.zeros((rows, cols), dtype=bool),
            "counts": np.zeros((rows, cols, len(classes)), dtype=np.int64),
        },
    )
    done, counts = arrays["done"], arrays["counts"]
    blocks = job.state.folder / "blocks"
    blocks.mkdir(parents=True, exist_ok=True)

    def step(group: np.ndarray) -> None:
        for r, c in group:
            x0, y0 = int(c) * block, int(r) * block
            x1, y1 = min(x0 + block, width), min(y0 + block, height)
            rx0, ry0 = max(0, x0 - margin), max(0, y0 - margin)
            rx1, ry1 = min(width, x1 + margin), min(height, y1 + margin)
            region = slide.read(res, rx0, ry0, rx1 - rx0, ry1 - ry0)
            probs = windowed.segment_probabilities(region)
            labels = probs.argmax(axis=0)[y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0]
            labels = labels.astype(np.uint8)
            write_png(blocks / f"{r}_{c}.png", labels)
            counts[r, c] = np.bincount(labels.reshape(-1), minlength=len(classes))[: len(classes)]

    # one block per step: a block is already many windows (batched by the model's size)
    total, resumed = _run(job, "blocks", todo, done, step, batch=1)
    files = job.files
    files["mask"] = write_pyramid(
        job.folder / "mask.tif", blocks, todo & done, (height, width), res.mpp, block
    )
    picture_cells = _overview_cells(blocks, todo & done, job, (height, width), block)
    skip_first = classes[0].lower() in ("background", "bg", "_background_")
    if skip_first:
        picture_cells = np.where(picture_cells == 0, -1, picture_cells)
    files["overlay"] = write_png(
        job.folder / "overlay.png",
        job.picture(picture_cells, job.mask.resolution.downsample, classes),
    )
    totals = [int(v) for v in counts[todo & done].sum(axis=0)] if done.any() else [0] * len(classes)
    table = area_rows(classes, totals, res.area_mm2(1.0))
    files["areas"] = write_csv(
        job.folder / "areas.csv", ["class", "pixels", "area_mm2", "percent"], table
    )
    summary = {
        "block": block,
        "blocks": int((todo & done).sum()),
        "classes": {
            row[0]: {"pixels": row[1], "area_mm2": row[2] or None, "percent": row[3]}
            for row in table
        },
    }
    return total, resumed, summary


def _block(blocks: Path, r: int, c: int, shape: tuple[int, int], present: bool) -> np.ndarray:
    if not present:
        return np.zeros(shape, dtype=np.uint8)
    import cv2

    labels = cv2.imread(str(blocks / f"{r}_{c}.png"), cv2.IMREAD_UNCHANGED)
    if labels is None or labels.shape != shape:
        raise ConfigError(
            f"damaged block {r}_{c}.png", where=blocks, hint="rerun with the resume option off"
        )
    return np.asarray(labels, dtype=np.uint8)


def _block_shape(r: int, c: int, size: tuple[int, int], block: int) -> tuple[int, int]:
    height, width = size
    return min(block, height - r * block), min(block, width - c * block)


def write_pyramid(
    path: Path,
    blocks: Path,
    present: np.ndarray,
    size: tuple[int, int],
    mpp: float | None,
    block: int = BLOCK,
) -> Path:
    """Writes the ``block``-sized blocks (``r_c.png`` under ``blocks``; zeros where not
    ``present``) as a
    tiled pyramidal TIFF: level 0 and halvings, one block (or its halving) per tile, so
    one block is in memory at a time."""
    import tifffile

    height, width = size
    rows, cols = present.shape
    levels = 1
    while block >> levels >= 64 and max(height, width) >> levels >= 512:
        levels += 1

    def tiles(step: int) -> Any:
        tile = block // step
        for r in range(rows):
            for c in range(cols):
                shape = _block_shape(r, c, size, block)
                labels = _block(blocks, r, c, shape, bool(present[r, c]))[::step, ::step]
                padded = np.zeros((tile, tile), dtype=np.uint8)
                padded[: labels.shape[0], : labels.shape[1]] = labels
                yield padded

    def write(tmp: Path) -> None:
        with tifffile.TiffWriter(tmp, bigtiff=height * width > 2**31) as tif:
            for level in range(levels):
                step = 2**level
                extra: dict[str, Any] = {}
                if mpp is not None:
                    per_cm = 1e4 / (mpp * step)
                    extra = {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}
                tif.write(
                    tiles(step),
                    shape=(math.ceil(height / step), math.ceil(width / step)),
                    dtype=np.uint8,
                    tile=(block // step, block // step),
                    photometric="minisblack",
                    compression="zlib",
                    subifds=levels - 1 if level == 0 else None,
                    subfiletype=1 if level else 0,
                    **extra,
                )

    return write_with(path, write)


def _overview_cells(
    blocks: Path, present: np.ndarray, job: _Job, size: tuple[int, int], block: int
) -> np.ndarray:
    """The class of each pixel of the tissue mask's view (-1 outside predicted blocks)."""
    import cv2

    view_h, view_w = job.mask.mask.shape
    cells = np.full((view_h, view_w), -1, dtype=np.int16)
    factor = job.resolution.downsample / job.mask.resolution.downsample
    for r, c in np.argwhere(present):
        shape = _block_shape(int(r), int(c), size, block)
        labels = _block(blocks, int(r), int(c), shape, True)
        x0, y0 = round(c * block * factor), round(r * block * factor)
        x1 = min(view_w, round((c * block + shape[1]) * factor))
        y1 = min(view_h, round((r * block + shape[0]) * factor))
        if x1 > x0 and y1 > y0:
            small = cv2.resize(labels, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
            cells[y0:y1, x0:x1] = small
    return cells


# --- detection ----------------------------------------------------------------------------


def _detect(job: _Job) -> tuple[int, int, dict[str, Any]]:
    predictor, res, slide = job.predictor, job.resolution, job.slide
    classes = predictor.classes
    settings = predictor.info.inference
    tile_h, tile_w = settings.window or predictor.info.image_size
    width, height = res.size
    tops = np.array(window_starts(height, tile_h, settings.overlap))
    lefts = np.array(window_starts(width, tile_w, settings.overlap))
    fractions = job.mask.region_fractions(res, tops, tops + tile_h, lefts, lefts + tile_w)
    todo = fractions > 0
    arrays = _saved(
        job,
        {"done": np.zeros(todo.shape, dtype=bool)},
    )
    done = arrays["done"]
    loaded = job.state.load() or {}
    found: dict[str, list[np.ndarray]] = {
        "boxes": [loaded.get("boxes", np.zeros((0, 4), np.float32)).reshape(-1, 4)],
        "scores": [loaded.get("scores", np.zeros(0, np.float32)).reshape(-1)],
        "labels": [loaded.get("labels", np.zeros(0, np.int64)).reshape(-1)],
    }
    if not done.any():
        found = {name: [items[0][:0]] for name, items in found.items()}
    for name, items in found.items():  # saved with "done" from the start
        job.state.arrays[name] = items[0]

    def step(group: np.ndarray) -> None:
        regions = [slide.read(res, int(lefts[c]), int(tops[r]), tile_w, tile_h) for r, c in group]
        results = predictor.predict_batch(regions)
        for (r, c), result in zip(group, results, strict=True):
            assert isinstance(result, DetectionResult)
            boxes = result.boxes.astype(np.float32).reshape(-1, 4)
            # a box touching an inner tile edge is an object cut by it: the neighbour
            # tile, overlapping this one, sees it whole (when it is smaller than the overlap)
            keep = np.ones(len(boxes), dtype=bool)
            if settings.overlap > 0:
                x, y = int(lefts[c]), int(tops[r])
                keep &= ~((boxes[:, 0] <= EDGE) & (x > 0))
                keep &= ~((boxes[:, 1] <= EDGE) & (y > 0))
                keep &= ~((boxes[:, 2] >= tile_w - EDGE) & (x + tile_w < width))
                keep &= ~((boxes[:, 3] >= tile_h - EDGE) & (y + tile_h < height))
            offset = np.array([lefts[c], tops[r]] * 2, dtype=np.float32)
            found["boxes"].append(boxes[keep] + offset)
            found["scores"].append(result.scores.astype(np.float32)[keep])
            found["labels"].append(result.class_indices.astype(np.int64)[keep])
        for name, items in found.items():
            job.state.arrays[name] = np.concatenate(items)
            found[name] = [job.state.arrays[name]]

    total, resumed = _run(job, "tiles", todo, done, step)
    boxes = np.concatenate(found["boxes"]).reshape(-1, 4)
    scores, labels = np.concatenate(found["scores"]), np.concatenate(found["labels"])
    if len(boxes):
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        boxes, scores, labels = merge_tiles(
            boxes,
            scores,
            labels,
            method=settings.merge,
            iou_threshold=settings.iou_threshold,
            image_size=(height, width),
            max_detections=settings.max_detections * max(1, total),
        )
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4) * res.downsample  # level-0 pixels
    folder, files = job.folder, job.files
    rows_out = [
        [*(round(float(v), 2) for v in box), round(float(score), 5), classes[int(label)]]
        for box, score, label in zip(boxes, scores, labels, strict=True)
    ]
    files["detections"] = write_csv(
        folder / "detections.csv", ["x0", "y0", "x1", "y1", "score", "label"], rows_out
    )
    files["geojson"] = write_geojson(
        folder / "detections.geojson",
        [
            {
                **box_feature(box, classes[int(label)], int(label), {"score": round(float(s), 5)}),
            }
            for box, s, label in zip(boxes, scores, labels, strict=True)
        ],
    )
    tissue = job.mask.area_mm2()
    counts = [int((np.asarray(labels) == k).sum()) for k in range(len(classes))]
    table = [
        [name, n, "" if not tissue else round(n / tissue, 3)]
        for name, n in zip(classes, counts, strict=True)
    ]
    files["counts"] = write_csv(folder / "counts.csv", ["class", "count", "per_mm2"], table)
    files["overlay"] = write_png(folder / "overlay.png", _detection_picture(job, boxes, labels))
    summary = {
        "tile": [tile_h, tile_w],
        "tiles": int((todo & done).sum()),
        "score_threshold": settings.score_threshold,
        "objects": len(boxes),
        "classes": {
            name: {"count": n, "per_mm2": None if not tissue else n / tissue}
            for name, n in zip(classes, counts, strict=True)
        },
    }
    return total, resumed, summary


def _detection_picture(job: _Job, boxes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    import cv2

    from mediscope.slides.outputs import add_legend

    view = job.view
    factor = min(1.0, job.settings.picture_side / max(view.shape[:2]))
    if factor < 1:
        size = (round(view.shape[1] * factor), round(view.shape[0] * factor))
        view = cv2.resize(view, size, interpolation=cv2.INTER_AREA)
    picture = np.ascontiguousarray(view)
    scale = factor / job.mask.resolution.downsample
    for box, label in zip(boxes, labels, strict=True):
        cx, cy = (box[0] + box[2]) / 2 * scale, (box[1] + box[3]) / 2 * scale
        cv2.circle(picture, (round(cx), round(cy)), 2, colour(int(label)), -1)
    return add_legend(picture, job.predictor.classes)


def summary_line(done: SlidePrediction) -> str:
    """One line about a predicted slide, as the command line prints it."""
    summary = done.summary
    parts = [f"{done.slide.name}: {done.total} {_unit(done.task)}"]
    if done.resumed:
        parts.append(f"({done.resumed} from an earlier run)")
    classes = summary.get("classes", {})
    if done.task == "detection":
        parts.append(
            "; " + ", ".join(f"{name} {value['count']}" for name, value in classes.items())
        )
    else:
        parts.append(
            "; "
            + ", ".join(
                f"{name} {value['percent']:.1f}%"
                + (f" ({value['area_mm2']:.2f} mm²)" if value.get("area_mm2") else "")
                for name, value in classes.items()
            )
        )
    return " ".join(parts).replace(" ;", ";")


def _unit(task: str) -> str:
    return {"classification": "patches", "segmentation": "blocks", "detection": "tiles"}[task]


__all__ = ["SlidePrediction", "SlideSettings", "predict_slide", "summary_line", "write_pyramid"]
