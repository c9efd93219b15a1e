"""Statistics of a checked dataset: images, class balance, boxes.

:func:`statistics` returns what ``check.json`` holds (plain numbers and tables) and the
raw values the HTML report plots (image sizes, box sizes), plus the findings that the
numbers themselves call for (a class without samples, modes mixed, ...).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mediscope.data.doctor.duplicates import split_rank
from mediscope.data.doctor.findings import Finding
from mediscope.data.doctor.pixels import ImageInfo
from mediscope.data.doctor.scan import Item

#: Largest over smallest class above which the balance is reported (info).
IMBALANCE = 10.0


@dataclass
class Statistics:
    """The numbers of ``check.json`` (``summary``) and the values behind the plots.

    Attributes:
        summary: JSON-ready tables: ``images``, ``classes``, ``boxes`` (detection).
        image_sizes: ``(N, 2)`` width, height of every readable image.
        image_splits: The split of each row of ``image_sizes``.
        box_sizes: ``(M, 2)`` width, height in pixels of every box (detection).
        box_labels: ``(M,)`` class index of each box.
        box_relative: ``(M,)`` square root of box area over image area.
        findings: Findings the numbers call for.
    """

    summary: dict[str, Any]
    image_sizes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    image_splits: list[str] = field(default_factory=list)
    box_sizes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    box_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    box_relative: np.ndarray = field(default_factory=lambda: np.zeros(0))
    findings: list[Finding] = field(default_factory=list)


def spread(values: Sequence[float] | np.ndarray) -> dict[str, float | None]:
    """``min``, ``median``, ``mean`` and ``max`` (None for no values)."""
    array = np.asarray(values, dtype=np.float64)
    if not array.size:
        return {"min": None, "median": None, "mean": None, "max": None}
    return {
        "min": _number(array.min()),
        "median": _number(np.median(array)),
        "mean": _number(array.mean()),
        "max": _number(array.max()),
    }


def _number(value: float) -> float:
    rounded = round(float(value), 2 if abs(value) >= 1 else 4)
    return int(rounded) if rounded.is_integer() else rounded


def split_names(items: Sequence[Item]) -> list[str]:
    """The splits of ``items`` in train, val, test order."""
    return sorted({item.split for item in items}, key=lambda s: (split_rank(s), s))


def statistics(
    task: str,
    classes: list[str],
    items: Sequence[Item],
    infos: Sequence[ImageInfo | None],
    pixels: Sequence[np.ndarray | None],
    findings: Sequence[Finding],
) -> Statistics:
    """The statistics of the checked items.

    Args:
        task: classification, segmentation or detection.
        classes: Class names in index order.
        items: The samples, with their splits.
        infos: Per item its decoded image info, or None when it does not decode.
        pixels: Segmentation: per item the pixels of each class (None otherwise).
        findings: The findings so far (box problems are counted from them).
    """
    splits = split_names(items)
    stats = Statistics(summary={"images": _images(items, infos, splits)})
    readable = [(item, info) for item, info in zip(items, infos, strict=True) if info]
    stats.image_sizes = np.array([[i.width, i.height] for _, i in readable], float).reshape(-1, 2)
    stats.image_splits = [item.split for item, _ in readable]
    if task == "classification":
        table = _table(classes, splits)
        for item in items:
            if item.sample.label is not None:
                table[item.split][classes[item.sample.label]] += 1
        stats.summary["classes"] = {"images": _with_total(table, classes)}
        what = "images"
    elif task == "segmentation":
        counts, images = _table(classes, splits), _table(classes, splits)
        for item, found in zip(items, pixels, strict=True):
            if found is not None:
                for name, n in zip(classes, found.tolist(), strict=True):
                    counts[item.split][name] += n
                    images[item.split][name] += int(n > 0)
        total = _with_total(counts, classes)["total"]
        pixel_sum = sum(total.values()) or 1
        stats.summary["classes"] = {
            "pixels": _with_total(counts, classes),
            "pixel_share": {c: round(n / pixel_sum, 6) for c, n in total.items()},
            "images": _with_total(images, classes),
        }
        what = "pixels"
    else:
        _detection(stats, classes, items, infos, splits, findings)
        what = "objects"
    stats.findings = _class_findings(stats.summary["classes"], what, classes, splits, task)
    stats.findings += _mode_findings(stats.summary["images"])
    return stats


def _images(
    items: Sequence[Item], infos: Sequence[ImageInfo | None], splits: list[str]
) -> dict[str, Any]:
    known = [info for info in infos if info is not None]
    per_split = Counter(item.split for item in items)
    return {
        "count": len(items),
        "readable": len(known),
        "per_split": {s: per_split[s] for s in splits},
        "modes": dict(Counter(info.mode for info in known).most_common()),
        "bit_depths": {str(k): v for k, v in sorted(Counter(i.bits for i in known).items())},
        "width": spread([info.width for info in known]),
        "height": spread([info.height for info in known]),
        "sizes": {
            f"{w}x{h}": n
            for (w, h), n in Counter((i.width, i.height) for i in known).most_common(10)
        },
    }


def _table(classes: list[str], splits: list[str]) -> dict[str, dict[str, int]]:
    return {split: dict.fromkeys(classes, 0) for split in splits}


def _with_total(table: dict[str, dict[str, int]], classes: list[str]) -> dict[str, Any]:
    total = {c: sum(row[c] for row in table.values()) for c in classes}
    return {**table, "total": total}


def _detection(
    stats: Statistics,
    classes: list[str],
    items: Sequence[Item],
    infos: Sequence[ImageInfo | None],
    splits: list[str],
    findings: Sequence[Finding],
) -> None:
    objects, images = _table(classes, splits), _table(classes, splits)
    negatives = dict.fromkeys(splits, 0)
    sizes: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    relative: list[np.ndarray] = []
    per_image: list[int] = []
    for item, info in zip(items, infos, strict=True):
        boxes, box_labels = item.boxes()
        per_image.append(len(boxes))
        if not len(boxes):
            negatives[item.split] += 1
            continue
        for index, n in Counter(box_labels.tolist()).items():
            objects[item.split][classes[index]] += n
            images[item.split][classes[index]] += 1
        wh = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)
        sizes.append(wh)
        labels.append(box_labels)
        if info is not None:
            relative.append(np.sqrt(wh[:, 0] * wh[:, 1] / (info.width * info.height)))
    stats.box_sizes = np.concatenate(sizes) if sizes else np.zeros((0, 2))
    stats.box_labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    stats.box_relative = np.concatenate(relative) if relative else np.zeros(0)
    widths, heights = stats.box_sizes[:, 0], stats.box_sizes[:, 1]
    kinds = Counter(f.kind for f in findings)
    stats.summary["classes"] = {
        "objects": _with_total(objects, classes),
        "images": _with_total(images, classes),
        "negatives": negatives,
    }
    stats.summary["boxes"] = {
        "count": len(stats.box_sizes),
        "per_image": spread(per_image),
        "width": spread(widths),
        "height": spread(heights),
        "area": spread(widths * heights),
        "aspect": spread(widths / np.maximum(heights, 1e-9)),
        "relative_size": spread(stats.box_relative),
        "zero_size": kinds["box_zero_size"],
        "outside_image": kinds["box_outside_image"],
    }


def _class_findings(
    tables: dict[str, Any], what: str, classes: list[str], splits: list[str], task: str
) -> list[Finding]:
    table = tables[what]
    total = table["total"]
    found: list[Finding] = []
    for name in classes:
        if total[name] == 0:
            found.append(
                Finding(
                    "empty_class",
                    "warning",
                    f"class '{name}' has no {what}",
                    hint="add samples of it, or leave it out of data.classes",
                    details={"class": name},
                )
            )
            continue
        for split in splits:
            if len(splits) > 1 and table[split][name] == 0:
                found.append(
                    Finding(
                        "class_missing_in_split",
                        "info",
                        f"class '{name}' has no {what} in {split}",
                        split=split,
                        details={"class": name},
                    )
                )
    present = [n for n in total.values() if n > 0]
    if len(present) > 1 and max(present) > IMBALANCE * min(present):
        largest = max(total, key=lambda c: total[c])
        smallest = min((c for c in total if total[c] > 0), key=lambda c: total[c])
        ratio = total[largest] / total[smallest]
        found.append(
            Finding(
                "class_imbalance",
                "info",
                f"'{largest}' has {ratio:.0f} times the {what} of '{smallest}'",
                hint="consider loss.class_weights"
                + (" or data.sampler: weighted" if task == "classification" else ""),
                details={"ratio": round(ratio, 2)},
            )
        )
    return found


def _mode_findings(images: dict[str, Any]) -> list[Finding]:
    modes, depths = images["modes"], images["bit_depths"]
    if len(modes) < 2 and len(depths) < 2:
        return []
    shown = ", ".join(f"{mode} {n}" for mode, n in modes.items())
    bits = ", ".join(f"{b}-bit {n}" for b, n in depths.items())
    return [
        Finding(
            "mixed_image_modes",
            "info",
            f"images of several modes or bit depths ({shown}; {bits}): they are read as "
            "data.channels says",
        )
    ]
