"""Dataset format conversion: ``mediscope convert --from FMT --to FMT SRC DST``.

Each conversion is a function ``(src, dst, options) -> ConvertResult`` in the table
:data:`CONVERTERS`, keyed by ``(from, to)``; a new pair is one more entry.

Segmentation masks and COCO:

- ``masks → coco``: SRC is an MMSeg root (``img/`` + ``labels/``), a manifest CSV
  (``image,mask[,split]``) or a folder of masks with ``images`` set. One COCO JSON is
  written per split: ``DST/annotations_<split>.json`` (``DST/annotations.json`` for
  samples without a split); DST may name the JSON file itself when there is one split
  only. ``file_name`` is the image path relative to its split folder (the image folder,
  or the manifest's folder). Annotations carry the segmentation and its ``bbox``.
- ``coco → masks``: SRC is a COCO JSON; DST a folder receiving one class-index PNG per
  image, ``<file_name without suffix>.png``, and ``classes.txt``.

Detection boxes, between ``yolo``, ``voc`` and ``coco`` (every pair): SRC is read by the
format's reader (:mod:`~mediscope.data.formats.yolo`, ``.voc``,
``.coco_detection``; ``coco`` as a source of a detection target means its ``bbox``
boxes) and DST is a complete dataset of the target format, images included (copied, or
hard-linked with ``link``), splits kept. Coordinates survive any chain of conversions
to within 1e-6 pixels (the writers write exact numbers). ``classes`` are the detection
class names (no background); bad labels follow ``on_bad_label``.

Masks to boxes, ``masks → yolo`` and ``masks → voc``: one box per 8-connected region of
each class, as ``masks → coco`` makes one annotation per region. The masks' background
(class 0) is not a detection class: mask class ``k`` becomes detection class ``k - 1``
and the class names are those of the masks without the first. ``ignore_index`` pixels
make no box. (``masks → coco`` keeps writing segmentation + bbox, which the ``coco``
detection reader reads as boxes of the same classes.)

Outputs are complete or absent: everything is computed (or written to a staging folder)
before anything replaces DST, and existing outputs are kept unless ``overwrite``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Literal

from mediscope.data.formats import coco as coco_format
from mediscope.data.formats import coco_detection, voc, yolo
from mediscope.data.formats import masks as masks_format
from mediscope.data.formats.boxes import image_size, mask_boxes
from mediscope.data.formats.layout import group_by_split
from mediscope.data.samples import Sample, SampleSet
from mediscope.errors import ConfigError, DataError
from mediscope.files import refuse_overlap, staged_dir, write_text_atomic
from mediscope.registry import did_you_mean


@dataclass(frozen=True)
class ConvertOptions:
    """Options of the conversions; each conversion reads the ones it needs.

    Attributes:
        classes: Class names: for masks, background first (default: ``classes.txt`` of
            the source, or the COCO categories); for detection sources, no background
            (default: the source's own names).
        encoding: COCO segmentation written: ``rle`` (exact) or ``polygon`` (lossy).
        images: Image folder, when the masks source is a plain folder of masks.
        img_suffix: Image file ending (default: any image suffix).
        mask_suffix: Mask file ending, e.g. ``.png`` or ``_mask.png``.
        ignore_index: Mask value left out of COCO (it comes back as background).
        overwrite: Replace existing outputs.
        on_bad_label: Detection sources: ``error`` stops at a bad label line naming
            ``file:line``; ``skip`` drops it with one warning.
        link: Detection targets: hard-link the images instead of copying them.
    """

    classes: list[str] | None = None
    encoding: Literal["rle", "polygon"] = "rle"
    images: Path | None = None
    img_suffix: str | None = None
    mask_suffix: str = ".png"
    ignore_index: int | None = None
    overwrite: bool = False
    on_bad_label: Literal["error", "skip"] = "error"
    link: bool = False


@dataclass
class ConvertResult:
    """What a conversion wrote: the files or folders, and one summary line for each."""

    outputs: list[Path] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


Converter = Callable[[Path, Path, ConvertOptions], ConvertResult]


def convert(
    source: str, target: str, src: Path, dst: Path, options: ConvertOptions | None = None
) -> ConvertResult:
    """Converts the dataset ``src`` in format ``source`` to ``dst`` in format ``target``.

    Raises:
        ConfigError: for a pair not in :data:`CONVERTERS`, listing the supported ones, or
            a ``dst`` that is the source, inside it or above it (``overwrite`` or not).
        DataError: for bad input, naming the file; nothing is written then.

    Example:
        >>> convert("masks", "coco", Path("data/lesions"), Path("coco"))  # doctest: +SKIP
    """
    converter = CONVERTERS.get((source.lower(), target.lower()))
    if converter is None:
        raise ConfigError(
            f"no conversion from '{source}' to '{target}'",
            where="--from/--to",
            hint=_supported_hint(source, target),
        )
    options = options or ConvertOptions()
    refuse_overlap(dst, [src, options.images], option="DST")
    return converter(src, dst, options)


def supported() -> list[str]:
    """The supported conversions, as ``from -> to``."""
    return [f"{a} -> {b}" for a, b in CONVERTERS]


def _supported_hint(source: str, target: str) -> str:
    known = sorted({name for pair in CONVERTERS for name in pair})
    guesses = [
        f"'{guess}'"
        for name in (source, target)
        if name.lower() not in known and (guess := did_you_mean(name, known))
    ]
    prefix = f"did you mean {' / '.join(guesses)}? " if guesses else ""
    return f"{prefix}supported: {', '.join(supported())}"


# -- masks → COCO --------------------------------------------------------------------------


@dataclass
class _Group:
    """Samples written to one COCO file."""

    split: str | None
    samples: list[Sample]
    image_root: Path


def masks_to_coco_files(src: Path, dst: Path, options: ConvertOptions) -> ConvertResult:
    """``masks → coco``: one COCO JSON per split of a masks dataset (see the module doc).

    Raises:
        DataError: for an unreadable source, missing class names, DST a JSON file when
            there are several splits, or existing outputs without ``overwrite``.
    """
    groups, class_dirs = _mask_groups(src, options)
    refuse_overlap(dst, _sample_files(g.samples for g in groups), option="DST")
    classes = _classes(options, class_dirs)
    targets = _json_targets(dst, groups)
    existing = [t for t in targets if t.exists()]
    if existing and not options.overwrite:
        raise DataError(
            "file exists", where=existing[0], hint="choose another DST or pass --overwrite"
        )
    documents = [
        coco_format.masks_to_coco(
            g.samples,
            classes,
            encoding=options.encoding,
            ignore_index=options.ignore_index,
            image_root=g.image_root,
        )
        for g in groups
    ]
    result = ConvertResult()
    for target, document in zip(targets, documents, strict=True):
        coco_format.write_coco(target, document)
        result.outputs.append(target)
        result.lines.append(
            f"{target}: {len(document['images'])} images, "
            f"{len(document['annotations'])} annotations ({options.encoding})"
        )
    return result


def _mask_groups(src: Path, options: ConvertOptions) -> tuple[list[_Group], list[Path]]:
    """The samples of ``src`` by split, and the folders that may hold ``classes.txt``."""
    if src.is_file() and src.suffix.lower() == ".csv":
        samples = masks_format.read_manifest(src, root=options.images)
        base = options.images or src.parent
        return _by_split(samples, lambda _: base), [base, src.parent]
    if not src.is_dir():
        raise DataError(
            "not found", where=src, hint="SRC is an MMSeg root, a manifest CSV or a mask folder"
        )
    layout = masks_format.find_layout(src)
    if layout is not None:
        folders = masks_format.split_folders(layout)
        samples = masks_format.read_layout(
            src, img_suffix=options.img_suffix, mask_suffix=options.mask_suffix
        )
        split_dir: dict[str | None, Path] = {s: layout.images / d for d, s in folders.items()}
        return _by_split(samples, lambda s: split_dir.get(s, layout.images)), [src]
    if options.images is None:
        raise DataError(
            "no img/ and labels/ folders here",
            where=src,
            hint="give an MMSeg root, or the image folder of these masks with --images",
        )
    samples = masks_format.pair_folders(
        options.images, src, img_suffix=options.img_suffix, mask_suffix=options.mask_suffix
    )
    if not samples:
        raise DataError("no images found", where=options.images, hint=masks_format.SUFFIX_HINT)
    return [_Group(None, samples, options.images)], [src, src.parent]


def _by_split(samples: list[Sample], root_of: Callable[[str | None], Path]) -> list[_Group]:
    return [
        _Group(split, group, root_of(split)) for split, group in group_by_split(samples).items()
    ]


def _classes(options: ConvertOptions, folders: list[Path]) -> list[str]:
    if options.classes is not None:
        names = [c.strip() for c in options.classes if c.strip()]
        if len(names) < 2 or len(set(names)) != len(names):
            raise DataError(
                "give two or more distinct class names", where="--classes", hint="background first"
            )
        return names
    if not any((f / masks_format.CLASSES_FILE).is_file() for f in folders):
        raise DataError(
            "the class names are not given",
            where="--classes",
            hint=f"pass --classes background,... or write {folders[0] / masks_format.CLASSES_FILE}",
        )
    return masks_format.read_classes(*folders)


def _json_targets(dst: Path, groups: list[_Group]) -> list[Path]:
    if dst.suffix.lower() == ".json":
        if len(groups) > 1:
            splits = ", ".join(str(g.split) for g in groups)
            raise DataError(
                f"one file for {len(groups)} splits ({splits})",
                where=dst,
                hint="give a folder as DST: it receives annotations_<split>.json",
            )
        return [dst]
    if dst.exists() and not dst.is_dir():
        raise DataError("exists and is not a folder", where=dst, hint="choose another DST")
    return [
        dst / (f"annotations_{g.split}.json" if g.split else "annotations.json") for g in groups
    ]


# -- COCO → masks --------------------------------------------------------------------------


def coco_to_mask_files(src: Path, dst: Path, options: ConvertOptions) -> ConvertResult:
    """``coco → masks``: a folder of class-index PNGs and ``classes.txt`` (see the module doc).

    Raises:
        DataError: for an unreadable or malformed COCO file, file names that leave DST or
            collide, or a non-empty DST without ``overwrite``.
    """
    document = coco_format.read_coco(src)
    classes = coco_format.coco_classes(document, options.classes)
    masks = coco_format.coco_to_masks(document, classes=classes, where=str(src))
    names = _mask_names(list(masks), src)
    with staged_dir(dst, overwrite=options.overwrite) as tmp:
        for file_name, mask in masks.items():
            coco_format.write_mask_png(tmp / names[file_name], mask)
        write_text_atomic(tmp / masks_format.CLASSES_FILE, "\n".join(classes) + "\n")
    annotated = sum(1 for m in masks.values() if m.any())
    return ConvertResult(
        outputs=[dst],
        lines=[
            f"{dst}: {len(masks)} masks ({annotated} with objects), "
            f"classes {', '.join(f'{i} {c}' for i, c in enumerate(classes))}"
        ],
    )


def _mask_names(file_names: list[str], src: Path) -> dict[str, str]:
    """``file_name`` → relative mask path ``<folders>/<stem>.png``, checked to stay inside."""
    names: dict[str, str] = {}
    taken: dict[str, str] = {}
    for file_name in file_names:
        path = PurePosixPath(file_name.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or not path.stem:
            raise DataError(
                f"file_name '{file_name}' is not a relative path", where=src, hint="fix the file"
            )
        name = path.with_suffix(".png").as_posix()
        if name in taken:
            raise DataError(
                f"images '{taken[name]}' and '{file_name}' would both write {name}", where=src
            )
        taken[name] = file_name
        names[file_name] = name
    return names


# -- detection boxes -----------------------------------------------------------------------

BoxReader = Callable[..., SampleSet]
BoxWriter = Callable[..., Path]
BOX_READERS: dict[str, BoxReader] = {
    "yolo": yolo.read_yolo,
    "voc": voc.read_voc,
    "coco": coco_detection.read_coco_detection,
}
BOX_WRITERS: dict[str, BoxWriter] = {
    "yolo": yolo.write_yolo,
    "voc": voc.write_voc,
    "coco": coco_detection.write_coco_detection,
}


def convert_boxes(
    src: Path, dst: Path, options: ConvertOptions, *, source: str, target: str
) -> ConvertResult:
    """``source → target`` between the detection formats (see the module doc).

    Raises:
        DataError: for an unreadable source, bad labels (``on_bad_label: error``),
            boxes the target cannot hold, or a non-empty DST without ``overwrite``.
    """
    samples = BOX_READERS[source](
        src,
        classes=options.classes,
        task="detection",
        root=options.images,
        on_bad_label=options.on_bad_label,
    )
    return _write_boxes(samples, dst, options, target)


def masks_to_boxes(src: Path, dst: Path, options: ConvertOptions, *, target: str) -> ConvertResult:
    """``masks → yolo`` / ``masks → voc``: a box per connected region (see the module doc).

    Raises:
        DataError: for an unreadable source, missing class names, masks of another size
            than their image, or a non-empty DST without ``overwrite``.
    """
    from mediscope.data.masks import read_mask

    groups, class_dirs = _mask_groups(src, options)
    classes = _classes(options, class_dirs)
    samples: list[Sample] = []
    for group in groups:
        for sample in group.samples:
            assert sample.mask is not None
            mask = read_mask(
                sample.mask, num_classes=len(classes), ignore_index=options.ignore_index
            )
            width, height = image_size(sample.image)
            if mask.shape != (height, width):
                raise DataError(
                    f"mask is {mask.shape[1]} x {mask.shape[0]}, its image {width} x {height}",
                    where=sample.mask,
                    hint="masks must have the size of their images",
                )
            boxes, labels = mask_boxes(mask, len(classes), ignore_index=options.ignore_index)
            samples.append(Sample(sample.image, boxes=boxes, box_labels=labels, split=sample.split))
    base = src if src.is_dir() else src.parent
    return _write_boxes(SampleSet(classes[1:], samples, base), dst, options, target)


def _sample_files(groups: Iterable[Iterable[Sample]]) -> Iterator[str]:
    """The images and masks of samples: files a DST must not replace or hold."""
    for samples in groups:
        for sample in samples:
            yield sample.image
            if sample.mask is not None:
                yield sample.mask


def _write_boxes(
    samples: SampleSet, dst: Path, options: ConvertOptions, target: str
) -> ConvertResult:
    refuse_overlap(dst, _sample_files([samples.samples]), option="DST")
    BOX_WRITERS[target](samples, dst, overwrite=options.overwrite, link=options.link)
    counts = [0 if s.box_labels is None else len(s.box_labels) for s in samples.samples]
    splits: dict[str, int] = {}
    for sample in samples.samples:
        splits[sample.split or "no split"] = splits.get(sample.split or "no split", 0) + 1
    line = (
        f"{dst}: {len(samples)} images ({counts.count(0)} without objects), "
        f"{sum(counts)} boxes ({target}); "
        f"classes {', '.join(f'{i} {c}' for i, c in enumerate(samples.classes))}; "
        f"{', '.join(f'{k} {v}' for k, v in splits.items())}"
    )
    return ConvertResult(outputs=[dst], lines=[line])


def _box_converters() -> dict[tuple[str, str], Converter]:
    pairs: dict[tuple[str, str], Converter] = {}
    for source in BOX_READERS:
        for target in BOX_WRITERS:
            if source != target:
                pairs[source, target] = partial(convert_boxes, source=source, target=target)
    for target in ("yolo", "voc"):
        pairs["masks", target] = partial(masks_to_boxes, target=target)
    return pairs


#: ``(from, to)`` → conversion. ``coco`` is COCO segmentation with masks, COCO boxes with
#: yolo and voc.
CONVERTERS: dict[tuple[str, str], Converter] = {
    ("masks", "coco"): masks_to_coco_files,
    ("coco", "masks"): coco_to_mask_files,
    **_box_converters(),
}

__all__ = ["CONVERTERS", "ConvertOptions", "ConvertResult", "convert", "supported"]
