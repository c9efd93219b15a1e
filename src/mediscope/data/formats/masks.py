"""The ``masks`` format: images with per-pixel class masks.

Two layouts:

- a folder in the MMSegmentation layout: ``img/{train,val,test}/<stem><img_suffix>`` and
  ``labels/{train,val,test}/<stem><mask_suffix>`` (``images/`` + ``masks/``,
  ``annotations/`` or ``img_dir/`` + ``ann_dir/`` are accepted too). ``train`` is
  required, ``val`` and ``test`` are optional, and the folder names are the samples'
  split. Sub-folders inside a split are searched too; image and mask pair by their path
  without the suffix. Without any split folder, ``img/`` and ``labels/`` themselves hold
  the pairs and the split is made later (``data.split``).
- a manifest CSV with ``image,mask`` columns (optional ``split`` and ``patient_id``),
  paths relative to ``data.root`` or else to the CSV's folder (PH2-style case folders).

Class names come from ``data.classes``, else from ``classes.txt`` in the dataset root
(one name per line, index order, background first). They are never guessed by scanning
the masks: a mask that holds no pixel of the last class would shift every name.

``exclude`` names samples to drop, one image stem, file name, path relative to the
dataset root or absolute path per line; ``#`` starts a comment. An entry that matches no
sample is an error, so that a typo cannot keep a bad mask in training. The number of
dropped samples is logged as a warning (shown on the terminal) and returned by
:func:`exclude_samples`. ``data.exclude`` in a config applies the same file to every
format (:func:`~mediscope.data.datamodule.read_samples`).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from mediscope.data.images import IMAGE_SUFFIXES
from mediscope.data.samples import Sample, SampleSet
from mediscope.data.splits import TEST_NAMES, TRAIN_NAMES, VAL_NAMES
from mediscope.errors import DataError
from mediscope.files import LIST_LIMIT, read_text_file
from mediscope.registry import unknown_name_hint

log = logging.getLogger(__name__)

IMAGE_DIRS = ("img", "images", "imgs", "img_dir")
MASK_DIRS = ("labels", "masks", "annotations", "ann_dir", "gt")
CLASSES_FILE = "classes.txt"
SUFFIX_HINT = "check suffixes: data.img_suffix / data.mask_suffix"
MANIFEST_COLUMNS = "image,mask[,split][,patient_id]"
# Split folder and column names, normalised to train / val / test.
SPLIT_NAMES = {
    **dict.fromkeys(sorted(TRAIN_NAMES), "train"),
    **dict.fromkeys(sorted(VAL_NAMES), "val"),
    **dict.fromkeys(sorted(TEST_NAMES), "test"),
}


@dataclass(frozen=True)
class Layout:
    """The image and mask folders of an MMSeg-layout dataset root."""

    images: Path
    masks: Path


def read_masks(
    path: Path,
    *,
    classes: list[str] | None = None,
    task: str = "segmentation",
    root: Path | None = None,
    img_suffix: str | None = None,
    mask_suffix: str = ".png",
    exclude: Path | None = None,
) -> SampleSet:
    """Reads an MMSeg-layout folder or a manifest CSV of image/mask pairs.

    Args:
        path: The dataset folder or the manifest CSV.
        classes: Class names in index order (background first); default ``classes.txt``.
        task: Must be ``segmentation``.
        root: Folder the manifest's relative paths start from (default: the CSV's).
        img_suffix: Image file ending (e.g. ``.jpg``); default any image suffix.
        mask_suffix: Mask file ending, e.g. ``.png`` or ``_mask.png``.
        exclude: A file of samples to drop (image stem, name or relative path per line).

    Returns:
        One sample per image with ``mask`` set, ``split`` from the split folder or column
        and ``group`` from the ``patient_id`` column; the root is the dataset folder (for
        a manifest: ``root``, else the CSV's folder).

    Raises:
        DataError: naming the file (and line) for a missing layout, orphan images or
            masks, bad manifest lines, missing class names or exclusions that match
            nothing.

    Example:
        >>> samples = read_masks(Path("data/lesions"), mask_suffix="_mask.png")  # doctest: +SKIP
        >>> samples.classes, samples.samples[0].split  # doctest: +SKIP
        (['background', 'lesion'], 'train')
    """
    if task != "segmentation":
        raise DataError(f"the masks format holds no {task} targets", where="data.format")
    if path.is_file() and path.suffix.lower() == ".csv":
        base = root if root is not None else path.parent
        samples = read_manifest(path, root=root)
        names = classes if classes is not None else read_classes(base, path.parent)
    elif path.is_dir():
        base = path
        samples = read_layout(path, img_suffix=img_suffix, mask_suffix=mask_suffix)
        names = classes if classes is not None else read_classes(path)
    else:
        raise DataError(
            "dataset not found",
            where=path,
            hint="give an img/ + labels/ folder or a manifest CSV (data.path)",
        )
    if exclude is not None:
        samples, dropped = exclude_samples(samples, exclude, base=base)
        log.warning(
            "%s: %d of %d samples excluded", exclude, len(dropped), len(dropped) + len(samples)
        )
    return SampleSet(classes=list(names), samples=samples, root=base)


# -- class names ---------------------------------------------------------------------------


def read_classes(*folders: Path) -> list[str]:
    """Class names from the first ``classes.txt`` found in ``folders``.

    Raises:
        DataError: when there is none (asking for ``data.classes``), or it holds fewer
            than two names or a name twice.
    """
    file = next((f / CLASSES_FILE for f in folders if (f / CLASSES_FILE).exists()), None)
    if file is None:
        raise DataError(
            "the class names are not given",
            where="data.classes",
            hint=f"set data.classes (background first) or write {folders[0] / CLASSES_FILE}, "
            "one name per line",
        )
    try:
        lines = read_text_file(file, limit=LIST_LIMIT, what="class names").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the class names ({exc})", where=file) from None
    names = [line.strip() for line in lines if line.strip()]
    if len(names) < 2:
        raise DataError(
            f"fewer than two class names ({', '.join(names) or 'none'})",
            where=file,
            hint="masks need at least two classes, the background first, one name per "
            "line: background, then the objects",
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"class names repeat: {', '.join(twice)}", where=file)
    return names


# -- MMSeg layout --------------------------------------------------------------------------


def find_layout(base: Path) -> Layout | None:
    """The image and mask folders of ``base`` (``img/`` + ``labels/``, ...), or None."""
    images = next((base / d for d in IMAGE_DIRS if (base / d).is_dir()), None)
    masks = next((base / d for d in MASK_DIRS if (base / d).is_dir()), None)
    return Layout(images, masks) if images is not None and masks is not None else None


def split_folders(layout: Layout) -> dict[str, str]:
    """Split folder name → split name (train / val / test) of a layout's image folder.

    Raises:
        DataError: when split folders exist but ``train`` is not among them.
    """
    dirs = [p.name for p in layout.images.iterdir() if p.is_dir()]
    named = [d for d in dirs if d.lower() in SPLIT_NAMES]
    order = ("train", "val", "test")
    found = {
        d: SPLIT_NAMES[d.lower()]
        for d in sorted(named, key=lambda d: (order.index(SPLIT_NAMES[d.lower()]), d))
    }
    if found and "train" not in found.values():
        raise DataError(
            f"no train folder (found: {', '.join(found)})",
            where=layout.images,
            hint="the layout is img/{train,val,test} + labels/{train,val,test}; train is required",
        )
    return found


def read_layout(base: Path, *, img_suffix: str | None, mask_suffix: str) -> list[Sample]:
    """Samples of an MMSeg-layout folder, one per image, split from the folder name.

    Raises:
        DataError: for a missing layout, no train folder, no image, or orphans.
    """
    layout = find_layout(base)
    if layout is None:
        raise DataError(
            "no img/ and labels/ folders",
            where=base,
            hint="use the layout img/{train,val,test} + labels/{train,val,test}, or a manifest CSV",
        )
    folders = split_folders(layout)
    parts: list[tuple[Path, Path, str | None]] = [
        (layout.images / d, layout.masks / d, s) for d, s in folders.items()
    ]
    samples: list[Sample] = []
    for image_dir, mask_dir, split in parts or [(layout.images, layout.masks, None)]:
        samples += pair_folders(
            image_dir, mask_dir, img_suffix=img_suffix, mask_suffix=mask_suffix, split=split
        )
    if not samples:
        raise DataError("no images found", where=layout.images, hint=SUFFIX_HINT)
    return samples


def pair_folders(
    image_dir: Path,
    mask_dir: Path,
    *,
    img_suffix: str | None = None,
    mask_suffix: str = ".png",
    split: str | None = None,
) -> list[Sample]:
    """Pairs the images of ``image_dir`` with the masks of ``mask_dir`` (sub-folders too).

    An image ``a/x.jpg`` pairs with the mask ``a/x<mask_suffix>``.

    Raises:
        DataError: naming the first image without a mask or mask without an image, with
            the number of the others; or two images of the same stem.
    """
    images = _files_by_key(image_dir, img_suffix, what="images")
    masks = _files_by_key(mask_dir, mask_suffix, what="masks") if mask_dir.is_dir() else {}
    no_mask = sorted(set(images) - set(masks))
    if no_mask:
        expected = f"{mask_dir / no_mask[0]}{mask_suffix}"
        _orphans("image without a mask", "images without masks", no_mask, images, expected)
    no_image = sorted(set(masks) - set(images))
    if no_image:
        expected = f"{image_dir / no_image[0]}{img_suffix or '.<image suffix>'}"
        _orphans("mask without an image", "masks without images", no_image, masks, expected)
    return [Sample(image=str(images[k]), mask=str(masks[k]), split=split) for k in sorted(images)]


def _orphans(
    one: str, many: str, keys: list[str], files: dict[str, Path], expected: str
) -> NoReturn:
    more = f" ({len(keys) - 1} more {many})" if len(keys) > 1 else ""
    raise DataError(f"{one}{more}: expected {expected}", where=files[keys[0]], hint=SUFFIX_HINT)


def _files_by_key(folder: Path, suffix: str | None, *, what: str) -> dict[str, Path]:
    """Files of ``folder`` (recursively) by their relative path without ``suffix``."""
    files: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not _has_suffix(name, suffix):
                continue
            path = Path(dirpath) / name
            relative = path.relative_to(folder).as_posix()
            key = relative[: -len(suffix)] if suffix else relative[: -len(path.suffix)]
            if key in files:
                raise DataError(
                    f"two {what} of the same stem: {files[key].name} and {name}",
                    where=path,
                    hint=SUFFIX_HINT,
                )
            files[key] = path
    return files


def _has_suffix(name: str, suffix: str | None) -> bool:
    if suffix is None:
        return Path(name).suffix.lower() in IMAGE_SUFFIXES
    return name.endswith(suffix) and len(name) > len(suffix)


# -- manifest CSV --------------------------------------------------------------------------


def read_manifest(path: Path, *, root: Path | None = None) -> list[Sample]:
    """Samples of a manifest CSV ``image,mask[,split][,patient_id]``.

    Paths are relative to ``root`` when given, else to the CSV's folder; absolute paths
    are kept.

    Raises:
        DataError: naming ``file:line`` for a missing column, a short or empty row, an
            unknown split, an image listed twice or a missing file.
    """
    base = root if root is not None else path.parent
    try:
        # utf-8-sig: spreadsheet programs start UTF-8 CSV files with a byte-order mark.
        text = read_text_file(path, limit=LIST_LIMIT, what="manifest")
        reader = csv.reader(io.StringIO(text, newline=""))
        rows = [(reader.line_num, row) for row in reader]  # line_num: quoted newlines
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read the manifest ({exc})", where=path) from None
    rows = [(n, row) for n, row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise DataError("empty manifest", where=path, hint=f"columns: {MANIFEST_COLUMNS}")
    header = [h.strip().lower() for h in rows[0][1]]
    if "image" not in header or "mask" not in header:
        found = ", ".join(" ".join(h.split()) for h in header)  # cells may hold newlines
        raise DataError(
            f"no image and mask columns (found: {found})",
            where=f"{path}:{rows[0][0]}",
            hint=f"columns: {MANIFEST_COLUMNS}",
        )
    col = {name: i for i, name in enumerate(header)}
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for number, row in rows[1:]:
        where = f"{path}:{number}"
        if len(row) != len(header):
            raise DataError(f"{len(row)} fields, the header has {len(header)}", where=where)
        cells = {name: row[i].strip() for name, i in col.items()}
        image = _manifest_file(cells, "image", base, where)
        mask = _manifest_file(cells, "mask", base, where)
        if image in seen:
            raise DataError(
                f"image listed twice (first on line {seen[image]})",
                where=where,
                hint="list each once",
            )
        seen[image] = number
        split = _split_name(cells.get("split", ""), where)
        group = cells.get("patient_id") or cells.get("group") or None
        samples.append(Sample(image=image, mask=mask, split=split, group=group))
    if not samples:
        raise DataError("the manifest lists no samples", where=path)
    return samples


def _manifest_file(cells: dict[str, str], column: str, base: Path, where: str) -> str:
    if not cells[column]:
        raise DataError(
            f"empty '{column}'", where=where, hint="every row needs an image and a mask"
        )
    file = os.path.normpath(base / cells[column])  # an absolute path replaces base
    if not os.path.isfile(file):
        raise DataError(
            f"{column} file not found: {file}",
            where=where,
            hint="paths are relative to data.root, or else to the manifest's folder",
        )
    return file


def _split_name(value: str, where: str) -> str | None:
    if not value:
        return None
    name = SPLIT_NAMES.get(value.lower())
    if name is None:
        raise DataError(
            f"unknown split '{value}'",
            where=where,
            hint=unknown_name_hint(value, list(SPLIT_NAMES)),
        )
    return name


# -- exclude lists -------------------------------------------------------------------------


def read_exclude(path: Path) -> list[tuple[int, str]]:
    """``(line number, entry)`` of an exclude file; ``#`` comments and blank lines skipped.

    Raises:
        DataError: when the file is missing or not UTF-8 text.
    """
    try:
        text = read_text_file(
            path, limit=LIST_LIMIT, what="exclude file", hint="check data.exclude"
        )
        lines = text.splitlines()
    except FileNotFoundError:
        raise DataError("exclude file not found", where=path, hint="check data.exclude") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the exclude file ({exc})", where=path) from None
    entries = [(n, line.split("#", 1)[0].strip()) for n, line in enumerate(lines, start=1)]
    return [(n, entry) for n, entry in entries if entry]


def exclude_samples(
    samples: list[Sample], exclude: Path, *, base: Path
) -> tuple[list[Sample], list[Sample]]:
    """Drops the samples an exclude file names; returns ``(kept, dropped)``.

    An entry matches a sample as :func:`match_exclude` says.

    Raises:
        DataError: naming ``file:line`` of the first entry that matches no sample.
    """
    dropped, unmatched = match_exclude(samples, exclude, base=base)
    if unmatched:
        number, entry = unmatched[0]
        raise DataError(
            f"'{entry}' matches no sample",
            where=f"{exclude}:{number}",
            hint="give an image stem, file name or path relative to the dataset root",
        )
    kept = [s for i, s in enumerate(samples) if i not in dropped]
    return kept, [samples[i] for i in sorted(dropped)]


def match_exclude(
    samples: Sequence[Sample], exclude: Path, *, base: Path
) -> tuple[set[int], list[tuple[int, str]]]:
    """The indices of the samples an exclude file names, and its entries that match none.

    An entry matches a sample by image stem, file name, path relative to ``base`` (with
    or without the suffix), path as written in the sample, or absolute path.

    Returns:
        ``(indices of the samples to drop, [(line number, entry)] matching no sample)``.

    Raises:
        DataError: when the file is missing or not UTF-8 text.
    """
    keys: dict[str, set[int]] = {}
    for i, sample in enumerate(samples):
        for key in _sample_keys(Path(sample.image), base):
            keys.setdefault(key, set()).add(i)
    dropped: set[int] = set()
    unmatched: list[tuple[int, str]] = []
    for number, entry in read_exclude(exclude):
        found = keys.get(_entry_key(entry))
        if found:
            dropped |= found
        else:
            unmatched.append((number, entry))
    return dropped, unmatched


def _entry_key(entry: str) -> str:
    key = entry.replace("\\", "/").removeprefix("./")
    return Path(os.path.abspath(key)).as_posix() if os.path.isabs(key) else key


def _sample_keys(image: Path, base: Path) -> set[str]:
    keys = {image.name, image.stem, image.as_posix(), Path(os.path.abspath(image)).as_posix()}
    try:
        relative = image.relative_to(base).as_posix()
    except ValueError:
        return keys
    return keys | {relative, relative[: -len(image.suffix)] if image.suffix else relative}
