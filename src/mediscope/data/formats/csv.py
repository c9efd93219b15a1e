"""The ``csv`` format: a manifest ``path,label[,patient_id][,split]`` with a header line.

``image``, ``filename`` and ``id`` are accepted for ``path``, and ``target_feature`` for
``label``: the chest X-ray study's ``train_labels.csv`` reads ``id,target_feature`` with
rows such as ``img_12.png,2``. Image paths are relative to ``data.root`` when it is set,
else to the CSV file's folder; absolute paths are kept. A label is a class name, or an
integer index into ``data.classes``.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediscope.data.samples import Sample, SampleSet
from mediscope.errors import DataError
from mediscope.files import LIST_LIMIT, read_text_file
from mediscope.registry import unknown_name_hint

PATH_COLUMNS = ("path", "image", "filename", "id")
LABEL_COLUMNS = ("label", "target_feature")
GROUP_COLUMN = "patient_id"
#: Columns naming the patient (or slide, smear...) an image comes from, first found wins.
GROUP_COLUMNS = (GROUP_COLUMN, "group")
SPLIT_COLUMN = "split"
# The names data/splits.py understands, normalised to train / val / test.
SPLITS = {
    **dict.fromkeys(("train", "training"), "train"),
    **dict.fromkeys(("val", "valid", "validation", "dev"), "val"),
    **dict.fromkeys(("test", "testing", "holdout"), "test"),
}
EXPECTED = "path,label[,patient_id][,split]"
_INTEGER = re.compile(r"^-?\d+$")


@dataclass(frozen=True)
class _Row:
    """One manifest row, as written, with its line number."""

    line: int
    path: str
    label: str
    group: str | None
    split: str | None


def read_csv(
    path: Path,
    *,
    classes: list[str] | None = None,
    task: str,
    root: Path | None = None,
    **options: Any,
) -> SampleSet:
    """Reads a CSV manifest of image paths and labels.

    Args:
        path: The CSV file (UTF-8, header line required).
        classes: Class names in index order; by default the sorted distinct labels
            (in numeric order when every label is an integer).
        task: Must be ``classification``.
        root: The folder image paths are relative to; by default the CSV's folder.
        **options: Ignored; accepted so that every reader takes the same call.

    Returns:
        The samples, with ``group`` from ``patient_id`` (or ``group``) and ``split`` from ``split``
        (train / val / test) when those columns exist; the root is ``root`` or the
        CSV's folder.

    Raises:
        DataError: naming the file and line, when the file is missing or empty, a
            column is missing, a label is unknown, an image is missing or listed twice.
    """
    if task != "classification":
        raise DataError(f"the csv format holds no {task} targets", where="data.format")
    rows = _read_rows(path)
    names, index = _class_index(path, rows, classes)
    base = root if root is not None else path.parent
    samples = _samples(path, rows, base, index, from_root=root is not None)
    return SampleSet(classes=names, samples=samples, root=base)


def _read_rows(path: Path) -> list[_Row]:
    if not path.exists():
        raise DataError("CSV file not found", where=path, hint="check data.path")
    try:
        # utf-8-sig: spreadsheet programs start UTF-8 CSV files with a byte-order mark.
        text = read_text_file(path, limit=LIST_LIMIT, what="CSV file", hint="check data.path")
        return _parse(csv.reader(io.StringIO(text, newline="")), path)
    except OSError as exc:
        raise DataError(f"cannot read the CSV file ({exc})", where=path) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason})", where=path) from None
    except csv.Error as exc:
        raise DataError(f"malformed CSV ({exc})", where=path) from None


def _parse(reader: Any, path: Path) -> list[_Row]:
    header = next((r for r in reader if any(c.strip() for c in r)), None)
    if header is None:
        raise DataError("empty file", where=path, hint=f"expected a header line {EXPECTED}")
    columns = [c.strip() for c in header]
    where_header = f"{path}:{reader.line_num}"
    path_at = _column(columns, PATH_COLUMNS, where_header)
    label_at = _column(columns, LABEL_COLUMNS, where_header)
    group_at = group_column(columns)
    split_at = columns.index(SPLIT_COLUMN) if SPLIT_COLUMN in columns else None
    rows: list[_Row] = []
    for record in reader:
        if not any(c.strip() for c in record):
            continue  # blank lines, e.g. at the end
        where = f"{path}:{reader.line_num}"
        if len(record) != len(columns):
            raise DataError(f"{len(record)} fields, the header has {len(columns)}", where=where)
        cells = [c.strip() for c in record]
        rows.append(
            _Row(
                line=reader.line_num,
                path=_required(cells[path_at], columns[path_at], where),
                label=_required(cells[label_at], columns[label_at], where),
                group=(cells[group_at] or None) if group_at is not None else None,
                split=_split(cells[split_at], where) if split_at is not None else None,
            )
        )
    if not rows:
        raise DataError("empty file: a header but no rows", where=path)
    return rows


def group_column(columns: list[str]) -> int | None:
    """Position of the patient column (``patient_id``, else ``group``), if any."""
    return next((columns.index(c) for c in GROUP_COLUMNS if c in columns), None)


def _column(columns: list[str], accepted: tuple[str, ...], where: str) -> int:
    """Position of the first of ``accepted`` in the header."""
    for name in accepted:
        if name in columns:
            return columns.index(name)
    others = f" (or {', '.join(accepted[1:])})" if len(accepted) > 1 else ""
    raise DataError(
        f"missing column '{accepted[0]}'{others}",
        where=where,
        hint=f"found columns: {', '.join(columns)}; required: path, label; "
        "optional: patient_id (or group), split",
    )


def _required(value: str, column: str, where: str) -> str:
    if not value:
        raise DataError(f"empty '{column}'", where=where, hint="every row needs a path and a label")
    return value


def _split(value: str, where: str) -> str | None:
    if not value:
        return None
    name = SPLITS.get(value.lower())
    if name is None:
        raise DataError(
            f"unknown split '{value}'", where=where, hint=unknown_name_hint(value, list(SPLITS))
        )
    return name


def _class_index(
    path: Path, rows: list[_Row], classes: list[str] | None
) -> tuple[list[str], dict[str, int]]:
    """Class names, and the class index of every label value of the file."""
    values = list(dict.fromkeys(row.label for row in rows))
    integers = all(_INTEGER.match(v) for v in values)
    if classes is None:
        names = sorted(values, key=int) if integers else sorted(values)
        return names, {name: i for i, name in enumerate(names)}
    names = list(classes)
    if all(v in names for v in values):
        return names, {name: i for i, name in enumerate(names)}
    if integers:
        for row in rows:
            if not 0 <= int(row.label) < len(names):
                raise DataError(
                    f"label index {row.label} is out of range for {len(names)} classes",
                    where=f"{path}:{row.line}",
                    hint=f"data.classes: {', '.join(names)}",
                )
        return names, {v: int(v) for v in values}
    row = next(r for r in rows if r.label not in names)
    raise DataError(
        f"unknown label '{row.label}'",
        where=f"{path}:{row.line}",
        hint=unknown_name_hint(row.label, names),
    )


def _samples(
    path: Path, rows: list[_Row], base: Path, index: dict[str, int], *, from_root: bool
) -> list[Sample]:
    first_line: dict[str, int] = {}
    missing: list[tuple[_Row, str]] = []
    samples: list[Sample] = []
    for row in rows:
        image = os.path.normpath(base / row.path)  # an absolute row.path replaces base
        if image in first_line:
            raise DataError(
                f"duplicate image '{row.path}' (first on line {first_line[image]})",
                where=f"{path}:{row.line}",
                hint="list each image once",
            )
        first_line[image] = row.line
        if not os.path.isfile(image):
            missing.append((row, image))
        label = index[row.label]
        samples.append(Sample(image=image, label=label, group=row.group, split=row.split))
    if missing:
        row, image = missing[0]
        more = f" ({len(missing) - 1} more rows name missing images)" if len(missing) > 1 else ""
        relative = "data.root" if from_root else "the CSV file's folder"
        raise DataError(
            f"image not found: {image}{more}",
            where=f"{path}:{row.line}",
            hint=f"relative paths are relative to {relative} ({base})",
        )
    return samples
