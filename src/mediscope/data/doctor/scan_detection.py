"""Scans of the detection formats: YOLO, COCO and Pascal VOC.

They find the layout, the split files and the class names as the readers do (reusing
their functions), then check every label line, annotation and object with the readers'
own checks, keeping every problem instead of stopping at the first. An image without a
label file or annotation is a negative for YOLO and COCO (``info``); for VOC, whose
reader reads annotation files, an image without one is not read (``warning``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mediscope.data.doctor.findings import CollectedProblems, Finding, finding_from_error
from mediscope.data.doctor.scan import Item, Scan, absolute, is_image_name, walk_files
from mediscope.data.formats import coco_detection, voc, yolo
from mediscope.data.formats.boxes import box_arrays, check_box, image_size, parse_numbers
from mediscope.data.formats.coco import read_coco
from mediscope.data.samples import Sample
from mediscope.errors import DataError
from mediscope.registry import unknown_name_hint

#: The size used to check boxes of an image whose header does not read (reported apart).
UNKNOWN_SIZE = (math.inf, math.inf)


def _size(image: Path) -> tuple[float, float] | None:
    """``(width, height)`` from the image header, or None when it does not read."""
    try:
        return image_size(image)
    except DataError:
        return None


def _two_splits(image: Path | str, split: str | None, first: str | None) -> Finding:
    return Finding(
        "image_in_two_splits",
        "error",
        f"image listed in {first} and {split}",
        file=str(image),
        split=split,
        other_split=first,
        hint="each image belongs to one split",
    )


# -- YOLO ----------------------------------------------------------------------------------


def scan_yolo(path: Path, *, classes: list[str] | None) -> Scan:
    """Every label line of a YOLO dataset checked; orphan label files; negatives.

    Raises:
        DataError: when there is no YOLO layout, or no class names, or data.yaml is
            invalid (nothing can be read then).
    """
    base, data_file = yolo._locate(path)
    config = yolo.read_data_yaml(data_file) if data_file is not None else {}
    base = yolo._yaml_root(config, base)
    if data_file is not None and any(config.get(k) for k in ("train", "val", "test")):
        parts = yolo._yaml_parts(config, base, data_file)
    else:
        parts = yolo._layout_parts(base)
    names = yolo._class_names(config, data_file, base, parts, classes)
    scan = Scan(classes=names, root=base)
    seen: dict[str, str | None] = {}
    for part in parts:
        problems = CollectedProblems("YOLO labels", split=part.split)
        for image in part.images:
            key = absolute(image)
            if key in seen:
                scan.findings.append(_two_splits(image, part.split, seen[key]))
                continue
            seen[key] = part.split
            scan.items.append(_yolo_item(image, part.split, len(names), problems, scan))
        if part.folder is not None:
            yolo._check_orphans(part, problems)
        scan.findings += problems.take()
    return scan


def _yolo_item(
    image: Path, split: str | None, num_classes: int, problems: CollectedProblems, scan: Scan
) -> Item:
    file = yolo.label_path(image)
    boxes, labels = box_arrays([], [])
    if not file.is_file():
        scan.findings.append(
            Finding(
                "image_without_label",
                "info",
                "no label file: a negative (an image without objects)",
                file=str(image),
                split=split,
                hint=f"if it shows objects, label them in {file}",
            )
        )
        return Item(Sample(image=str(image), boxes=boxes, box_labels=labels, split=split))
    size = _size(image)
    width, height = size if size is not None else (1, 1)
    try:
        boxes, labels = yolo.read_label_file(file, int(width), int(height), num_classes, problems)
    except DataError as exc:
        scan.findings.append(finding_from_error("bad_label", exc, split=split))
    if size is None:  # the image is reported unreadable; its boxes have no pixel size
        boxes, labels = box_arrays([], [])
    sample = Sample(image=str(image), boxes=boxes, box_labels=labels, split=split)
    return Item(sample, label_file=str(file))


# -- COCO ----------------------------------------------------------------------------------


def scan_coco(path: Path, *, classes: list[str] | None, root: Path | None) -> Scan:
    """Every image entry and annotation of the COCO files of ``path`` checked.

    Raises:
        DataError: when ``path`` holds no COCO file.
    """
    files = coco_detection.coco_files(path, root)
    scan = Scan(classes=list(classes or []), root=path if path.is_dir() else path.parent)
    names: list[str] | None = None
    first: Path | None = None
    seen: dict[str, str | None] = {}
    crowd = 0
    for file in files:
        try:
            document = read_coco(file.path)
            index, found = coco_detection._categories(document, classes, str(file.path))
        except DataError as exc:
            scan.findings.append(finding_from_error("bad_label", exc, split=file.split))
            continue
        if names is not None and found != names:
            scan.findings.append(
                Finding(
                    "bad_label",
                    "error",
                    f"the categories differ from those of {first}",
                    file=str(file.path),
                    split=file.split,
                    hint="every split file needs the same categories",
                )
            )
            continue
        names, first = found, file.path
        scan.classes = found
        crowd += _scan_coco_file(document, file, index, scan, seen)
    if crowd:
        scan.findings.append(
            Finding(
                "crowd_annotations",
                "info",
                f"{crowd} crowd annotations (iscrowd 1) are left out",
                file=str(path),
            )
        )
    return scan


def _scan_coco_file(
    document: Mapping[str, Any],
    file: coco_detection.CocoFile,
    index: dict[int, int],
    scan: Scan,
    seen: dict[str, str | None],
) -> int:
    """Adds the samples and findings of one COCO file; returns its crowd annotations."""
    where = str(file.path)
    images, annotations = document.get("images"), document.get("annotations", [])
    if not isinstance(images, list) or not isinstance(annotations, list):
        scan.findings.append(
            Finding(
                "bad_label",
                "error",
                "no 'images' and 'annotations' lists",
                file=where,
                split=file.split,
            )
        )
        return 0
    paths = _coco_images(images, file, scan, seen)
    problems = CollectedProblems("COCO annotations", split=file.split)
    boxes: dict[int, list[list[float]]] = {k: [] for k, p in paths.items() if p is not None}
    labels: dict[int, list[int]] = {k: [] for k in boxes}
    sizes: dict[int, tuple[float, float]] = {}
    owners: dict[str, str] = {}  # annotations[i] → its image, which an exclude list drops
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
            ids = ", ".join(map(str, sorted(index)))
            problems.report(
                f"category_id {category} is not in categories", where=at, hint=f"ids: {ids}"
            )
            continue
        if annotation.get("iscrowd"):
            crowd += 1
            continue
        image = paths[image_id]
        if image is not None:
            owners[f"annotations[{i}]"] = str(image)
        box = coco_detection._bbox(annotation.get("bbox"), at, problems)
        if image is None or box is None:
            continue
        if image_id not in sizes:
            sizes[image_id] = _size(image) or UNKNOWN_SIZE
        x, y, w, h = box
        checked = check_box([x, y, x + w, y + h], *sizes[image_id], where=at, problems=problems)
        if checked is not None and sizes[image_id] != UNKNOWN_SIZE:
            boxes[image_id].append(checked)
            labels[image_id].append(index[category])
    for image_id, image in paths.items():
        if image is not None:
            box_array, label_array = box_arrays(boxes[image_id], labels[image_id])
            sample = Sample(
                image=str(image), boxes=box_array, box_labels=label_array, split=file.split
            )
            scan.items.append(Item(sample, label_file=where))
            scan.listed.add(absolute(image))
            scan.listed_dirs.add(Path(absolute(image)).parent)
    for finding in problems.take():
        if finding.entry in owners:
            finding.exclude = [owners[finding.entry]]
        scan.findings.append(finding)
    return crowd


def _coco_images(
    images: list[Any], file: coco_detection.CocoFile, scan: Scan, seen: dict[str, str | None]
) -> dict[int, Path | None]:
    """Image id → file (None when missing) of a COCO file's ``images`` list."""
    where = str(file.path)
    paths: dict[int, Path | None] = {}
    names: set[str] = set()
    for i, entry in enumerate(images):
        at = f"images[{i}]"
        image_id = entry.get("id") if isinstance(entry, Mapping) else None
        file_name = entry.get("file_name") if isinstance(entry, Mapping) else None
        problem = None
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            problem = "an image needs an integer 'id'"
        elif not isinstance(file_name, str) or not file_name:
            problem = "an image needs a 'file_name'"
        elif image_id in paths:
            problem = f"image id {image_id} repeats"
        elif file_name in names:
            problem = f"file_name {file_name} repeats"
        if problem is not None:
            scan.findings.append(
                Finding("bad_label", "error", problem, file=where, entry=at, split=file.split)
            )
            continue
        assert isinstance(image_id, int) and isinstance(file_name, str)
        names.add(file_name)
        found = next((d / file_name for d in file.image_dirs if (d / file_name).is_file()), None)
        paths[image_id] = None
        if found is None:
            looked = ", ".join(str(d) for d in file.image_dirs)
            scan.findings.append(
                Finding(
                    "label_without_image",
                    "error",
                    f"image {file_name} not found (looked in {looked})",
                    file=where,
                    entry=at,
                    split=file.split,
                    hint="give the folder file_names start from (data.root)",
                )
            )
        elif absolute(found) in seen:
            scan.findings.append(_two_splits(found, file.split, seen[absolute(found)]))
        else:
            seen[absolute(found)] = file.split
            paths[image_id] = found
    return paths


# -- VOC -----------------------------------------------------------------------------------


def scan_voc(path: Path, *, classes: list[str] | None) -> Scan:
    """Every object of every VOC annotation checked; annotations without images and
    images without annotations.

    Raises:
        DataError: when ``path`` is not a folder or holds no XML annotation.
    """
    if not path.is_dir():
        raise DataError("dataset not found", where=path, hint=voc.LAYOUT_HINT)
    problems = CollectedProblems("VOC annotations")
    entries = voc._entries(path, problems)
    if not entries:
        raise DataError("no XML annotation files", where=path, hint=voc.LAYOUT_HINT)
    scan = Scan(classes=[], root=path, findings=problems.take())
    documents: list[tuple[voc.Entry, voc.Node]] = []
    for entry in entries:
        try:
            documents.append((entry, voc.parse_xml(entry.xml)))
        except DataError as exc:
            scan.findings.append(finding_from_error("bad_label", exc, split=entry.split))
    scan.classes = voc._class_names(path, classes, [doc for _, doc in documents])
    index = {name: i for i, name in enumerate(scan.classes)}
    seen: dict[str, str | None] = {}
    for entry, document in documents:
        image = voc._image_of(entry, document)
        if image is None:
            expected = entry.image_dir / (document.value("filename") or entry.xml.stem)
            scan.findings.append(
                Finding(
                    "label_without_image",
                    "error",
                    f"image not found: expected {expected}",
                    file=str(entry.xml),
                    split=entry.split,
                    hint="add the image, or remove the annotation",
                )
            )
            continue
        if absolute(image) in seen:
            scan.findings.append(_two_splits(image, entry.split, seen[absolute(image)]))
            continue
        seen[absolute(image)] = entry.split
        problems.split = entry.split
        boxes, labels = _voc_objects(entry, document, index, _size(image), problems)
        sample = Sample(image=str(image), boxes=boxes, box_labels=labels, split=entry.split)
        scan.items.append(Item(sample, label_file=str(entry.xml)))
    scan.findings += problems.take()
    _voc_unread(path, entries, set(seen), scan)
    return scan


def _voc_objects(
    entry: voc.Entry,
    document: voc.Node,
    index: dict[str, int],
    size: tuple[float, float] | None,
    problems: CollectedProblems,
) -> tuple[np.ndarray, np.ndarray]:
    """The checked boxes of one annotation (as the reader's, every problem reported)."""
    width, height = size if size is not None else UNKNOWN_SIZE
    boxes: list[list[float]] = []
    labels: list[int] = []
    for obj in document.findall("object"):
        where = f"{entry.xml}:{obj.line}"
        name = obj.value("name")
        box = obj.find("bndbox")
        if not name:
            problems.report("object without <name>", where=where)
            continue
        if name not in index:
            hint = unknown_name_hint(name, list(index))
            problems.report(f"object name '{name}' is not a class", where=where, hint=hint)
            continue
        if box is None:
            problems.report("object without <bndbox>", where=where)
            continue
        where = f"{entry.xml}:{box.line}"
        texts = [box.value(c) for c in voc.COORDS]
        missing = [c for c, t in zip(voc.COORDS, texts, strict=True) if t is None]
        if missing:
            problems.report(f"<bndbox> without <{missing[0]}>", where=where)
            continue
        values = parse_numbers(
            [t or "" for t in texts], names=voc.COORDS, where=where, problems=problems
        )
        if values is None:
            continue
        xmin, ymin, xmax, ymax = values
        corners = [xmin - 1, ymin - 1, xmax, ymax]
        checked = check_box(corners, width, height, where=where, problems=problems)
        if checked is not None and size is not None:
            boxes.append(checked)
            labels.append(index[name])
    return box_arrays(boxes, labels)


def _voc_unread(path: Path, entries: list[voc.Entry], read: set[str], scan: Scan) -> None:
    """Images that no annotation names, and annotations in no image set."""
    lists = voc._image_sets(path / "ImageSets" / "Main")
    if (path / "Annotations").is_dir():
        folders = [path / "JPEGImages"]
        images = [f for f in walk_files(path / "JPEGImages") if is_image_name(f.name)]
        if lists:
            xml_files = [f for f in walk_files(path / "Annotations") if f.suffix == ".xml"]
            unlisted = len(xml_files) - len(entries)
            if unlisted > 0:
                scan.findings.append(
                    Finding(
                        "unlisted_annotations",
                        "info",
                        f"{unlisted} annotations are in no ImageSets/Main list: not read",
                        file=str(path / "ImageSets" / "Main"),
                    )
                )
    else:
        folders = sorted({entry.image_dir for entry in entries})
        images = [f for d in folders for f in sorted(d.iterdir()) if is_image_name(f.name)]
    for image in images:
        if absolute(image) not in read:
            scan.findings.append(
                Finding(
                    "image_without_label",
                    "info" if lists else "warning",
                    "image without an annotation file: not read",
                    file=str(image),
                    hint="add its XML (an empty <annotation> for a negative), or remove it",
                )
            )
