"""The ``coco`` format for detection: COCO JSON boxes (``bbox`` ``[x, y, w, h]`` pixels).

Files read (``path``):

- one COCO JSON file: no split, it is made later;
- a folder with ``annotations_<split>.json`` files (``train``, ``val``, ``test``, and
  their other names: ``valid`` ...), as :func:`write_coco_detection` and ``mediscope
  convert --to coco`` write them; or a folder with ``annotations.json`` (no split);
- a Roboflow export: ``{train,valid,test}/_annotations.coco.json`` beside the images;
- the COCO layout: ``annotations/instances_<split><year>.json`` + ``<split><year>/``.

An image's ``file_name`` is looked up relative to ``root`` when given, else to the
JSON's folder, an ``images/`` (or ``images/<split>/``) folder beside it, or, for
``annotations/instances_X.json``, the folder ``X`` beside ``annotations/``. Image sizes
are read from the image files. Images without annotations are negatives.

Categories become class ids ``0..C-1`` in category id order (ids ``1, 3, 7`` become
``0, 1, 2``), named by the categories; with ``classes`` given, each category is the
class of its name. Every split file must have the same categories.

Crowd annotations (``iscrowd: 1``) mark regions of many objects, not one object: they
are left out, with one warning giving their number. Bad annotations (unknown image or
category, ``bbox`` not four finite numbers, zero size, outside the image by more than a
pixel) and images whose file is missing stop the read, naming the file and the entry
(``annotations[12]``), or are dropped with one warning when ``on_bad_label`` is
``skip`` (see :mod:`~mediscope.data.formats.boxes`).

The reading and writing of the JSON files and the category list are those of
:mod:`~mediscope.data.formats.coco` (masks), so both kinds of files look alike.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediscope.data.formats.boxes import (
    LabelProblems,
    box_arrays,
    check_box,
    image_size,
    parse_numbers,
    place_image,
    split_order,
    writable_boxes,
)
from mediscope.data.formats.coco import categories, read_coco, write_coco
from mediscope.data.formats.layout import image_folder, plan_by_split
from mediscope.data.formats.masks import SPLIT_NAMES
from mediscope.data.samples import Sample, SampleSet
from mediscope.errors import DataError
from mediscope.files import staged_dir
from mediscope.registry import unknown_name_hint

log = logging.getLogger(__name__)

BBOX = ("x", "y", "w", "h")
LAYOUT_HINT = (
    "give a COCO JSON file, or a folder of annotations_<split>.json, "
    "<split>/_annotations.coco.json or annotations/instances_<split>.json"
)
ROBOFLOW_FILE = "_annotations.coco.json"


@dataclass(frozen=True)
class CocoFile:
    """One COCO JSON with its split and the folders its ``file_name``s may start from."""

    path: Path
    split: str | None
    image_dirs: tuple[Path, ...]


def read_coco_detection(
    path: Path,
    *,
    classes: list[str] | None = None,
    task: str = "detection",
    root: Path | None = None,
    on_bad_label: str = "error",
) -> SampleSet:
    """Reads COCO detection boxes (files and layouts in the module doc).

    Args:
        path: A COCO JSON file or a folder of them.
        classes: Class names; each category is the class of its name. Default the
            category names in id order.
        task: Must be ``detection``.
        root: The folder ``file_name``s start from (default: see the module doc).
        on_bad_label: ``error`` stops at the first bad annotation or missing image;
            ``skip`` drops them with one warning.

    Returns:
        One sample per image: ``boxes`` float32 ``(N, 4)`` xyxy pixels, ``box_labels``
        int64 ``(N,)``, ``split`` from the file name; the root is ``path`` (a folder)
        or the JSON's folder.

    Raises:
        DataError: naming the file and entry for malformed JSON, categories that differ
            between files or are not in ``classes``, bad annotations or missing images.

    Example:
        >>> samples = read_coco_detection(Path("data/coco"))  # doctest: +SKIP
        >>> samples.samples[0].split  # doctest: +SKIP
        'train'
    """
    if task != "detection":
        raise DataError(f"the coco format holds no {task} targets here", where="data.format")
    files = coco_files(path, root)
    problems = LabelProblems(on_bad_label, what="COCO annotations")
    base = path if path.is_dir() else path.parent
    names: list[str] | None = None
    first: Path | None = None
    samples: list[Sample] = []
    crowd = 0
    seen: dict[str, Path] = {}
    for file in files:
        document = read_coco(file.path)
        index, found = _categories(document, classes, str(file.path))
        if names is not None and found != names:
            raise DataError(
                f"the categories differ from those of {first}",
                where=file.path,
                hint="every split file needs the same categories",
            )
        names, first = found, file.path
        read, crowd_here = _read_file(document, file, index, problems)
        crowd += crowd_here
        for sample in read:
            key = os.path.abspath(sample.image)
            if key in seen:
                raise DataError(
                    f"image {sample.image} is also in {seen[key]}",
                    where=file.path,
                    hint="each image belongs to one split",
                )
            seen[key] = file.path
        samples += read
    if crowd:
        log.warning("%s: %d crowd annotations (iscrowd 1) left out", path, crowd)
    problems.finish()
    if not samples or names is None:
        raise DataError("no images", where=path, hint=LAYOUT_HINT)
    return SampleSet(classes=names, samples=samples, root=base)


# -- files ---------------------------------------------------------------------------------


def coco_files(path: Path, root: Path | None = None) -> list[CocoFile]:
    """The COCO JSON files of ``path`` with their splits (see the module doc).

    Raises:
        DataError: when ``path`` is missing or holds none of the known files.
    """
    if path.is_file():
        return [_coco_file(path, None, root)]
    if not path.is_dir():
        raise DataError("not found", where=path, hint=LAYOUT_HINT)
    found: list[tuple[Path, str | None]] = []
    for file in sorted(path.glob("annotations_*.json")):
        split = SPLIT_NAMES.get(file.stem.removeprefix("annotations_").lower())
        if split is not None:
            found.append((file, split))
    if not found and (path / "annotations.json").is_file():
        found.append((path / "annotations.json", None))
    if not found:
        for folder in sorted(path.iterdir()):
            split = SPLIT_NAMES.get(folder.name.lower())
            if split is not None and (folder / ROBOFLOW_FILE).is_file():
                found.append((folder / ROBOFLOW_FILE, split))
    if not found and (path / "annotations").is_dir():
        for file in sorted((path / "annotations").glob("instances_*.json")):
            name = re.sub(r"\d+$", "", file.stem.removeprefix("instances_")).lower()
            if name in SPLIT_NAMES:
                found.append((file, SPLIT_NAMES[name]))
    if not found:
        raise DataError("no COCO JSON files here", where=path, hint=LAYOUT_HINT)
    found.sort(key=lambda pair: split_order(pair[1]))
    return [_coco_file(file, split, root) for file, split in found]


def _coco_file(path: Path, split: str | None, root: Path | None) -> CocoFile:
    if root is not None:
        return CocoFile(path, split, (root,))
    folder = path.parent
    dirs = [folder, folder / "images"]
    if split is not None:
        dirs.append(folder / "images" / split)
    if path.stem.startswith("instances_"):
        dirs.append(folder.parent / path.stem.removeprefix("instances_"))
    return CocoFile(path, split, tuple(dirs))


def _categories(
    document: Mapping[str, Any], classes: list[str] | None, where: str
) -> tuple[dict[int, int], list[str]]:
    """Category id → class id, and the class names."""
    entries = document.get("categories")
    if not isinstance(entries, list):
        raise DataError("no 'categories' list", where=where, hint="a COCO file lists categories")
    found: dict[int, str] = {}
    for i, category in enumerate(entries):
        at = f"{where}: categories[{i}]"
        cat_id = category.get("id") if isinstance(category, Mapping) else None
        name = category.get("name") if isinstance(category, Mapping) else None
        if not isinstance(cat_id, int) or isinstance(cat_id, bool) or not isinstance(name, str):
            raise DataError("a category needs an integer 'id' and a 'name'", where=at)
        if cat_id in found:
            raise DataError(f"category id {cat_id} repeats", where=at)
        found[cat_id] = name
    ordered = [found[k] for k in sorted(found)]
    if classes is None:
        if not ordered:
            raise DataError("no categories", where=where, hint="set data.classes")
        if len(set(ordered)) != len(ordered):
            raise DataError("category names repeat", where=f"{where}: categories")
        return {k: i for i, k in enumerate(sorted(found))}, ordered
    names = [str(c) for c in classes]
    if not names or len(set(names)) != len(names):
        raise DataError("give one or more distinct class names", where="data.classes")
    for name in ordered:
        if name not in names:
            raise DataError(
                f"category '{name}' is not one of data.classes",
                where=f"{where}: categories",
                hint=unknown_name_hint(name, names),
            )
    return {k: names.index(v) for k, v in found.items()}, names


def _read_file(
    document: Mapping[str, Any], file: CocoFile, index: dict[int, int], problems: LabelProblems
) -> tuple[list[Sample], int]:
    """Samples of one COCO file, and the number of crowd annotations left out."""
    where = str(file.path)
    images = document.get("images")
    annotations = document.get("annotations", [])
    if not isinstance(images, list) or not isinstance(annotations, list):
        raise DataError("no 'images' and 'annotations' lists", where=where, hint=LAYOUT_HINT)
    paths: dict[int, Path | None] = {}
    names: set[str] = set()
    for i, entry in enumerate(images):
        at = f"{where}: images[{i}]"
        image_id = entry.get("id") if isinstance(entry, Mapping) else None
        file_name = entry.get("file_name") if isinstance(entry, Mapping) else None
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            raise DataError("an image needs an integer 'id'", where=at)
        if not isinstance(file_name, str) or not file_name:
            raise DataError("an image needs a 'file_name'", where=at)
        if image_id in paths:
            raise DataError(f"image id {image_id} repeats", where=at)
        if file_name in names:
            raise DataError(f"file_name {file_name} repeats", where=at)
        names.add(file_name)
        found = next((d / file_name for d in file.image_dirs if (d / file_name).is_file()), None)
        if found is None:
            looked = ", ".join(str(d) for d in file.image_dirs)
            problems.report(
                f"image {file_name} not found (looked in {looked})",
                where=at,
                hint="give the folder file_names start from (data.root / --images)",
            )
        paths[image_id] = found
    boxes: dict[int, list[list[float]]] = {k: [] for k, p in paths.items() if p is not None}
    labels: dict[int, list[int]] = {k: [] for k in boxes}
    sizes: dict[int, tuple[int, int]] = {}
    crowd = 0
    for i, annotation in enumerate(annotations):
        at = f"{where}: annotations[{i}]"
        if not isinstance(annotation, Mapping):
            problems.report("an annotation is not an object", where=at)
            continue
        image_id, category = annotation.get("image_id"), annotation.get("category_id")
        if not isinstance(image_id, int) or image_id not in paths:
            problems.report(f"image_id {image_id} is not in images", where=at)
            continue
        if not isinstance(category, int) or isinstance(category, bool) or category not in index:
            problems.report(
                f"category_id {category} is not in categories",
                where=at,
                hint=f"category ids: {', '.join(map(str, sorted(index)))}",
            )
            continue
        if annotation.get("iscrowd"):
            crowd += 1
            continue
        image = paths[image_id]
        if image is None:
            continue  # its image is missing: reported and skipped above
        box = _bbox(annotation.get("bbox"), at, problems)
        if box is None:
            continue
        if image_id not in sizes:
            sizes[image_id] = image_size(image)
        x, y, w, h = box
        checked = check_box([x, y, x + w, y + h], *sizes[image_id], where=at, problems=problems)
        if checked is not None:
            boxes[image_id].append(checked)
            labels[image_id].append(index[category])
    samples = []
    for image_id, image in paths.items():
        if image is None:
            continue
        box_array, label_array = box_arrays(boxes[image_id], labels[image_id])
        samples.append(
            Sample(image=str(image), boxes=box_array, box_labels=label_array, split=file.split)
        )
    return samples, crowd


def _bbox(value: Any, where: str, problems: LabelProblems) -> list[float] | None:
    if not isinstance(value, list) or len(value) != 4:
        found = f"has {len(value)} numbers" if isinstance(value, list) else "is not a list"
        problems.report(f"bbox {found}, expected 4", where=where, hint="bbox is [x, y, w, h]")
        return None
    texts = ["" if isinstance(v, bool) else str(v) for v in value]
    return parse_numbers(texts, names=BBOX, where=where, problems=problems)


# -- writing -------------------------------------------------------------------------------


def write_coco_detection(
    samples: SampleSet, dst: Path, *, overwrite: bool = False, link: bool = False
) -> Path:
    """Writes ``samples`` as COCO detection files with their images.

    ``annotations_<split>.json`` per split (``annotations.json`` without splits) and the
    images in ``images/<split>/`` (``images/``) under their path within the folder
    holding all images of the split; ``file_name`` is relative to ``dst``
    (``images/train/a.jpg``). Category ids are ``1..C`` in class order; ``bbox`` is
    ``[x1, y1, x2 - x1, y2 - y1]``, exact, with ``area`` ``w * h``, ``iscrowd`` 0 and
    an empty ``segmentation``.

    Args:
        samples: Detection samples (xyxy pixel boxes) with their class names.
        dst: The output folder; written completely or not at all.
        overwrite: Replace a non-empty ``dst``.
        link: Hard-link the images instead of copying them, where possible.

    Returns:
        ``dst``.

    Raises:
        DataError: for samples with and without a split mixed, boxes outside their
            image, or a non-empty ``dst``.
    """
    plan = plan_by_split(samples)
    with staged_dir(dst, overwrite=overwrite) as tmp:
        for split, split_samples in plan:
            folder = image_folder(split).as_posix()
            images: list[dict[str, Any]] = []
            annotations: list[dict[str, Any]] = []
            for image_id, (sample, name) in enumerate(split_samples, start=1):
                file_name = f"{folder}/{name.as_posix()}"
                width, height = image_size(sample.image)
                boxes, labels = writable_boxes(sample, width, height, len(samples.classes))
                place_image(sample.image, tmp / file_name, link=link)
                images.append(
                    {"id": image_id, "file_name": file_name, "width": width, "height": height}
                )
                for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels.tolist(), strict=True):
                    w, h = x2 - x1, y2 - y1
                    annotations.append(
                        {
                            "id": len(annotations) + 1,
                            "image_id": image_id,
                            "category_id": label + 1,
                            "bbox": [x1, y1, w, h],
                            "area": w * h,
                            "iscrowd": 0,
                            "segmentation": [],
                        }
                    )
            json_name = f"annotations_{split}.json" if split is not None else "annotations.json"
            document = {
                "images": images,
                "annotations": annotations,
                "categories": categories(["background", *samples.classes]),
            }
            write_coco(tmp / json_name, document)
    return dst
