"""Scans of the classification formats: class folders (images, DICOM), CSV, npz."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mediscope.data.doctor.findings import Finding
from mediscope.data.doctor.scan import Item, Scan, absolute, split_name, walk_files
from mediscope.data.formats.csv import (
    LABEL_COLUMNS,
    PATH_COLUMNS,
    SPLIT_COLUMN,
    group_column,
)
from mediscope.data.formats.npz import read_npz
from mediscope.data.images import is_dicom_file, is_image_file
from mediscope.data.samples import Sample
from mediscope.errors import DataError
from mediscope.registry import unknown_name_hint

_INTEGER = re.compile(r"^-?\d+$")
#: Files beside the images that are not data (class lists, notes).
NOT_DATA = frozenset({"classes.txt", "readme.txt", "readme.md", "license", "license.txt"})


# -- class folders -------------------------------------------------------------------------


def scan_class_folders(path: Path, *, classes: list[str] | None, dicom: bool = False) -> Scan:
    """``ROOT/<class>/<file>``, or ``ROOT/{train,val,test}/<class>/<file>`` (split folders).

    Images directly in a split or root folder have no class (``image_without_label``);
    other files in class folders are not read (``skipped_file``).

    Raises:
        DataError: when ``path`` is not a folder or holds no class folder.
    """
    accept: Callable[[Path], bool] = is_dicom_file if dicom else is_image_file
    if not path.is_dir():
        raise DataError("dataset folder not found", where=path, hint="check data.path")
    parts = _split_parts(path)
    folders = {p.name for part, _ in parts for p in _subdirs(part)}
    if not folders:
        raise DataError(
            "no class folders", where=path, hint="put the files in ROOT/<class name>/ folders"
        )
    names = list(classes) if classes is not None else sorted(folders)
    index = {name: i for i, name in enumerate(names)}
    scan = Scan(classes=names, root=path)
    kind = "DICOM file" if dicom else "image"
    for part, split in parts:
        for file in sorted(part.iterdir()):
            if file.is_file() and accept(file):
                scan.findings.append(
                    Finding(
                        "image_without_label",
                        "warning",
                        f"{kind} outside the class folders: it has no class",
                        file=str(file),
                        split=split,
                        hint="move it into its class folder, or remove it",
                    )
                )
        for folder in _subdirs(part):
            if folder.name not in index:
                scan.findings.append(
                    Finding(
                        "bad_label",
                        "error",
                        f"folder '{folder.name}' is not one of the classes",
                        file=str(folder),
                        split=split,
                        hint=unknown_name_hint(folder.name, names),
                    )
                )
                continue
            for file in walk_files(folder):
                if accept(file):
                    sample = Sample(image=str(file), label=index[folder.name], split=split)
                    scan.items.append(Item(sample))
                elif file.name.lower() not in NOT_DATA:
                    scan.findings.append(
                        Finding(
                            "skipped_file",
                            "info",
                            f"not {'a DICOM file' if dicom else 'an image'} by its suffix: "
                            "not read",
                            file=str(file),
                            split=split,
                        )
                    )
    return scan


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_parts(path: Path) -> list[tuple[Path, str | None]]:
    """Split folders holding class folders (``train/``, ``test/`` ...), else the root."""
    dirs = _subdirs(path)
    named = [(d, split_name(d.name)) for d in dirs]
    if dirs and all(s is not None and _subdirs(d) for d, s in named):
        order = {"train": 0, "val": 1, "test": 2}
        return sorted(named, key=lambda pair: (order.get(pair[1] or "", 3), pair[0].name))
    return [(path, None)]


# -- CSV -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    line: int
    path: str
    label: str
    group: str | None
    split: str | None


def scan_csv(path: Path, *, classes: list[str] | None, root: Path | None) -> Scan:
    """A manifest ``path,label[,patient_id][,split]``, every bad row reported.

    Raises:
        DataError: when the file is missing, not UTF-8 CSV, or lacks a path or label
            column (nothing can be read then).
    """
    header, records = csv_records(path)
    scan = Scan(classes=[], root=root if root is not None else path.parent)
    columns = [c.strip() for c in header[1]]
    path_at = _column(columns, PATH_COLUMNS, f"{path}:{header[0]}")
    label_at = _column(columns, LABEL_COLUMNS, f"{path}:{header[0]}")
    group_at = group_column(columns)
    split_at = columns.index(SPLIT_COLUMN) if SPLIT_COLUMN in columns else None
    rows: list[_Row] = []
    for line, record in records:
        cells = [c.strip() for c in record]
        if path_at < len(cells) and cells[path_at]:
            # named, even by a bad row (reported as such): not an unlisted image
            scan.listed.add(absolute(scan.root / cells[path_at]))

        def bad(message: str, hint: str | None = None, line: int = line) -> None:
            scan.findings.append(
                Finding("bad_label", "error", message, file=str(path), line=line, hint=hint)
            )

        if len(cells) != len(columns):
            bad(f"{len(cells)} fields, the header has {len(columns)}")
            continue
        if not cells[path_at] or not cells[label_at]:
            bad(f"empty '{columns[path_at if not cells[path_at] else label_at]}'")
            continue
        split = None
        if split_at is not None and cells[split_at]:
            split = split_name(cells[split_at])
            if split is None:
                bad(f"unknown split '{cells[split_at]}'", "train, val (valid) or test")
                continue
        group = (cells[group_at] or None) if group_at is not None else None
        rows.append(_Row(line, cells[path_at], cells[label_at], group, split))
    scan.classes, index = _class_index(rows, classes)
    first: dict[str, int] = {}
    for row in rows:
        label = index.get(row.label)
        image = os.path.normpath(scan.root / row.path)
        problem: tuple[str, str, str] | None = None
        if label is None:
            hint = unknown_name_hint(row.label, scan.classes)
            problem = ("bad_label", f"unknown label '{row.label}'", hint)
        elif image in first:
            message = f"image '{row.path}' listed twice (first on line {first[image]})"
            problem = ("bad_label", message, "list each image once")
        elif not os.path.isfile(image):
            hint = f"paths are relative to {scan.root}"
            problem = ("label_without_image", f"image not found: {image}", hint)
        if problem is not None:
            kind, message, hint = problem
            scan.findings.append(
                Finding(
                    kind,
                    "error",
                    message,
                    file=str(path),
                    line=row.line,
                    split=row.split,
                    hint=hint,
                )
            )
            continue
        first[image] = row.line
        sample = Sample(image=image, label=label, group=row.group, split=row.split)
        scan.items.append(Item(sample, label_file=f"{path}:{row.line}"))
        scan.listed.add(absolute(image))
        scan.listed_dirs.add(Path(absolute(image)).parent)
    return scan


def csv_records(path: Path) -> tuple[tuple[int, list[str]], list[tuple[int, list[str]]]]:
    """The header and the non-blank rows of a CSV file, with their line numbers.

    Raises:
        DataError: when the file is missing, not UTF-8, malformed or empty.
    """
    if not path.is_file():
        raise DataError("CSV file not found", where=path, hint="check data.path")
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            rows = [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason})", where=path) from None
    except csv.Error as exc:
        raise DataError(f"malformed CSV ({exc})", where=path) from None
    rows = [(n, row) for n, row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise DataError("empty file", where=path, hint="expected a header line path,label")
    return rows[0], rows[1:]


def _column(columns: list[str], accepted: tuple[str, ...], where: str) -> int:
    for name in accepted:
        if name in columns:
            return columns.index(name)
    raise DataError(
        f"missing column '{accepted[0]}'",
        where=where,
        hint=f"found columns: {', '.join(columns)}; required: path, label",
    )


def _class_index(rows: list[_Row], classes: list[str] | None) -> tuple[list[str], dict[str, int]]:
    """Class names and the index of each label value that is a class (as the reader)."""
    values = list(dict.fromkeys(row.label for row in rows))
    integers = bool(values) and all(_INTEGER.match(v) for v in values)
    if classes is None:
        names = sorted(values, key=int) if integers else sorted(values)
        return names, {name: i for i, name in enumerate(names)}
    names = list(classes)
    if all(v in names for v in values) or not integers:
        return names, {name: i for i, name in enumerate(names)}
    return names, {v: int(v) for v in values if 0 <= int(v) < len(names)}


# -- npz -----------------------------------------------------------------------------------


def scan_npz(path: Path, *, classes: list[str] | None) -> Scan:
    """The arrays of an ``.npz`` file (read by its reader; there are no files to pair)."""
    samples = read_npz(path, classes=classes, task="classification")
    items = [Item(sample, label_file=str(path)) for sample in samples.samples]
    return Scan(classes=samples.classes, items=items, root=samples.root)
