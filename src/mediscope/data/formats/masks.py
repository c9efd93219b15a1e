"""The ``masks`` format: images with per-pixel class masks.

Two layouts:

- a folder in the MMSegmentation layout: ``img/{train,val,test}/<stem><img_suffix>`` and
  ``labels/{train,val,test}/<stem><mask_suffix>`` (``images/`` + ``masks/`` or
  ``annotations/`` are accepted too); the folder names are the split;
- a manifest CSV with ``image,mask`` columns (optional ``split`` and ``patient_id``),
  paths relative to ``data.root`` or else to the CSV's folder (PH2-style case folders).

Class names come from ``data.classes``, else a ``classes.txt`` beside the data.
``data.exclude`` names samples to drop, one image name, stem or path per line.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from mediscope.data.images import IMAGE_SUFFIXES
from mediscope.data.samples import Sample, SampleSet
from mediscope.errors import DataError

log = logging.getLogger(__name__)

IMAGE_DIRS = ("img", "images", "imgs")
MASK_DIRS = ("labels", "masks", "annotations", "ann_dir", "gt")
SPLITS = ("train", "val", "test")
CLASSES_FILE = "classes.txt"


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
        exclude: A file of samples to drop (image name, stem or relative path per line).

    Raises:
        DataError: naming the file (and line) for a missing layout, orphan images or
            masks, bad manifest lines, unknown classes or exclusions that match nothing.
    """
    if task != "segmentation":
        raise DataError(f"the masks format holds no {task} targets", where="data.format")
    if path.is_file() and path.suffix.lower() == ".csv":
        samples, base = _read_manifest(path, root), path.parent
    elif path.is_dir():
        samples, base = _read_layout(path, img_suffix, mask_suffix), path
    else:
        raise DataError(
            "dataset not found", where=path, hint="give an img/ + labels/ folder or a manifest CSV"
        )
    names = classes if classes is not None else _classes_file(base)
    if exclude is not None:
        samples = _exclude(samples, exclude, base)
    return SampleSet(classes=list(names), samples=samples, root=base)


def _classes_file(base: Path) -> list[str]:
    file = base / CLASSES_FILE
    if not file.is_file():
        raise DataError(
            "the class names are not given",
            where="data.classes",
            hint=f"set data.classes (background first) or write {file}",
        )
    names = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(names) < 2:
        raise DataError("fewer than two class names", where=file, hint="one name per line")
    return names


def _find_dir(base: Path, choices: tuple[str, ...]) -> Path | None:
    return next((base / d for d in choices if (base / d).is_dir()), None)


def _is_image(path: Path, suffix: str | None) -> bool:
    if path.name.startswith(".") or not path.is_file():
        return False
    if suffix is not None:
        return path.name.endswith(suffix)
    return path.suffix.lower() in IMAGE_SUFFIXES


def _stem(path: Path, suffix: str | None) -> str:
    if suffix is not None and path.name.endswith(suffix):
        return path.name[: -len(suffix)]
    return path.stem


def _read_layout(base: Path, img_suffix: str | None, mask_suffix: str) -> list[Sample]:
    images_dir, masks_dir = _find_dir(base, IMAGE_DIRS), _find_dir(base, MASK_DIRS)
    if images_dir is None or masks_dir is None:
        raise DataError(
            "no img/ and labels/ folders",
            where=base,
            hint="use the layout img/{train,val,test} + labels/{train,val,test}, or a manifest CSV",
        )
    split_dirs = [s for s in SPLITS if (images_dir / s).is_dir()]
    pairs: list[tuple[Path, Path, str | None]] = [
        (images_dir / s, masks_dir / s, s) for s in split_dirs
    ] or [(images_dir, masks_dir, None)]
    samples: list[Sample] = []
    for image_dir, mask_dir, split in pairs:
        images = {_stem(p, img_suffix): p for p in sorted(image_dir.iterdir()) if _is_image(p, img_suffix)}
        masks = {}
        if mask_dir.is_dir():
            masks = {
                p.name[: -len(mask_suffix)]: p
                for p in sorted(mask_dir.iterdir())
                if p.is_file() and p.name.endswith(mask_suffix) and not p.name.startswith(".")
            }
        _orphans(sorted(set(images) - set(masks)), images, "image without a mask", mask_suffix)
        _orphans(sorted(set(masks) - set(images)), masks, "mask without an image", img_suffix)
        samples.extend(
            Sample(image=str(images[s]), mask=str(masks[s]), split=split) for s in sorted(images)
        )
    if not samples:
        raise DataError("no images found", where=images_dir, hint="check data.img_suffix")
    return samples


def _orphans(stems: list[str], files: dict[str, Path], what: str, suffix: str | None) -> None:
    if stems:
        more = f" (and {len(stems) - 1} more)" if len(stems) > 1 else ""
        raise DataError(
            f"{what}{more}",
            where=files[stems[0]],
            hint=f"pairs share a stem; check data.img_suffix and data.mask_suffix ({suffix})",
        )


def _read_manifest(path: Path, root: Path | None) -> list[Sample]:
    base = root or path.parent
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the manifest ({exc})", where=path) from None
    if not rows:
        raise DataError("empty manifest", where=path, hint="columns: image,mask[,split]")
    header = [h.strip().lower() for h in rows[0]]
    if "image" not in header or "mask" not in header:
        raise DataError(
            f"no image and mask columns (found: {', '.join(header)})",
            where=f"{path}:1",
            hint="columns: image,mask[,split][,patient_id]",
        )
    col = {name: i for i, name in enumerate(header)}
    samples = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(
                f"{len(row)} fields, the header has {len(header)}", where=f"{path}:{number}"
            )
        image, mask = (base / row[col["image"]].strip()), (base / row[col["mask"]].strip())
        for kind, file in (("image", image), ("mask", mask)):
            if not file.is_file():
                raise DataError(
                    f"{kind} file not found: {file}",
                    where=f"{path}:{number}",
                    hint="paths are relative to data.root or the manifest's folder",
                )
        split = row[col["split"]].strip() or None if "split" in col else None
        group = row[col["patient_id"]].strip() or None if "patient_id" in col else None
        samples.append(Sample(image=str(image), mask=str(mask), split=split, group=group))
    if not samples:
        raise DataError("the manifest lists no samples", where=path)
    return samples


def _exclude(samples: list[Sample], exclude: Path, base: Path) -> list[Sample]:
    if not exclude.is_file():
        raise DataError("exclude file not found", where=exclude, hint="check data.exclude")
    entries = []
    for number, line in enumerate(exclude.read_text(encoding="utf-8").splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if entry:
            entries.append((number, entry))
    keys: dict[str, set[int]] = {}
    for i, sample in enumerate(samples):
        image = Path(sample.image)
        names = {image.name, image.stem, str(image)}
        try:
            names.add(image.relative_to(base).as_posix())
        except ValueError:
            pass
        for name in names:
            keys.setdefault(name, set()).add(i)
    dropped: set[int] = set()
    for number, entry in entries:
        found = keys.get(entry)
        if not found:
            raise DataError(
                f"'{entry}' matches no sample",
                where=f"{exclude}:{number}",
                hint="give an image name, stem or path relative to the dataset",
            )
        dropped |= found
    log.info("data.exclude: %d of %d samples dropped", len(dropped), len(samples))
    return [s for i, s in enumerate(samples) if i not in dropped]
