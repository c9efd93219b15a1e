"""The Clinical Bacteria DataSet in the ``yolo`` layout (study S1).

Wang et al., "A clinical bacterial dataset for deep learning in microbiological rapid
on-site evaluation", Scientific Data 11:608 (2024); zenodo record 10526360. Gram-stained
smears of lower-respiratory samples: 1,705 raw images of 4,912 x 3,684 px and a set of
640 x 640 crops with 11,824 YOLO boxes: 0 G-cocci, 1 G+cocci, 2 G-bacilli, 3 G+bacilli.

The archives unpack to (folder names as in the dataset's README)::

    DeepDataSet/
        640DataSet/            the crops with labelme annotations (boxes and polygons)
        DetectionDataSet/      the crops for YOLOv5: images/*.jpg, labels/*.txt and
                               txt/{train,val,test}.txt (image paths on the authors' PC)
        SegmentationDataSet/   the crops for U-Net
    RawImageDataSet/           the raw images

:func:`prepare_fetched` (the catalog's preparation step) turns that, in place, into::

    clinical-bacteria/data.yaml                      train / val / test folders, names
    clinical-bacteria/images/{train,val,test}/*.jpg  the crops, split as the authors did
    clinical-bacteria/labels/{train,val,test}/*.txt  "class cx cy w h" lines
    clinical-bacteria/raw/...                        the raw images, for tiled inference
    clinical-bacteria/extras/...                     the rest (640DataSet, SegmentationDataSet)
    clinical-bacteria/README.txt

The published split lists name each image by a Windows path on the authors' machine;
only the file name is used. Images in no list (crops without boxes) go to train. Without
lists every crop goes to train, and the configuration's split makes validation data.
The folders are found by their content, not only by name: the detection set is the folder
with ``images/`` and ``labels/*.txt`` (preferring a name with "detection"), the raw set is
the ``raw/`` folder of the download or a folder named like ``RawImageDataSet``/``BigPic``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from mediscope.data.images import IMAGE_SUFFIXES
from mediscope.data.synthetic.gram_crops import GRAM_CLASSES
from mediscope.errors import DataError

CLASSES: Final[tuple[str, ...]] = GRAM_CLASSES  # 0 G-cocci, 1 G+cocci, 2 G-bacilli, 3 G+bacilli
SPLITS: Final[tuple[str, ...]] = ("train", "val", "test")
_RAW_NAMES: Final = re.compile(r"raw.*data.*set|bigpic|raw", re.IGNORECASE)
_SOURCE: Final = ".source"
_COPY_HINT: Final = (
    "the download is incomplete or not the Clinical Bacteria DataSet (zenodo record "
    "10526360); fetch it again with --force"
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class ClinicalBacteriaSummary:
    """What :func:`prepare_fetched` made.

    Attributes:
        root: The dataset folder (holding ``data.yaml``).
        images: ``split -> number of crops``.
        objects: ``class name -> number of boxes`` over all splits.
        negatives: Crops without a label file or with an empty one.
        raw: Number of raw images in ``raw/``.
        malformed: Label lines whose first field is not a class id 0..3 (left as they are:
            the ``yolo`` reader reports them with their line number).
    """

    root: Path
    images: dict[str, int]
    objects: dict[str, int]
    negatives: int
    raw: int
    malformed: int = 0


@dataclass
class _Tally:
    images: dict[str, int] = field(default_factory=dict)
    objects: list[int] = field(default_factory=lambda: [0] * len(CLASSES))
    negatives: int = 0
    malformed: int = 0


def prepare_fetched(folder: Path, *, log: Log | None = None) -> ClinicalBacteriaSummary:
    """The catalog's preparation step: arranges the unpacked archives in ``folder`` in place.

    ``mediscope data fetch clinical-bacteria DST`` calls it on its temporary folder, which
    is renamed to ``DST/clinical-bacteria`` afterwards, so a failure leaves no dataset.

    Args:
        folder: The folder the archives were unpacked into.
        log: Called with one-line progress messages.

    Returns:
        Crops per split, boxes per class, negatives and raw images.

    Raises:
        DataError: No detection set (a folder with ``images/`` and ``labels/*.txt``), or
            a crop listed in two splits.
    """
    say = log or (lambda _message: None)
    folder = Path(folder)
    source = _move_aside(folder)
    detection = find_detection_folder(source)
    assignment = read_split_lists(detection)
    tally = _move_crops(detection, folder, assignment, say)
    raw = _move_raw(source, folder, say)
    _keep_the_rest(source, folder, detection, say)
    summary = ClinicalBacteriaSummary(
        root=folder,
        images=tally.images,
        objects=dict(zip(CLASSES, tally.objects, strict=True)),
        negatives=tally.negatives,
        raw=raw,
        malformed=tally.malformed,
    )
    (folder / "data.yaml").write_text(_data_yaml(tally.images), encoding="utf-8")
    (folder / "README.txt").write_text(_readme(summary), encoding="utf-8")
    boxes = ", ".join(f"{k} {v}" for k, v in summary.objects.items())
    crops = ", ".join(f"{k} {v}" for k, v in summary.images.items())
    say(f"clinical-bacteria: crops {crops}; boxes {boxes}; {raw} raw images")
    if tally.malformed:
        say(f"warning: {tally.malformed} label lines do not start with a class id 0..3")
    return summary


def _move_aside(folder: Path) -> Path:
    """Moves everything unpacked into ``folder/.source`` so outputs never clash with it."""
    source = folder / _SOURCE
    source.mkdir()
    for entry in sorted(folder.iterdir()):
        if entry != source:
            os.replace(entry, source / entry.name)
    return source


def find_detection_folder(root: Path) -> Path:
    """The folder of the YOLO crops: it has ``images/`` and ``labels/`` with ``.txt`` files.

    Raises:
        DataError: when no folder under ``root`` has both.
    """
    found = [d for d in _walk_dirs(root) if _is_detection(d)]
    if not found:
        raise DataError(
            "no detection set (a folder with images/ and labels/*.txt, such as "
            "DeepDataSet/DetectionDataSet)",
            where=root.parent,
            hint=_COPY_HINT,
        )
    named = [d for d in found if "detect" in d.name.lower()]
    return (named or found)[0]


def _walk_dirs(root: Path) -> Iterator[Path]:
    """Folders under ``root`` (itself first), breadth first, in name order."""
    level = [root]
    while level:
        yield from level
        level = sorted(
            child
            for d in level
            for child in d.iterdir()
            if child.is_dir() and child.name != "__MACOSX"
        )


def _is_detection(folder: Path) -> bool:
    images, labels = folder / "images", folder / "labels"
    return images.is_dir() and labels.is_dir() and any(labels.glob("*.txt"))


def read_split_lists(detection: Path) -> dict[str, str]:
    """``image file name -> split`` from ``train.txt``, ``val.txt`` and ``test.txt``.

    The lists sit in ``detection/txt/`` (or ``detection/``) and hold one image path per
    line, from the authors' machine (``G:\\...\\images\\x.jpg``): only the file name counts.
    Returns an empty mapping when there are no lists.

    Raises:
        DataError: an image listed in two splits (naming both lists).
    """
    assignment: dict[str, str] = {}
    where: dict[str, Path] = {}
    for split in SPLITS:
        listing = next(
            (p for p in (detection / "txt" / f"{split}.txt", detection / f"{split}.txt")
             if p.is_file()),
            None,
        )  # fmt: skip
        if listing is None:
            continue
        for line in listing.read_text(encoding="utf-8-sig", errors="replace").splitlines():
            name = re.split(r"[\\/]", line.strip())[-1]
            if not name:
                continue
            if name in assignment and assignment[name] != split:
                raise DataError(
                    f"{name} is listed in {where[name].name} and {listing.name}",
                    where=listing,
                    hint="each crop belongs to one split; fix or delete one list",
                )
            assignment[name], where[name] = split, listing
    return assignment


def _move_crops(detection: Path, out: Path, assignment: dict[str, str], log: Log) -> _Tally:
    """Moves the crops and their label files into ``images/<split>`` and ``labels/<split>``."""
    images = sorted(
        p
        for p in (detection / "images").iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not images:
        raise DataError("the detection set has no images", where=detection / "images")
    tally = _Tally()
    unlisted = 0
    for image in images:
        split = assignment.get(image.name) or assignment.get(image.stem)
        if split is None:
            unlisted += 1 if assignment else 0
            split = "train"
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        os.replace(image, out / "images" / split / image.name)
        label = detection / "labels" / f"{image.stem}.txt"
        boxes = 0
        if label.is_file():
            boxes = _count_boxes(label, tally)
            os.replace(label, out / "labels" / split / label.name)
        tally.negatives += boxes == 0
        tally.images[split] = tally.images.get(split, 0) + 1
    if not assignment:
        log("clinical-bacteria: no split lists; every crop is in train")
    elif unlisted:
        log(f"clinical-bacteria: {unlisted} crops in no split list went to train")
    orphans = sorted(p.name for p in (detection / "labels").glob("*.txt"))
    if orphans:
        log(
            f"warning: {len(orphans)} label files without a crop (e.g. {orphans[0]}) are in extras/"
        )
    tally.images = {s: tally.images[s] for s in SPLITS if s in tally.images}
    return tally


def _count_boxes(label: Path, tally: _Tally) -> int:
    boxes = 0
    for line in label.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0].isdigit() and int(fields[0]) < len(CLASSES):
            tally.objects[int(fields[0])] += 1
            boxes += 1
        else:
            tally.malformed += 1
    return boxes


def _move_raw(source: Path, out: Path, log: Log) -> int:
    """Moves the raw images' folder to ``raw/``; returns how many images it holds."""
    candidates = [source / "raw"] if (source / "raw").is_dir() else []
    candidates += [
        d for d in _walk_dirs(source) if d != source and _RAW_NAMES.fullmatch(d.name) is not None
    ]
    raw = next((d for d in candidates if _count_images(d)), None)
    if raw is None:
        log("warning: clinical-bacteria: no raw images (RawImageDataSet) in the download")
        return 0
    os.replace(raw, out / "raw")
    return _count_images(out / "raw")


def _count_images(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _keep_the_rest(source: Path, out: Path, detection: Path, log: Log) -> None:
    """Whatever the archives held besides crops and raw images goes to ``extras/``."""
    for moved in ("images", "labels"):
        _remove_if_empty(detection / moved)
    for path in sorted(source.rglob("*"), reverse=True):  # deepest first
        if path.is_dir():
            _remove_if_empty(path)
    rest = sorted(source.iterdir())
    if rest:
        (out / "extras").mkdir()
        for entry in rest:
            os.replace(entry, out / "extras" / entry.name)
        log(f"clinical-bacteria: kept {', '.join(p.name for p in rest)} in extras/")
    shutil.rmtree(source)


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _data_yaml(images: dict[str, int]) -> str:
    # No "path" key: Ultralytics and mediscope then read entries relative to this file,
    # wherever the folder is moved.
    lines = ["# Clinical Bacteria DataSet (zenodo 10526360), arranged by mediscope; README.txt"]
    lines += [f"{split}: images/{split}" for split in SPLITS if split in images]
    lines += [f"nc: {len(CLASSES)}", f"names: [{', '.join(CLASSES)}]"]
    return "\n".join(lines) + "\n"


def _readme(summary: ClinicalBacteriaSummary) -> str:
    lines = [
        "Clinical Bacteria DataSet (Wang et al., Scientific Data 11:608, 2024; "
        "https://zenodo.org/records/10526360),",
        "arranged for mediscope's yolo format by 'mediscope data fetch clinical-bacteria'.",
        "",
        "Gram-stained smears of lower-respiratory samples (M-ROSE), Chinese PLA General Hospital.",
        "Classes: " + ", ".join(f"{i} {c}" for i, c in enumerate(CLASSES)) + ".",
        "",
        "images/<split>/, labels/<split>/: the 640 x 640 crops of DetectionDataSet and their",
        "'class cx cy w h' lines, split by the authors' train/val/test lists (crops in no list",
        "are in train); data.yaml names the folders and classes.",
        "raw/: the raw 4,912 x 3,684 images (RawImageDataSet), for tiled inference.",
        "extras/: the rest of the download (640DataSet, SegmentationDataSet, ...), untouched.",
        "",
        "crops: " + ", ".join(f"{k}={v}" for k, v in summary.images.items()),
        "boxes: " + ", ".join(f"{k}={v}" for k, v in summary.objects.items()),
        f"crops without boxes: {summary.negatives}",
        f"raw images: {summary.raw}",
    ]
    return "\n".join(lines) + "\n"
