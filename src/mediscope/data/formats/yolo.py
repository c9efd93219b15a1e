"""The ``yolo`` format: images with one text file of boxes each (Ultralytics / Darknet).

Layouts, tried in this order:

- ``ROOT/data.yaml`` (or ``data.yml``; ``path`` may name the file itself) with ``names``
  (a list, or ``{id: name}`` with ids ``0..C-1``) and optional ``train`` / ``val`` /
  ``test`` entries: an image folder, a list of folders, or a ``.txt`` list of image
  paths (relative to that list's folder). Entries are relative to the file's ``path``
  key (itself relative to the file's folder, and ignored when that folder does not
  exist, as when it names another machine's folder), else to the file's folder;
  ``../x`` that does not exist is also tried as ``x`` (as Ultralytics does for Roboflow
  exports). The entry names the samples' split.
- ``images/{train,val,test}/`` + ``labels/{train,val,test}/`` (``valid``, ``validation``
  ... count as val): the folder names the split;
- ``{train,valid,test}/images/`` + ``.../labels/`` (Roboflow, Ultralytics exports);
- flat ``images/`` + ``labels/``: no split, it is made later (``data.split``).

An image's label file is its path with the last ``images`` folder replaced by
``labels`` and the suffix by ``.txt`` (as Ultralytics finds them); sub-folders are
searched. Each line is ``class cx cy w h``: a class id from 0 and the box centre and size
as fractions of the image width and height. An image without a label file, or with an
empty one, is a negative (no objects). A label file without an image is a bad label.

A sixth field is refused: it is the confidence score of prediction files, and training
labels have none (drop the column). Longer lines are YOLO segmentation polygons, not
boxes. Malformed lines (field count, class id, numbers, NaN, coordinates outside
``[0, 1]`` by more than ``1e-6``, zero-size boxes) stop the read with ``file:line``, or
are dropped with one warning when ``on_bad_label`` is ``skip`` (see
:mod:`~mediscope.data.formats.boxes`).

Class names come from ``data.yaml``, else ``classes.txt`` (in ROOT or a labels folder,
one name per line), else the ``classes`` argument; given names that differ from the
file's are an error. Detection classes have no background: ids are ``0..C-1``.

The writer (:func:`write_yolo`) produces ``images/<split>/`` + ``labels/<split>/`` and a
``data.yaml`` (flat ``images/`` + ``labels/`` for samples without a split), with numbers
written in the shortest form that reads back as the same double, so that read → write →
read gives the same float32 pixel boxes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mediscope.data.formats.boxes import (
    LabelProblems,
    box_arrays,
    check_class_names,
    check_normalised,
    image_size,
    parse_class_id,
    parse_numbers,
    place_image,
    split_order,
    writable_boxes,
)
from mediscope.data.formats.layout import image_plan
from mediscope.data.formats.masks import SPLIT_NAMES
from mediscope.data.images import IMAGE_SUFFIXES
from mediscope.data.label_text import label_lines
from mediscope.data.samples import Sample, SampleSet
from mediscope.errors import DataError
from mediscope.files import LIST_LIMIT, read_text_file, staged_dir
from mediscope.yamlsafe import read_yaml_file

DATA_FILES = ("data.yaml", "data.yml")
CLASSES_FILE = "classes.txt"
FIELDS = ("cx", "cy", "w", "h")
LINE_HINT = "a YOLO label line is: class cx cy w h"
LAYOUT_HINT = (
    "use data.yaml, images/{train,val,test} + labels/{...}, {train,valid,test}/images + "
    "labels, or images/ + labels/"
)


@dataclass(frozen=True)
class Part:
    """Images of one split: an image folder, or the images listed in a ``.txt`` file."""

    split: str | None
    images: list[Path]
    folder: Path | None = None  # the image folder, whose label folder is checked for orphans


def read_yolo(
    path: Path,
    *,
    classes: list[str] | None = None,
    task: str = "detection",
    root: Path | None = None,
    on_bad_label: str = "error",
) -> SampleSet:
    """Reads a YOLO dataset (layouts in the module doc).

    Args:
        path: The dataset folder, or its ``data.yaml``.
        classes: Class names in id order (no background); default from ``data.yaml`` or
            ``classes.txt``. When these exist too, they must be the same.
        task: Must be ``detection``.
        root: Unused (paths are relative to the dataset); accepted as every reader does.
        on_bad_label: ``error`` stops at the first bad line naming ``file:line``;
            ``skip`` drops bad lines and orphan label files with one warning.

    Returns:
        One sample per image: ``boxes`` float32 ``(N, 4)`` xyxy pixels, ``box_labels``
        int64 ``(N,)``, ``split`` from the folder or ``data.yaml`` entry; the root is the
        dataset folder.

    Raises:
        DataError: naming the file (and line) for a missing layout, missing or
            conflicting class names, bad label lines, orphan label files or unreadable
            images.

    Example:
        >>> samples = read_yolo(Path("data/cells"))  # doctest: +SKIP
        >>> samples.samples[0].boxes  # doctest: +SKIP
        array([[ 12.,  30.,  52.,  61.]], dtype=float32)
    """
    del root
    if task != "detection":
        raise DataError(f"the yolo format holds no {task} targets", where="data.format")
    problems = LabelProblems(on_bad_label, what="YOLO labels")
    base, data_file = _locate(path)
    config = read_data_yaml(data_file) if data_file is not None else {}
    base = _yaml_root(config, base)
    if data_file is not None and any(config.get(k) for k in ("train", "val", "test")):
        parts = _yaml_parts(config, base, data_file)
    else:
        parts = _layout_parts(base)
    names = _class_names(config, data_file, base, parts, classes)
    samples: list[Sample] = []
    seen: dict[Path, str | None] = {}
    labelled: dict[Path, Path] = {}
    for part in parts:
        for image in part.images:
            key = Path(os.path.abspath(image))
            if key in seen:
                raise DataError(
                    f"image in two splits ({seen[key]} and {part.split})",
                    where=image,
                    hint="each image belongs to one split: check data.yaml",
                )
            seen[key] = part.split
            _check_shared_label(image, labelled)
            samples.append(_read_sample(image, part.split, len(names), problems))
        if part.folder is not None:
            _check_orphans(part, problems)
    if not samples:
        raise DataError("no images found", where=base, hint=LAYOUT_HINT)
    problems.finish()
    return SampleSet(classes=names, samples=samples, root=base)


# -- layouts -------------------------------------------------------------------------------


def _locate(path: Path) -> tuple[Path, Path | None]:
    """The dataset folder and its ``data.yaml`` (or None)."""
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return path.parent, path
    if not path.is_dir():
        raise DataError("dataset not found", where=path, hint=LAYOUT_HINT)
    data_file = next((path / n for n in DATA_FILES if (path / n).is_file()), None)
    return path, data_file


def read_data_yaml(path: Path) -> dict[str, Any]:
    """The mapping in a ``data.yaml``.

    Raises:
        DataError: naming ``file:line`` for invalid YAML, or the file when it holds no
            mapping.
    """
    try:
        data, _ = read_yaml_file(path, error=DataError, what="data.yaml")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the file ({exc})", where=path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DataError("data.yaml holds no mapping", where=path, hint="keys: names, train, val")
    return data


def _yaml_root(config: dict[str, Any], folder: Path) -> Path:
    """The dataset root: data.yaml's ``path`` (relative to its folder) when that folder
    exists, else data.yaml's folder (``path`` often names another machine's folder)."""
    entry = config.get("path")
    if isinstance(entry, str) and entry and (folder / entry).is_dir():
        return Path(os.path.normpath(folder / entry))  # an absolute path replaces folder
    return folder


def _yaml_parts(config: dict[str, Any], base: Path, data_file: Path) -> list[Part]:
    parts: list[Part] = []
    for key in ("train", "val", "test"):
        entry = config.get(key)
        if not entry:
            continue
        entries = entry if isinstance(entry, list) else [entry]
        for item in entries:
            if not isinstance(item, str):
                raise DataError(f"'{key}' is not a path", where=data_file)
            parts.append(_yaml_part(base, item, key, data_file))
    return parts


def _yaml_part(base: Path, entry: str, split: str, data_file: Path) -> Part:
    found = base / entry
    if not found.exists() and entry.startswith("../"):
        found = base / entry[3:]
    if found.is_dir():
        return Part(split, _images_in(found), found)
    if found.is_file() and found.suffix.lower() == ".txt":
        return Part(split, _listed_images(found))
    raise DataError(
        f"'{split}: {entry}' is not an image folder or a .txt list ({found})",
        where=data_file,
        hint="paths are relative to the 'path' key, else to data.yaml's folder",
    )


def _listed_images(listing: Path) -> list[Path]:
    try:
        lines = read_text_file(listing, limit=LIST_LIMIT, what="image list").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the image list ({exc})", where=listing) from None
    images: list[Path] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        image = listing.parent / line.strip()
        if not image.is_file():
            raise DataError(f"image not found: {image}", where=f"{listing}:{number}")
        images.append(image)
    return images


def _layout_parts(base: Path) -> list[Part]:
    images = base / "images"
    if images.is_dir():
        named = _split_dirs(images)
        if named:
            return [Part(s, _images_in(images / d), images / d) for d, s in named]
        return [Part(None, _images_in(images), images)]
    named = [(d, s) for d, s in _split_dirs(base) if (base / d / "images").is_dir()]
    if named:
        return [Part(s, _images_in(base / d / "images"), base / d / "images") for d, s in named]
    raise DataError("no YOLO layout here", where=base, hint=LAYOUT_HINT)


def _split_dirs(folder: Path) -> list[tuple[str, str]]:
    """``(folder name, split)`` of the split-named sub-folders, train / val / test first."""
    dirs = [p.name for p in folder.iterdir() if p.is_dir() and p.name.lower() in SPLIT_NAMES]
    found = [(d, SPLIT_NAMES[d.lower()]) for d in dirs]
    return sorted(found, key=lambda pair: (split_order(pair[1]), pair[0]))


def _images_in(folder: Path) -> list[Path]:
    """Image files under ``folder``, sub-folders too, sorted; hidden ones skipped."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(dirpath) / name)
    return found


def label_path(image: Path) -> Path:
    """The label file of ``image``: the last ``images`` folder replaced by ``labels``,
    the suffix by ``.txt``; beside the image when no folder is named ``images``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _check_shared_label(image: Path, labelled: dict[Path, Path]) -> None:
    """Refuses two images (``a.jpg``, ``a.png``) whose label file is the same one."""
    label = Path(os.path.abspath(label_path(image)))
    other = labelled.setdefault(label, image)
    if other != image and label.is_file():
        raise DataError(
            f"images {other.name} and {image.name} share this label file",
            where=label,
            hint="rename one image (and give it its own label file), or remove it",
        )


def _check_orphans(part: Part, problems: LabelProblems) -> None:
    """Reports label files of ``part``'s label folder that belong to no image."""
    assert part.folder is not None
    labels_dir = label_path(part.folder / "x.jpg").parent
    if labels_dir == part.folder or not labels_dir.is_dir():
        return
    expected = {label_path(image) for image in part.images}
    for dirpath, dirnames, filenames in os.walk(labels_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            file = Path(dirpath) / name
            if name.startswith(".") or not name.endswith(".txt") or name == CLASSES_FILE:
                continue
            if file not in expected:
                problems.report(
                    "label file without an image",
                    where=file,
                    hint=f"expected an image {file.stem}.<suffix> in "
                    f"{part.folder / file.parent.relative_to(labels_dir)}",
                )


# -- class names ---------------------------------------------------------------------------


def _class_names(
    config: dict[str, Any],
    data_file: Path | None,
    base: Path,
    parts: Sequence[Part],
    classes: list[str] | None,
) -> list[str]:
    found: list[str] | None = None
    source: Path | None = None
    if data_file is not None and config.get("names") is not None:
        found, source = _yaml_names(config, data_file), data_file
    else:
        folders = [base] + [label_path(p.folder / "x.jpg").parent for p in parts if p.folder]
        source = next((f / CLASSES_FILE for f in folders if (f / CLASSES_FILE).is_file()), None)
        if source is not None:
            found = read_class_names(source)
    if classes is not None:
        given = [str(c) for c in classes]
        if found is not None and given != found:
            raise DataError(
                f"data.classes {given} differ from the dataset's names {found}",
                where=source,
                hint="leave data.classes out, or give the same names in the same order",
            )
        _check_names(given, "data.classes")
        return given
    if found is None:
        raise DataError(
            "the class names are not given",
            where=base,
            hint="write data.yaml with 'names', or classes.txt (one name per line), or set "
            "data.classes",
        )
    return found


def _yaml_names(config: dict[str, Any], data_file: Path) -> list[str]:
    names = config["names"]
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise DataError("'names' ids are not integers", where=data_file) from None
        if ids != list(range(len(ids))):
            raise DataError(
                f"'names' ids are {ids}, not 0..{len(ids) - 1}",
                where=data_file,
                hint="class ids run from 0 without gaps",
            )
        by_id = {int(k): v for k, v in names.items()}
        names = [by_id[i] for i in ids]
    if not isinstance(names, list) or not all(isinstance(n, str | int) for n in names):
        raise DataError("'names' is not a list or {id: name}", where=data_file)
    result = [str(n) for n in names]
    _check_names(result, data_file)
    count = config.get("nc")
    if count is not None and count != len(result):
        raise DataError(f"nc is {count} but 'names' has {len(result)}", where=data_file)
    return result


def read_class_names(path: Path) -> list[str]:
    """Class names of a ``classes.txt``, one per line in id order (blank lines skipped).

    Raises:
        DataError: when unreadable, empty, or a name repeats.
    """
    try:
        lines = read_text_file(path, limit=LIST_LIMIT, what="class names").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the class names ({exc})", where=path) from None
    names = [line.strip() for line in lines if line.strip()]
    _check_names(names, path)
    return names


def _check_names(names: list[str], where: str | Path) -> None:
    if not names:
        raise DataError("no class names", where=where, hint="one name per class, in id order")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"class names repeat: {', '.join(twice)}", where=where)


# -- label files ---------------------------------------------------------------------------


def _read_sample(
    image: Path, split: str | None, num_classes: int, problems: LabelProblems
) -> Sample:
    file = label_path(image)
    if not file.is_file():
        boxes, labels = box_arrays([], [])
    else:
        width, height = image_size(image)
        boxes, labels = read_label_file(file, width, height, num_classes, problems)
    return Sample(image=str(image), boxes=boxes, box_labels=labels, split=split)


def read_label_file(
    file: Path, width: int, height: int, num_classes: int, problems: LabelProblems
) -> tuple[np.ndarray, np.ndarray]:
    """The pixel boxes of one label file of a ``width x height`` image.

    Raises:
        DataError: with ``problems`` in error mode, naming ``file:line``.
    """
    try:
        text = read_text_file(file, limit=LIST_LIMIT, what="label file")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the label file ({exc})", where=file) from None
    boxes: list[list[float]] = []
    labels: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        found = parse_line(fields, width, height, num_classes, f"{file}:{number}", problems)
        if found is not None:
            labels.append(found[0])
            boxes.append(found[1])
    return box_arrays(boxes, labels)


def parse_line(
    fields: list[str],
    width: int,
    height: int,
    num_classes: int,
    where: str,
    problems: LabelProblems,
) -> tuple[int, list[float]] | None:
    """``(class id, [x1, y1, x2, y2] pixels)`` of the fields of one label line, or None
    after reporting it."""
    if len(fields) != 5:
        if len(fields) == 6:
            message, hint = "6 fields: a score column?", "training labels carry no score"
        elif len(fields) > 6:
            message, hint = f"{len(fields)} fields: a segmentation polygon?", "boxes only"
        else:
            message, hint = f"{len(fields)} fields, expected 5", ""
        problems.report(message, where=where, hint=f"{hint}; {LINE_HINT}" if hint else LINE_HINT)
        return None
    class_id = parse_class_id(fields[0], num_classes, where=where, problems=problems)
    if class_id is None:
        return None
    values = parse_numbers(fields[1:], names=FIELDS, where=where, problems=problems)
    if (
        values is None
        or check_normalised(values, names=FIELDS, where=where, problems=problems) is None
    ):
        return None
    cx, cy, w, h = values
    if w <= 0 or h <= 0:
        problems.report(f"box of zero or negative size (w {w:g}, h {h:g})", where=where)
        return None
    corners = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    corners_ok = check_normalised(
        corners,
        names=("cx - w/2", "cy - h/2", "cx + w/2", "cy + h/2"),
        where=where,
        problems=problems,
    )
    if corners_ok is None:
        return None
    x1, y1, x2, y2 = corners_ok
    if x2 <= x1 or y2 <= y1:
        problems.report("box of zero size inside the image", where=where)
        return None
    return class_id, [x1 * width, y1 * height, x2 * width, y2 * height]


# -- writing -------------------------------------------------------------------------------


def write_yolo(
    samples: SampleSet, dst: Path, *, overwrite: bool = False, link: bool = False
) -> Path:
    """Writes ``samples`` as a YOLO dataset: images, label files and ``data.yaml``.

    Images go to ``images/<split>/`` (``images/`` without splits) under their path
    relative to the folder holding all images of the split; labels alike under
    ``labels/``; images without boxes get an empty label file.

    Args:
        samples: Detection samples (boxes in pixels) with their class names.
        dst: The output folder; written completely or not at all.
        overwrite: Replace a non-empty ``dst``.
        link: Hard-link the images instead of copying them, where possible.

    Returns:
        ``dst``.

    Raises:
        DataError: for samples with and without a split mixed, two images that would
            share a label file, boxes outside their image, or a non-empty ``dst``.
    """
    check_class_names(samples.classes, target="YOLO", where=samples.root)
    plan = yolo_plan(samples)
    with staged_dir(dst, overwrite=overwrite) as tmp:
        for sample, image_name in plan:
            place_image(sample.image, tmp / image_name, link=link)
            write_label(tmp, image_name, sample, len(samples.classes))
        write_data_yaml(tmp, samples.classes, [s.split for s, _ in plan])
    return dst


def yolo_plan(samples: SampleSet) -> list[tuple[Sample, Path]]:
    """Each sample with its image path in the output (``images/<split>/<name>``).

    Raises:
        DataError: for samples with and without a split mixed, or two images whose
            label files would be the same.
    """
    plan = image_plan(samples)
    labels: dict[Path, str] = {}
    for sample, image_name in plan:
        label = label_path(image_name)
        if label in labels:
            raise DataError(
                f"two images would share the label file {label.as_posix()}: "
                f"{labels[label]} and {sample.image}",
                where=sample.image,
                hint="rename one of the images",
            )
        labels[label] = sample.image
    return plan


def write_label(base: Path, image_name: Path, sample: Sample, num_classes: int) -> Path:
    """Writes the label file of ``sample`` (its image at ``base / image_name``)."""
    width, height = image_size(sample.image)
    boxes, labels = writable_boxes(sample, width, height, num_classes)
    file = base / label_path(image_name)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(label_lines(boxes, labels, width, height), encoding="utf-8")
    return file


def write_data_yaml(base: Path, classes: Sequence[str], splits: Sequence[str | None]) -> Path:
    """Writes ``data.yaml``: the split folders (when any) and the class names."""
    data: dict[str, Any] = {}
    for split in sorted({s for s in splits if s is not None}, key=split_order):
        data[split] = f"images/{split}"
    data["nc"] = len(classes)
    data["names"] = dict(enumerate(classes))
    text = "# YOLO dataset written by mediscope; paths are relative to this file's folder\n"
    text += yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    file = base / DATA_FILES[0]
    file.write_text(text, encoding="utf-8")
    return file
