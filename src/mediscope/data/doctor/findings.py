"""What the dataset doctor reports: findings with a kind, a severity and a place.

Every finding names its ``kind`` (one of :data:`KINDS`), ``severity`` (``error``,
``warning`` or ``info``), the ``file`` and ``line`` (or COCO ``entry``) it is about, a
``message``, and where it applies the ``split``, the ``other_file`` / ``other_split`` of
a pair (duplicates, leakage) and the samples that an exclude list drops to fix it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mediscope.data.formats.boxes import LabelProblems
from mediscope.errors import MediscopeError

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")

#: Every kind of finding with what it means (the report's legend).
KINDS: dict[str, str] = {
    "image_without_label": "an image that no label, mask, row or annotation names",
    "label_without_image": "a label file, mask, row or annotation whose image is missing",
    "empty_file": "a zero-byte image file",
    "unreadable_image": "a file that does not open as an image",
    "truncated_image": "an image cut short: its pixels do not decode to the end",
    "bad_label": "a malformed label line or entry (field count, number, class id, split)",
    "box_zero_size": "a box of zero or negative width or height",
    "box_outside_image": "a box outside its image (YOLO: coordinates outside [0, 1])",
    "mask_values": "mask values that are not in the class table",
    "mask_size": "a mask whose size differs from its image's",
    "unreadable_mask": "a mask file that does not decode",
    "exact_duplicate": "the same pixels as another image",
    "near_duplicate": "a resized, re-encoded or retouched copy of another image",
    "image_in_two_splits": "one image file listed in two splits",
    "patient_in_two_splits": "a patient (group) whose images are in two splits",
    "empty_class": "a class without any sample (image, object or pixel)",
    "class_missing_in_split": "a class without samples in one split",
    "class_imbalance": "the largest class is over ten times the smallest",
    "mixed_image_modes": "images of several modes (e.g. grayscale and RGB) or bit depths",
    "skipped_file": "a file in the dataset that is not read (not an image)",
    "excluded": "samples left out by data.exclude",
    "crowd_annotations": "COCO crowd annotations (iscrowd 1), left out by the reader",
    "unlisted_annotations": "VOC annotations in no ImageSets list, left out by the reader",
    "random_split": "no fixed validation split: only test and the rest are compared",
    "split_file": "the run's split.json and the dataset disagree",
}


#: Meanings that depend on the severity: a duplicate within one split is a warning (the
#: model sees the image twice), across splits an error (leakage).
SEVERITY_MEANINGS: dict[tuple[str, str], str] = {
    ("exact_duplicate", "warning"): "the same pixels as another image of the same split "
    "(seen twice in training or evaluation)",
    ("exact_duplicate", "error"): "the same pixels as an image of another split (leakage)",
    ("near_duplicate", "warning"): "a resized, re-encoded or retouched copy of another "
    "image of the same split",
    ("near_duplicate", "error"): "a resized, re-encoded or retouched copy of an image of "
    "another split (leakage)",
}


def meaning(kind: str, severity: str) -> str:
    """What a kind of finding of this severity means (the report's legend).

    Example:
        >>> meaning("exact_duplicate", "error")
        'the same pixels as an image of another split (leakage)'
    """
    return SEVERITY_MEANINGS.get((kind, severity), KINDS.get(kind, ""))


@dataclass
class Finding:
    """One problem, or one remark, about the dataset.

    Attributes:
        kind: One of :data:`KINDS`.
        severity: ``error`` (training would fail or be wrong), ``warning`` or ``info``.
        message: What is wrong, in one line.
        file: The file it is about (an image, label file, manifest, ...).
        line: The line of ``file``, for text and XML label files and manifests.
        entry: The entry of a JSON file, e.g. ``annotations[12]``.
        split: The split of ``file``.
        other_file: The other file of a pair (the original of a duplicate).
        other_split: The split of ``other_file``.
        hint: What to do about it.
        details: More fields for the JSON report (distance, patient, values, ...).
        exclude: Images an exclude list drops to fix it (``--write-exclude``).
    """

    kind: str
    severity: Severity
    message: str
    file: str | None = None
    line: int | None = None
    entry: str | None = None
    split: str | None = None
    other_file: str | None = None
    other_split: str | None = None
    hint: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    exclude: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The finding as a JSON object: ``kind``, ``severity``, ``file``, ``line``,
        ``message`` always; the other fields when set."""
        data: dict[str, Any] = {
            "kind": self.kind,
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "message": self.message,
        }
        optional = {
            "entry": self.entry,
            "split": self.split,
            "other_file": self.other_file,
            "other_split": self.other_split,
            "hint": self.hint,
        }
        data.update({k: v for k, v in optional.items() if v is not None})
        data.update(self.details)
        if self.exclude:
            data["exclude"] = list(self.exclude)
        return data

    def place(self) -> str:
        """``file:line``, ``file: entry`` or ``file`` (empty when there is no file)."""
        if self.file is None:
            return ""
        if self.line is not None:
            return f"{self.file}:{self.line}"
        return f"{self.file}: {self.entry}" if self.entry else self.file


_LINE = re.compile(r"^(?P<file>.+):(?P<line>\d+)$")
_ENTRY = re.compile(r"^(?P<file>.+): (?P<entry>\w+\[\d+\])$")


def split_where(where: str | Path) -> tuple[str, int | None, str | None]:
    """``(file, line, entry)`` of a reader's place: ``a.txt:3``, ``a.json: images[2]``."""
    text = str(where)
    found = _LINE.match(text)
    if found:
        return found["file"], int(found["line"]), None
    found = _ENTRY.match(text)
    if found:
        return found["file"], None, found["entry"]
    return text, None, None


def label_kind(message: str) -> str:
    """The kind of a bad label line or box the readers report, from their message."""
    text = message.lower()
    if "outside" in text:
        return "box_outside_image"
    if "zero" in text or "negative size" in text:
        return "box_zero_size"
    return "bad_label"


class CollectedProblems(LabelProblems):
    """The readers' label checks, every problem kept (none raises).

    The detection readers report a bad line or box through ``report``; this keeps each
    one as a :class:`Finding` of kind ``bad_label``, ``box_zero_size`` or
    ``box_outside_image`` (``label_without_image`` for YOLO orphan label files), instead
    of stopping at the first or only counting them.
    """

    def __init__(self, what: str = "labels", *, split: str | None = None) -> None:
        super().__init__("skip", what=what)
        self.split = split
        self.findings: list[Finding] = []

    def report(self, message: str, *, where: str | Path, hint: str | None = None) -> None:
        """Keeps the problem as a finding (never raises)."""
        super().report(message, where=where, hint=hint)
        file, line, entry = split_where(where)
        kind = label_kind(message)
        if message.startswith("label file without an image"):
            kind = "label_without_image"
        self.findings.append(
            Finding(
                kind,
                "error",
                message,
                file=file,
                line=line,
                entry=entry,
                split=self.split,
                hint=hint,
            )
        )

    def take(self) -> list[Finding]:
        """The findings so far; the list starts empty again."""
        found, self.findings = self.findings, []
        return found


def finding_from_error(
    kind: str, error: MediscopeError, *, split: str | None = None, severity: Severity = "error"
) -> Finding:
    """A reader's error (file, line, message, hint) as a finding."""
    file, line, entry = split_where(error.where) if error.where else (None, None, None)
    return Finding(
        kind,
        severity,
        error.message,
        file=file,
        line=line,
        entry=entry,
        split=split,
        hint=error.hint,
    )
