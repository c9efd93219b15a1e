"""The dataset doctor's run: scan, decode, compare, count; the report and its files."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mediscope.config.schema import DatasetConfig
from mediscope.data.doctor.duplicates import (
    MIN_CORRELATION,
    NEAR_THRESHOLD,
    exact_duplicates,
    near_duplicates,
    patients_in_two_splits,
)
from mediscope.data.doctor.findings import SEVERITIES, Finding
from mediscope.data.doctor.pixels import ImageInfo, inspect_image
from mediscope.data.doctor.scan import Item, Scan, absolute, is_image_name
from mediscope.data.doctor.sources import scan_path
from mediscope.data.doctor.stats import Statistics, statistics
from mediscope.data.images import set_max_pixels
from mediscope.data.masks import mask_decoder
from mediscope.data.samples import sample_id
from mediscope.data.splits import read_split_file
from mediscope.errors import DataError
from mediscope.files import (
    refuse_overlap,
    write_json_atomic,
    write_text_atomic,
)

#: ``progress(stage, done, total)``: what runs, for a progress bar.
Progress = Callable[[str, int, int], None]
#: The version of the check.json layout.
SCHEMA = 1
_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass
class CheckReport:
    """Everything ``mediscope check`` found about a dataset.

    Attributes:
        config: The config the dataset was read with.
        classes: Class names in index order.
        items: The samples, each with the split it is compared in.
        infos: Per item its decoded image, or None when it does not decode.
        pixels: Segmentation: per item the pixels of each class (else None).
        findings: Every finding, errors first.
        stats: The statistics.
        split_source: Where the splits come from (folders, column, split.json, random).
        near_threshold: The perceptual hash distance used for near duplicates.
        excluded: Samples left out by ``data.exclude``.
        counts: Findings per severity (set from ``findings``).
    """

    config: DatasetConfig
    classes: list[str]
    items: list[Item]
    infos: list[ImageInfo | None]
    pixels: list[np.ndarray | None]
    findings: list[Finding]
    stats: Statistics
    split_source: str
    near_threshold: int = NEAR_THRESHOLD
    excluded: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.findings.sort(key=_finding_order)
        found = Counter(f.severity for f in self.findings)
        self.counts = {s: found[s] for s in SEVERITIES}

    def inputs(self) -> list[str | Path]:
        """Every file the check read: the dataset paths, images, masks and label files."""
        paths: list[str | Path] = list(dataset_inputs(self.config))
        for item in self.items:
            paths.append(item.image)
            if item.sample.mask is not None:
                paths.append(item.sample.mask)
            if item.label_file is not None:
                paths.append(item.label_file)
        return paths

    @property
    def errors(self) -> int:
        """The number of findings of severity error."""
        return self.counts["error"]

    def by_kind(self) -> dict[str, dict[str, int]]:
        """Findings per kind and severity, in report order."""
        table: dict[str, dict[str, int]] = {}
        for finding in self.findings:
            row = table.setdefault(finding.kind, {})
            row[finding.severity] = row.get(finding.severity, 0) + 1
        return table

    def exclude_list(self) -> dict[str, list[str]]:
        """Images an exclude list drops, with the kinds of finding that flag them:
        those of errors, and the later copy of every duplicate pair."""
        flagged: dict[str, list[str]] = {}
        for finding in self.findings:
            if finding.severity != "error" and "duplicate" not in finding.kind:
                continue
            for image in finding.exclude:
                kinds = flagged.setdefault(absolute_image(image), [])
                if finding.kind not in kinds:
                    kinds.append(finding.kind)
        return dict(sorted(flagged.items()))

    def to_json(self) -> dict[str, Any]:
        """The report as ``check.json`` holds it."""
        data = self.config.data
        return {
            "mediscope_check": SCHEMA,
            "dataset": {
                "task": self.config.task,
                "format": data.format,
                "path": str(data.path),
                "test_path": str(data.test_path) if data.test_path is not None else None,
                "exclude": str(data.exclude) if data.exclude is not None else None,
                "excluded": self.excluded,
                "classes": list(self.classes),
                "splits": self.stats.summary["images"]["per_split"],
                "split_source": self.split_source,
            },
            "summary": {
                "errors": self.counts["error"],
                "warnings": self.counts["warning"],
                "info": self.counts["info"],
                "kinds": self.by_kind(),
                "near_duplicates": {
                    "hash_distance": self.near_threshold,
                    "min_correlation": MIN_CORRELATION,
                },
            },
            "statistics": self.stats.summary,
            "findings": [f.to_json() for f in self.findings],
        }


def absolute_image(image: str) -> str:
    """The form of an image path that exclude lists hold: absolute, with ``/``."""
    return Path(os.path.abspath(image)).as_posix()


def _finding_order(finding: Finding) -> tuple[Any, ...]:
    return (
        _SEVERITY_RANK[finding.severity],
        finding.kind,
        finding.file or "",
        finding.line or 0,
        finding.entry or "",
    )


# -- the run -------------------------------------------------------------------------------


def check_dataset(
    config: DatasetConfig,
    *,
    split_file: Path | None = None,
    near_threshold: int = NEAR_THRESHOLD,
    progress: Progress | None = None,
    workers: int | None = None,
) -> CheckReport:
    """Checks the dataset of a config: ``data.path`` and ``data.test_path``.

    Args:
        config: The config (its ``task`` and ``data`` sections are used).
        split_file: A run's ``split.json``: its train / val lists give the splits of
            ``data.path`` instead of the data's own.
        near_threshold: Perceptual hash distance (bits of 64) for near duplicates.
        progress: Called as images are decoded and compared.
        workers: Threads decoding images (default: up to 4, by the CPU count).

    Returns:
        The report: findings, statistics and the samples.

    Raises:
        DataError: when a dataset path cannot be read at all (missing, no layout, no
            class names) or ``split_file`` is unreadable.
        ConfigError: when the format does not hold the task.
    """
    data = config.data
    main = scan_path(config, data.path, data.classes)
    scans: list[tuple[str, Scan]] = [("data.path", main)]
    if data.test_path is not None:
        scans.append(("data.test_path", scan_path(config, data.test_path, main.classes)))
    findings: list[Finding] = [f for _, scan in scans for f in scan.findings]
    _label_owners(scans, findings)
    source = _assign_splits(config, scans, split_file, findings)
    _finding_splits(scans)
    findings += _unlisted_images(scans)
    items = [item for _, scan in scans for item in scan.items]
    items, excluded = _apply_exclude(config, scans, items, findings)
    infos, pixels = _decode(config, main.classes, items, findings, progress, workers)
    findings += exact_duplicates(items, infos)
    compare = None if progress is None else (lambda d, t: progress("comparing", d, t))
    findings += near_duplicates(items, infos, threshold=near_threshold, progress=compare)
    findings += patients_in_two_splits(items)
    stats = statistics(config.task, main.classes, items, infos, pixels, findings)
    findings += stats.findings
    return CheckReport(
        config=config,
        classes=main.classes,
        items=items,
        infos=infos,
        pixels=pixels,
        findings=findings,
        stats=stats,
        split_source=source,
        near_threshold=near_threshold,
        excluded=excluded,
    )


#: Findings about a label line or box: the image of its label file is what to drop.
LABEL_KINDS = frozenset({"bad_label", "box_zero_size", "box_outside_image"})


def _label_owners(scans: list[tuple[str, Scan]], findings: list[Finding]) -> None:
    """Findings about a per-image label file (YOLO, VOC) flag that image."""
    owners: dict[str, list[str]] = {}
    for _, scan in scans:
        for item in scan.items:
            if item.label_file is not None:
                owners.setdefault(item.label_file, []).append(item.image)
    for finding in findings:
        images = owners.get(finding.file or "", [])
        if finding.kind in LABEL_KINDS and not finding.exclude and len(images) == 1:
            finding.exclude = list(images)


def _assign_splits(
    config: DatasetConfig,
    scans: list[tuple[str, Scan]],
    split_file: Path | None,
    findings: list[Finding],
) -> str:
    """Sets each item's split as training would see it; returns where they come from."""
    for name, scan in scans:
        for item in scan.items:
            item.source = name
            item.split = "test" if name == "data.test_path" else item.sample.split or "trainval"
    main = scans[0][1]
    if split_file is not None:
        _apply_split_file(main, split_file, findings)
        return f"the run's split ({split_file})"
    method = config.data.split.method
    named = {item.sample.split for item in main.items}
    fixed = method == "column" or (method == "auto" and "val" in named)
    if fixed:
        return "the data's own (split folders, column or files)"
    for item in main.items:
        if item.split != "test":
            item.split = "trainval"
    pool = sum(item.split == "trainval" for item in main.items)
    tested = any(item.split == "test" for _, scan in scans for item in scan.items)
    compared = "only test and the rest are compared" if tested else "no splits are compared"
    findings.append(
        Finding(
            "random_split",
            "info",
            f"no fixed validation split (data.split.method: {method}): train and val are "
            f"drawn from {pool} samples at random, so {compared}",
            hint="pass --split RUN/split.json to compare a run's train and val",
        )
    )
    return f"random (data.split.method: {method})" + ("; test fixed" if tested else "")


def _finding_splits(scans: list[tuple[str, Scan]]) -> None:
    """Gives the scans' findings the split their samples are compared in: that of the
    sample whose image or label file they name, else test for ``data.test_path`` and
    the random pool for the data's train and val when those are drawn at random."""
    by_file: dict[str, str] = {}
    for _, scan in scans:
        for item in scan.items:
            by_file[item.image] = item.split
            if item.label_file is not None:
                by_file.setdefault(item.label_file, item.split)
    for name, scan in scans:
        pooled = any(item.split == "trainval" for item in scan.items)
        for finding in scan.findings:
            if finding.file in by_file:
                finding.split = by_file[finding.file]
            elif name == "data.test_path":
                finding.split = "test"
            elif pooled and finding.split in ("train", "val"):
                finding.split = "trainval"


def _apply_split_file(main: Scan, split_file: Path, findings: list[Finding]) -> None:
    path = split_file / "split.json" if split_file.is_dir() else split_file
    data = read_split_file(path)
    where = {sid: split for split, ids in data.items() for sid in ids}
    found: set[str] = set()
    for item in main.items:
        sid = sample_id(item.sample, main.root)
        if sid in where:
            item.split = where[sid]
            found.add(sid)
        elif item.split != "test":
            item.split = "trainval"
    missing = [sid for sid in where if sid not in found]
    unsplit = [sample_id(i.sample, main.root) for i in main.items if i.split == "trainval"]
    for ids, what in (
        (missing, "samples of the split are not in the dataset"),
        (unsplit, "samples of the dataset are in no list of the split"),
    ):
        if ids:
            findings.append(
                Finding(
                    "split_file",
                    "warning",
                    f"{len(ids)} {what} (first: {ids[0]})",
                    file=str(path),
                    hint="was data.path changed since the run started?",
                )
            )


def _unlisted_images(scans: list[tuple[str, Scan]]) -> list[Finding]:
    """Images in the folders of listed images (CSV, COCO) that nothing lists."""
    listed = {image for _, scan in scans for image in scan.listed}
    folders = sorted({d for _, scan in scans for d in scan.listed_dirs})
    found = []
    for folder in folders:
        for file in sorted(folder.iterdir()):
            if is_image_name(file.name) and file.is_file() and absolute(file) not in listed:
                found.append(
                    Finding(
                        "image_without_label",
                        "warning",
                        "image beside listed ones that no manifest or annotation file lists: "
                        "not read",
                        file=str(file),
                        hint="label it, or move it out of the dataset",
                    )
                )
    return found


def _apply_exclude(
    config: DatasetConfig, scans: list[tuple[str, Scan]], items: list[Item], findings: list[Finding]
) -> tuple[list[Item], int]:
    """The items without those ``data.exclude`` names (as training reads them)."""
    from mediscope.data.formats.masks import match_exclude

    exclude = config.data.exclude
    if exclude is None:
        return items, 0
    dropped: set[int] = set()
    unmatched: set[tuple[int, str]] | None = None
    for _, scan in scans:
        drop, missing = match_exclude([i.sample for i in scan.items], exclude, base=scan.root)
        dropped |= {id(scan.items[i]) for i in drop}
        unmatched = set(missing) if unmatched is None else unmatched & set(missing)
    for number, entry in sorted(unmatched or ()):
        findings.append(
            Finding(
                "excluded",
                "error",
                f"'{entry}' matches no sample: reading the data stops here",
                file=str(exclude),
                line=number,
                hint="give an image stem, file name, path relative to the dataset root or an "
                "absolute path",
            )
        )
    if dropped:
        findings.append(
            Finding(
                "excluded",
                "info",
                f"{len(dropped)} samples left out by data.exclude (not checked)",
                file=str(exclude),
            )
        )
    return [item for item in items if id(item) not in dropped], len(dropped)


def _decode(
    config: DatasetConfig,
    classes: list[str],
    items: Sequence[Item],
    findings: list[Finding],
    progress: Progress | None,
    workers: int | None,
) -> tuple[list[ImageInfo | None], list[np.ndarray | None]]:
    """Decodes every image (and mask), in a few threads."""
    decode = mask_reader(config, classes) if config.task == "segmentation" else None
    window = config.data.dicom_window
    set_max_pixels(config.data.max_pixels)

    def one(item: Item) -> tuple[ImageInfo | Finding, np.ndarray | None, list[Finding]]:
        found = inspect_image(item.image, split=item.split, window=window)
        if decode is None or item.sample.mask is None:
            return found, None, []
        counts, problems = check_mask(item, found, decode, len(classes))
        return found, counts, problems

    infos: list[ImageInfo | None] = []
    pixels: list[np.ndarray | None] = []
    threads = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for done, (found, counts, problems) in enumerate(pool.map(one, items), start=1):
            if isinstance(found, Finding):
                findings.append(found)
                infos.append(None)
            else:
                infos.append(found)
            pixels.append(counts)
            findings += problems
            if progress is not None:
                progress("decoding", done, len(items))
    return infos, pixels


mask_reader = mask_decoder  # the one training uses


def check_mask(
    item: Item,
    image: ImageInfo | Finding,
    decode: Callable[[str], np.ndarray],
    num_classes: int,
) -> tuple[np.ndarray | None, list[Finding]]:
    """Pixels per class of an item's mask, or the findings of its problems (values
    outside the class table, unreadable, a size other than the image's)."""
    assert item.sample.mask is not None
    mask_file = item.sample.mask
    common: dict[str, Any] = {
        "file": mask_file,
        "split": item.split,
        "other_file": item.image,
        "exclude": [item.image],
    }
    try:
        mask = decode(mask_file)
    except DataError as exc:
        text = exc.message.lower()
        kind = "unreadable_mask" if "unreadable" in text or "not found" in text else "mask_values"
        return None, [Finding(kind, "error", exc.message, hint=exc.hint, **common)]
    if isinstance(image, ImageInfo) and mask.shape[:2] != (image.height, image.width):
        height, width = mask.shape[:2]
        message = f"mask is {width}x{height}, its image {image.width}x{image.height}"
        return None, [Finding("mask_size", "error", message, hint="re-export the mask", **common)]
    counts = np.bincount(mask.ravel(), minlength=num_classes)[:num_classes]
    return counts.astype(np.int64), []


# -- files ---------------------------------------------------------------------------------


def dataset_inputs(config: DatasetConfig) -> list[Path]:
    """The paths of a config's dataset: ``data.path``, ``test_path``, ``root``, ``exclude``."""
    data = config.data
    return [p for p in (data.path, data.test_path, data.root, data.exclude) if p is not None]


def write_check_json(report: CheckReport, path: Path, *, option: str = "--output") -> Path:
    """Writes ``check.json`` atomically.

    Raises:
        ConfigError: when ``path`` is a file the check read, or inside or above one.
    """
    refuse_overlap(path, report.inputs(), option=option)
    return write_json_atomic(path, report.to_json())


def write_exclude(report: CheckReport, path: Path, *, option: str = "--write-exclude") -> int:
    """Writes the flagged images, one absolute path per line, as ``data.exclude`` reads
    them (the kinds of finding follow as a comment); returns how many are listed.

    A path holding ``#`` cannot be listed (the rest of its line would be a comment): it
    is written as a comment asking to rename it.

    Raises:
        ConfigError: when ``path`` is a file the check read (an image, the current
            ``data.exclude``), or inside or above one.
    """
    refuse_overlap(path, report.inputs(), option=option)
    flagged = report.exclude_list()
    lines = [
        "# Samples flagged by mediscope check: errors, and the later copy of each duplicate.",
        f"# Dataset: {report.config.data.path}"
        + (f" and {report.config.data.test_path}" if report.config.data.test_path else ""),
        "# Use it with: --set data.exclude=" + str(path),
    ]
    listed = 0
    for image, kinds in flagged.items():
        if "#" in image:  # '#' starts a comment in an exclude file: the path cannot be read
            lines.append(f"# not listable ('#' in the path), move or rename it: {image}")
            continue
        lines.append(f"{image}  # {', '.join(kinds)}")
        listed += 1
    write_text_atomic(path, "\n".join(lines) + "\n")
    return listed


__all__ = [
    "CheckReport",
    "check_dataset",
    "check_mask",
    "dataset_inputs",
    "mask_reader",
    "write_check_json",
    "write_exclude",
]
