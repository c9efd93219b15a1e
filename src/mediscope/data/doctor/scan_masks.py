"""Scan of the ``masks`` format: MMSeg layout folders or a manifest CSV ``image,mask``.

Images without a mask and masks without an image are errors here (the reader refuses
them); the mask pixels themselves are checked later, with the images.
"""

from __future__ import annotations

import os
from pathlib import Path

from mediscope.data.doctor.findings import Finding
from mediscope.data.doctor.scan import Item, Scan, is_image_name, split_name, walk_files
from mediscope.data.doctor.scan_classification import csv_records
from mediscope.data.formats.masks import SUFFIX_HINT, find_layout, read_classes, split_folders
from mediscope.data.samples import Sample
from mediscope.errors import DataError


def scan_masks(
    path: Path,
    *,
    classes: list[str] | None,
    root: Path | None,
    img_suffix: str | None,
    mask_suffix: str,
) -> Scan:
    """Pairs images and masks, recording orphans both ways and bad manifest rows.

    Raises:
        DataError: when ``path`` is neither a layout folder nor a manifest CSV, the
            manifest lacks its columns, or the class names are not given (data.classes
            or ``classes.txt``).
    """
    if path.is_file() and path.suffix.lower() == ".csv":
        base = root if root is not None else path.parent
        names = list(classes) if classes is not None else read_classes(base, path.parent)
        scan = Scan(classes=names, root=base)
        _scan_manifest(path, base, scan)
        return scan
    if not path.is_dir():
        raise DataError(
            "dataset not found",
            where=path,
            hint="give an img/ + labels/ folder or a manifest CSV (data.path)",
        )
    layout = find_layout(path)
    if layout is None:
        raise DataError(
            "no img/ and labels/ folders",
            where=path,
            hint="use the layout img/{train,val,test} + labels/{train,val,test}, or a manifest CSV",
        )
    names = list(classes) if classes is not None else read_classes(path)
    scan = Scan(classes=names, root=path)
    folders = split_folders(layout)
    parts: list[tuple[Path, Path, str | None]] = [
        (layout.images / d, layout.masks / d, s) for d, s in folders.items()
    ]
    for image_dir, mask_dir, split in parts or [(layout.images, layout.masks, None)]:
        _pair(image_dir, mask_dir, img_suffix, mask_suffix, split, scan)
    return scan


def _pair(
    image_dir: Path,
    mask_dir: Path,
    img_suffix: str | None,
    mask_suffix: str,
    split: str | None,
    scan: Scan,
) -> None:
    images = _by_key(image_dir, img_suffix, "images", split, scan)
    masks = _by_key(mask_dir, mask_suffix, "masks", split, scan) if mask_dir.is_dir() else {}
    for key in sorted(images):
        if key in masks:
            sample = Sample(image=str(images[key]), mask=str(masks[key]), split=split)
            scan.items.append(Item(sample, label_file=str(masks[key])))
        else:
            scan.findings.append(
                Finding(
                    "image_without_label",
                    "error",
                    f"image without a mask: expected {mask_dir / key}{mask_suffix}",
                    file=str(images[key]),
                    split=split,
                    hint=f"add the mask, or move the image out of the dataset; {SUFFIX_HINT}",
                )
            )
    for key in sorted(set(masks) - set(images)):
        expected = f"{image_dir / key}{img_suffix or '.<image suffix>'}"
        scan.findings.append(
            Finding(
                "label_without_image",
                "error",
                f"mask without an image: expected {expected}",
                file=str(masks[key]),
                split=split,
                hint=f"add the image, or remove the mask; {SUFFIX_HINT}",
            )
        )


def _by_key(
    folder: Path, suffix: str | None, what: str, split: str | None, scan: Scan
) -> dict[str, Path]:
    """Files of ``folder`` by their relative path without ``suffix`` (as the reader)."""
    files: dict[str, Path] = {}
    for path in walk_files(folder):
        name = path.name
        if suffix is None and not is_image_name(name):
            continue
        if suffix is not None and not (name.endswith(suffix) and len(name) > len(suffix)):
            continue
        relative = path.relative_to(folder).as_posix()
        key = relative[: -len(suffix)] if suffix else relative[: -len(path.suffix)]
        if key in files:
            scan.findings.append(
                Finding(
                    "bad_label",
                    "error",
                    f"two {what} of the same stem: {files[key].name} and {name}",
                    file=str(path),
                    split=split,
                    other_file=str(files[key]),
                    hint=SUFFIX_HINT,
                )
            )
            continue
        files[key] = path
    return files


def _scan_manifest(path: Path, base: Path, scan: Scan) -> None:
    """Rows ``image,mask[,split][,patient_id]``; paths relative to ``base``."""
    header, records = csv_records(path)
    columns = [h.strip().lower() for h in header[1]]
    if "image" not in columns or "mask" not in columns:
        raise DataError(
            f"no image and mask columns (found: {', '.join(columns)})",
            where=f"{path}:{header[0]}",
            hint="columns: image,mask[,split][,patient_id]",
        )
    col = {name: i for i, name in enumerate(columns)}
    seen: dict[str, int] = {}
    for line, record in records:
        problem: tuple[str, str, str | None] | None = None
        cells = {name: record[i].strip() for name, i in col.items() if i < len(record)}
        image = os.path.normpath(base / cells["image"]) if cells.get("image") else ""
        mask = os.path.normpath(base / cells["mask"]) if cells.get("mask") else ""
        split = split_name(cells.get("split"))
        relative = f"paths are relative to {base}"
        if len(record) != len(columns):
            problem = ("bad_label", f"{len(record)} fields, the header has {len(columns)}", None)
        elif not image or not mask:
            empty = "image" if not image else "mask"
            problem = ("bad_label", f"empty '{empty}'", "every row needs an image and a mask")
        elif cells.get("split") and split is None:
            problem = ("bad_label", f"unknown split '{cells['split']}'", "train, val or test")
        elif image in seen:
            problem = ("bad_label", f"image listed twice (first on line {seen[image]})", None)
        elif not os.path.isfile(image):
            problem = ("label_without_image", f"image file not found: {image}", relative)
        elif not os.path.isfile(mask):
            problem = ("image_without_label", f"mask file not found: {mask}", relative)
        if problem is not None:
            kind, message, hint = problem
            scan.findings.append(
                Finding(kind, "error", message, file=str(path), line=line, split=split, hint=hint)
            )
            continue
        seen[image] = line
        group = cells.get("patient_id") or cells.get("group") or None
        sample = Sample(image=image, mask=mask, split=split, group=group)
        scan.items.append(Item(sample, label_file=mask))
