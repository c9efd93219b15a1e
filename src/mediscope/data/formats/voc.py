"""The ``voc`` format: Pascal VOC XML files, one per image.

Layouts:

- ``ROOT/Annotations/<id>.xml`` + ``ROOT/JPEGImages/<id>.<suffix>`` (sub-folders kept),
  with optional ``ImageSets/Main/{train,val,test}.txt`` lists of ids giving the splits
  (``trainval.txt`` counts as train, less the ``val.txt`` ids, when there is no
  ``train.txt``). With these lists,
  annotations listed in none are left out, as VOC's own images for other challenges
  are; without them every annotation is read and the split is made later.
- XML files beside their images, anywhere under ROOT; a first folder named ``train``,
  ``val`` (``valid`` ...) or ``test`` gives the split.

The image is the XML's ``<filename>`` in the image folder, else the image of the same
stem. Its size is read from the image file, not from ``<size>``, which tools sometimes
get wrong (rotated photos).

Coordinates. VOC boxes are 1-based pixel indices, inclusive: ``xmin = 1, xmax = W`` is
the whole width. As detectron2 and torchvision's references do, they become 0-based
corner coordinates ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax``, and the
writer adds the 1 back (integers stay integers; other values are written exactly).

``difficult`` objects are kept as ordinary boxes (VOC's evaluation ignores them; for
training they are real objects); ``truncated``, ``occluded`` and ``pose`` are not kept.

Class names: the ``classes`` argument, else ``classes.txt`` in ROOT (one per line),
else the object names found, sorted (for VOC itself this is its usual order, aeroplane
first). The writer writes ``classes.txt`` so that ids survive a round trip. An object
whose name is not a class is a bad label, like a missing or non-numeric coordinate,
NaN, a zero-size box or one outside the image (``on_bad_label``; see
:mod:`~mediscope.data.formats.boxes`). Errors name ``file.xml:line`` of the object.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
import xml.parsers.expat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from mediscope.data.formats.boxes import (
    LabelProblems,
    box_arrays,
    check_box,
    check_class_names,
    image_header,
    parse_numbers,
    place_image,
    split_order,
    writable_boxes,
)
from mediscope.data.formats.layout import plan_by_split
from mediscope.data.formats.masks import SPLIT_NAMES
from mediscope.data.formats.yolo import CLASSES_FILE, read_class_names
from mediscope.data.images import IMAGE_SUFFIXES
from mediscope.data.label_text import number_text
from mediscope.data.samples import Sample, SampleSet
from mediscope.errors import DataError
from mediscope.files import staged_dir
from mediscope.registry import unknown_name_hint

log = logging.getLogger(__name__)

COORDS = ("xmin", "ymin", "xmax", "ymax")
LAYOUT_HINT = "use Annotations/ + JPEGImages/ (+ ImageSets/Main), or XML files beside the images"


@dataclass
class Node:
    """An XML element with the line it starts on."""

    tag: str
    line: int
    text: str = ""
    children: list[Node] = field(default_factory=list)

    def find(self, tag: str) -> Node | None:
        """The first child named ``tag``."""
        return next((c for c in self.children if c.tag == tag), None)

    def findall(self, tag: str) -> list[Node]:
        """The children named ``tag``."""
        return [c for c in self.children if c.tag == tag]

    def value(self, tag: str) -> str | None:
        """The stripped text of the first child named ``tag``."""
        child = self.find(tag)
        return child.text.strip() if child is not None else None


def parse_xml(path: Path) -> Node:
    """The root element of an XML file, with line numbers.

    Raises:
        DataError: naming ``file:line`` for malformed XML.
    """
    parser = xml.parsers.expat.ParserCreate()
    top = Node("", 0)
    stack = [top]

    def start(tag: str, _attrs: dict[str, str]) -> None:
        node = Node(tag, parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        stack[-1].text += data

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        with path.open("rb") as handle:
            parser.ParseFile(handle)
    except xml.parsers.expat.ExpatError as exc:
        raise DataError(
            f"malformed XML ({xml.parsers.expat.errors.messages[exc.code]})",
            where=f"{path}:{exc.lineno}",
            hint="fix or remove the file",
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read the file ({exc})", where=path) from None
    if not top.children or top.children[0].tag != "annotation":
        raise DataError("not a VOC annotation (no <annotation> element)", where=path)
    return top.children[0]


@dataclass(frozen=True)
class Entry:
    """One annotation file with its image and split."""

    xml: Path
    image_dir: Path
    split: str | None


def read_voc(
    path: Path,
    *,
    classes: list[str] | None = None,
    task: str = "detection",
    root: Path | None = None,
    on_bad_label: str = "error",
) -> SampleSet:
    """Reads a Pascal VOC dataset (layouts in the module doc).

    Args:
        path: The dataset folder (holding ``Annotations/`` or XML files with images).
        classes: Class names in id order (no background); default ``classes.txt`` or
            the sorted object names. When ``classes.txt`` exists, the same names.
        task: Must be ``detection``.
        root: Unused (paths are relative to the dataset); accepted as every reader does.
        on_bad_label: ``error`` stops at the first bad object naming ``file:line``;
            ``skip`` drops bad objects (and annotations without an image) with one
            warning.

    Returns:
        One sample per annotation file: ``boxes`` float32 ``(N, 4)`` 0-based xyxy
        pixels, ``box_labels`` int64 ``(N,)``, ``split`` from ``ImageSets/Main`` or the
        folder; the root is ``path``.

    Raises:
        DataError: naming the file (and line) for a missing layout, malformed XML,
            bad objects, missing images or class names that differ from ``classes.txt``.

    Example:
        >>> samples = read_voc(Path("VOCdevkit/VOC2012"))  # doctest: +SKIP
        >>> samples.classes[:2]  # doctest: +SKIP
        ['aeroplane', 'bicycle']
    """
    del root
    if task != "detection":
        raise DataError(f"the voc format holds no {task} targets", where="data.format")
    if not path.is_dir():
        raise DataError("dataset not found", where=path, hint=LAYOUT_HINT)
    problems = LabelProblems(on_bad_label, what="VOC annotations")
    entries = _entries(path, problems)
    if not entries:
        raise DataError("no XML annotation files", where=path, hint=LAYOUT_HINT)
    documents = [(entry, parse_xml(entry.xml)) for entry in entries]
    names = _class_names(path, classes, [doc for _, doc in documents])
    index = {name: i for i, name in enumerate(names)}
    samples: list[Sample] = []
    for entry, document in documents:
        image = _image_of(entry, document)
        if image is None:
            problems.report(
                "image not found",
                where=entry.xml,
                hint=f"expected {entry.image_dir / (document.value('filename') or entry.xml.stem)}",
            )
            continue
        samples.append(_sample(entry, document, image, index, problems))
    if not samples:
        raise DataError("no annotation has its image", where=path, hint=LAYOUT_HINT)
    problems.finish()
    return SampleSet(classes=names, samples=samples, root=path)


# -- layouts -------------------------------------------------------------------------------


def _entries(base: Path, problems: LabelProblems) -> list[Entry]:
    annotations = base / "Annotations"
    if annotations.is_dir():
        images = base / "JPEGImages"
        if not images.is_dir():
            raise DataError("Annotations/ without JPEGImages/", where=base, hint=LAYOUT_HINT)
        lists = _image_sets(base / "ImageSets" / "Main")
        if not lists:
            return [
                Entry(x, images / x.parent.relative_to(annotations), None)
                for x in _xml_files(annotations)
            ]
        return _listed(annotations, images, lists, problems)
    entries: list[Entry] = []
    for xml_file in _xml_files(base):
        first = xml_file.relative_to(base).parts[0]
        split = SPLIT_NAMES.get(first.lower()) if first != xml_file.name else None
        entries.append(Entry(xml_file, xml_file.parent, split))
    return entries


def _image_sets(folder: Path) -> dict[str, Path]:
    """Split → ``ImageSets/Main`` list file (``trainval`` as train without ``train``)."""
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for name in ("train", "val", "test"):
        if (folder / f"{name}.txt").is_file():
            found[name] = folder / f"{name}.txt"
    if "train" not in found and (folder / "trainval.txt").is_file():
        found["train"] = folder / "trainval.txt"
    return found


def _listed(
    annotations: Path, images: Path, lists: dict[str, Path], problems: LabelProblems
) -> list[Entry]:
    entries: list[Entry] = []
    listed: dict[str, str] = {}
    # val and test first: a trainval list used as train leaves out what they hold.
    for split, file in sorted(lists.items(), key=lambda item: split_order(item[0])[0] == 0):
        try:
            lines = file.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read the image set ({exc})", where=file) from None
        for number, line in enumerate(lines, start=1):
            if not line.split():
                continue
            image_id = line.split()[0]  # per-class lists add a -1 / 1 column
            where = f"{file}:{number}"
            if file.stem == "trainval" and listed.get(image_id) == "val":
                continue
            if image_id in listed:
                raise DataError(
                    f"'{image_id}' is listed in {listed[image_id]} and {split}",
                    where=where,
                    hint="each image belongs to one split",
                )
            listed[image_id] = split
            xml_file = annotations / f"{image_id}.xml"
            if not xml_file.is_file():
                problems.report(f"no annotation file {xml_file}", where=where)
                continue
            entries.append(Entry(xml_file, images / PurePosixPath(image_id).parent, split))
    unlisted = len(_xml_files(annotations)) - len(entries)
    if unlisted > 0:
        log.info("%s: %d annotations are in no image set and left out", annotations, unlisted)
    return sorted(entries, key=lambda e: split_order(e.split))


def _xml_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            Path(dirpath) / n
            for n in sorted(filenames)
            if n.lower().endswith(".xml") and not n.startswith(".")
        ]
    return found


def _image_of(entry: Entry, document: Node) -> Path | None:
    filename = document.value("filename")
    if filename and (entry.image_dir / filename).is_file():
        return entry.image_dir / filename
    stem = entry.xml.stem
    for suffix in sorted(IMAGE_SUFFIXES):
        for candidate in (f"{stem}{suffix}", f"{stem}{suffix.upper()}"):
            if (entry.image_dir / candidate).is_file():
                return entry.image_dir / candidate
    return None


# -- class names ---------------------------------------------------------------------------


def _class_names(base: Path, classes: list[str] | None, documents: list[Node]) -> list[str]:
    file = base / CLASSES_FILE
    found = read_class_names(file) if file.is_file() else None
    if classes is not None:
        given = [str(c) for c in classes]
        if found is not None and given != found:
            raise DataError(
                f"data.classes {given} differ from the dataset's names {found}",
                where=file,
                hint="leave data.classes out, or give the same names in the same order",
            )
        if not given or len(set(given)) != len(given):
            raise DataError("give one or more distinct class names", where="data.classes")
        return given
    if found is not None:
        return found
    names = {
        name for doc in documents for obj in doc.findall("object") if (name := obj.value("name"))
    }
    if not names:
        raise DataError(
            "no object names to take the classes from",
            where=base,
            hint=f"set data.classes or write {file}, one name per line",
        )
    return sorted(names)


# -- objects -------------------------------------------------------------------------------


def _sample(
    entry: Entry, document: Node, image: Path, index: dict[str, int], problems: LabelProblems
) -> Sample:
    width, height, _ = image_header(image)
    boxes: list[list[float]] = []
    labels: list[int] = []
    for obj in document.findall("object"):
        where = f"{entry.xml}:{obj.line}"
        name = obj.value("name")
        if not name:
            problems.report("object without <name>", where=where)
            continue
        if name not in index:
            problems.report(
                f"object name '{name}' is not a class",
                where=where,
                hint=unknown_name_hint(name, list(index)),
            )
            continue
        box = obj.find("bndbox")
        if box is None:
            problems.report("object without <bndbox>", where=where)
            continue
        where = f"{entry.xml}:{box.line}"
        texts = [box.value(c) for c in COORDS]
        missing = [c for c, t in zip(COORDS, texts, strict=True) if t is None]
        if missing:
            problems.report(
                f"<bndbox> without <{missing[0]}>",
                where=where,
                hint="a box has xmin, ymin, xmax, ymax",
            )
            continue
        values = parse_numbers(
            [t or "" for t in texts], names=COORDS, where=where, problems=problems
        )
        if values is None:
            continue
        xmin, ymin, xmax, ymax = values
        checked = check_box(
            [xmin - 1, ymin - 1, xmax, ymax], width, height, where=where, problems=problems
        )
        if checked is not None:
            boxes.append(checked)
            labels.append(index[name])
    box_array, label_array = box_arrays(boxes, labels)
    return Sample(image=str(image), boxes=box_array, box_labels=label_array, split=entry.split)


# -- writing -------------------------------------------------------------------------------


def write_voc(
    samples: SampleSet, dst: Path, *, overwrite: bool = False, link: bool = False
) -> Path:
    """Writes ``samples`` as a Pascal VOC dataset.

    ``Annotations/<id>.xml``, ``JPEGImages/<id><suffix>``, ``ImageSets/Main/<split>.txt``
    (when the samples have splits) and ``classes.txt``. The id is the image's path within
    its split folder, ``/`` replaced by ``_``; ids that repeat (the same name in two
    splits) get the split as a prefix, then a number.

    Args:
        samples: Detection samples (0-based xyxy pixel boxes) with their class names.
        dst: The output folder; written completely or not at all.
        overwrite: Replace a non-empty ``dst``.
        link: Hard-link the images instead of copying them, where possible.

    Returns:
        ``dst``.

    Raises:
        DataError: for samples with and without a split mixed, boxes outside their
            image, or a non-empty ``dst``.
    """
    check_class_names(samples.classes, target="VOC", where=samples.root)
    plan = voc_ids(samples)
    splits: dict[str, list[str]] = {}
    with staged_dir(dst, overwrite=overwrite) as tmp:
        for sample, image_id in plan:
            suffix = Path(sample.image).suffix
            place_image(sample.image, tmp / "JPEGImages" / f"{image_id}{suffix}", link=link)
            document = voc_document(sample, f"{image_id}{suffix}", samples.classes)
            xml_file = tmp / "Annotations" / f"{image_id}.xml"
            xml_file.parent.mkdir(parents=True, exist_ok=True)
            document.write(xml_file, encoding="utf-8", xml_declaration=False)
            if sample.split is not None:
                splits.setdefault(sample.split, []).append(image_id)
        for split, ids in splits.items():
            file = tmp / "ImageSets" / "Main" / f"{split}.txt"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
        (tmp / CLASSES_FILE).write_text("".join(f"{c}\n" for c in samples.classes), "utf-8")
    return dst


def voc_ids(samples: SampleSet) -> list[tuple[Sample, str]]:
    """Each sample with its VOC id (see :func:`write_voc`), train / val / test order.

    Raises:
        DataError: for samples with and without a split mixed.
    """
    named: list[tuple[Sample, str]] = []
    for _split, split_samples in plan_by_split(samples):
        for sample, name in split_samples:
            named.append((sample, name.with_suffix("").as_posix().replace("/", "_")))
    counts: dict[str, int] = {}
    for _, image_id in named:
        counts[image_id] = counts.get(image_id, 0) + 1
    taken: set[str] = set()
    result: list[tuple[Sample, str]] = []
    for sample, image_id in named:
        candidate = image_id
        if counts[image_id] > 1 and sample.split is not None:
            candidate = f"{sample.split}_{image_id}"
        number = 1
        unique = candidate
        while unique in taken:
            number += 1
            unique = f"{candidate}_{number}"
        taken.add(unique)
        result.append((sample, unique))
    return result


def voc_document(sample: Sample, filename: str, classes: list[str]) -> ET.ElementTree:
    """The VOC XML of one sample (1-based inclusive coordinates)."""
    width, height, depth = image_header(sample.image)
    boxes, labels = writable_boxes(sample, width, height, len(classes))
    annotation = ET.Element("annotation")
    ET.SubElement(annotation, "folder").text = "JPEGImages"
    ET.SubElement(annotation, "filename").text = filename
    size = ET.SubElement(annotation, "size")
    for tag, value in (("width", width), ("height", height), ("depth", depth)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(annotation, "segmented").text = "0"
    for (x1, y1, x2, y2), label in zip(boxes, labels, strict=True):
        obj = ET.SubElement(annotation, "object")
        ET.SubElement(obj, "name").text = classes[int(label)]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in zip(COORDS, (x1 + 1, y1 + 1, x2, y2), strict=True):
            ET.SubElement(bndbox, tag).text = number_text(value)
    tree = ET.ElementTree(annotation)
    ET.indent(tree)
    return tree
