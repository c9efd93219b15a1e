"""``mediscope check CONFIG|PATH``: the dataset doctor."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from mediscope.errors import ConfigError, DataError, MediscopeError

if TYPE_CHECKING:
    from mediscope.config.schema import DatasetConfig
    from mediscope.data.doctor.run import CheckReport

#: Models named only so that a dataset path validates as a config (never built).
#: Findings shown per kind on the terminal.
SHOWN = 3
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


class DatasetHasErrors(MediscopeError):
    """The check found errors: the command exits with 1 (not a user error, 2)."""

    exit_code = 1


def check_command(
    target: Path = typer.Argument(
        ..., help="A config YAML, or a dataset folder or file.", metavar="CONFIG|PATH"
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Folder for check.json and check.html (default: checks/<name> in the current "
        "folder, <name> being the config's or the dataset's).",
        metavar="DIR",
    ),
    data_format: str | None = typer.Option(
        None,
        "--format",
        help="The dataset's format: imagefolder, csv, npz, dicom, masks, coco, yolo, voc "
        "(default: the config's, or guessed from the files).",
        metavar="FMT",
    ),
    classes: str | None = typer.Option(
        None,
        "--classes",
        help="Class names in index order (masks: background first).",
        metavar="A,B,C",
    ),
    overrides: list[str] | None = typer.Option(
        None,
        "--set",
        help="Set a config key, e.g. --set data.mask_suffix=_mask.png (repeatable).",
        metavar="KEY=VALUE",
    ),
    split: Path | None = typer.Option(
        None,
        "--split",
        help="A run's split.json (or its run folder): compare its train and val splits.",
        metavar="RUN|FILE",
    ),
    samples: int = typer.Option(4, "--samples", min=0, help="Gallery images per class."),
    exclude_file: Path | None = typer.Option(
        None,
        "--write-exclude",
        help="Write the flagged samples (errors; the later copy of each duplicate), one per "
        "line, for data.exclude.",
        metavar="FILE",
    ),
    near_threshold: int = typer.Option(
        10,
        "--near-threshold",
        min=0,
        max=64,
        help="Near duplicates: perceptual hash bits (of 64) that may differ.",
    ),
    html: bool = typer.Option(True, "--html/--no-html", help="Write check.html."),
) -> None:
    """Check a dataset: orphans, unreadable images, bad labels, masks, duplicates, leakage.

    Reads CONFIG's data.path and data.test_path, or the dataset at PATH, as training
    reads them, and reports every problem with its file and line, the statistics
    (image modes and sizes, class balance, boxes) and a gallery of samples per class.
    Exits with 1 when it finds errors, 0 otherwise.
    """
    from mediscope.data.doctor import check_dataset, dataset_inputs, write_check_json, write_exclude
    from mediscope.files import refuse_overlap
    from mediscope.reports.check_html import write_check_html
    from mediscope.runtime.staging import staged_output

    config, name = resolve_target(target, data_format, classes, list(overrides or []))
    folder = output if output is not None else default_output(config, name)
    # Refused before the (long) check; the writers check every file it read again.
    read = [target, split, *dataset_inputs(config)]
    refuse_overlap(folder, read, option="--output")
    if exclude_file is not None:
        refuse_overlap(exclude_file, read, option="--write-exclude")
    with _progress() as progress:
        report = check_dataset(
            config, split_file=split, near_threshold=near_threshold, progress=progress
        )
    refuse_overlap(folder, report.inputs(), option="--output")  # images listed elsewhere
    files = {"check.json": folder / "check.json"}
    with staged_output(folder) as staging:  # both files or neither (a stop, an error)
        write_check_json(report, staging / "check.json")
        if html:
            write_check_html(report, staging / "check.html", samples=samples)
            files["check.html"] = folder / "check.html"
    flagged = None
    if exclude_file is not None:
        flagged = write_exclude(report, exclude_file)
        files["exclude"] = exclude_file
    print_summary(report, files, flagged)
    if report.errors:
        where = files.get("check.html", files["check.json"])
        raise DatasetHasErrors(
            f"the dataset has {_count(report.errors, 'error')}",
            hint=f"see {_short(where)}",
        )


def resolve_target(
    target: Path, data_format: str | None, classes: str | None, overrides: list[str]
) -> tuple[DatasetConfig, str]:
    """The config to check and a name for the default output folder.

    A YAML file with ``task`` or ``data`` is a config (its ``model`` section may be
    missing: the doctor needs only the task and the data); anything else is a dataset
    path read as ``data_format``, by default the format its files show.

    Raises:
        DataError: when ``target`` does not exist or its format is not recognised.
        ConfigError: for an invalid config or override.
    """
    from mediscope.config import ConfigSource, apply_override
    from mediscope.data.doctor import detect_format, is_config
    from mediscope.registry import FORMATS
    from mediscope.tasks.validate import dataset_config_from_dict, load_dataset_config

    if not target.exists():
        raise DataError(
            "not found", where=target, hint="give a config YAML, or a dataset folder or file"
        )
    if not (target.is_dir() or target.is_file()):
        raise DataError(
            "not a file or folder (a device, pipe or socket)",
            where=target,
            hint="give a config YAML, or a dataset folder or file",
        )
    if data_format is not None:
        overrides.insert(0, f"data.format={data_format}")
    if classes is not None:
        names = [c.strip() for c in classes.split(",") if c.strip()]
        overrides.insert(0, f"data.classes=[{', '.join(_quoted(n) for n in names)}]")
    if is_config(target):
        return load_dataset_config(target, overrides), target.stem
    name = data_format if data_format is not None else detect_format(target)
    try:
        task = FORMATS.entry(name).tags.get("tasks", ("classification",))[0]
    except MediscopeError as exc:
        raise ConfigError(exc.message, where="--format", hint=exc.hint) from None
    raw: dict[str, Any] = {"task": task, "data": {"format": name, "path": str(target)}}
    source = ConfigSource(None, {}, overrides)
    for item in overrides:
        source.overridden.add(apply_override(raw, item))
    return dataset_config_from_dict(raw, source), _dataset_name(target)


def _quoted(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def _dataset_name(path: Path) -> str:
    if path.is_dir():
        return path.resolve().name or "dataset"
    if path.name.lower() in ("data.yaml", "data.yml"):
        return path.resolve().parent.name or "dataset"
    return path.stem


def default_output(config: DatasetConfig, name: str) -> Path:
    """``checks/<name>`` in the current folder, unless that is inside the dataset.

    Raises:
        ConfigError: when the default folder would be inside a dataset folder.
    """
    folder = Path("checks") / name
    for data_path in (config.data.path, config.data.test_path):
        if data_path is None or data_path.suffix.lower() == ".npz":
            continue  # an npz file holds its images: its folder is not the dataset
        dataset = (data_path if data_path.is_dir() else data_path.parent).resolve()
        if folder.resolve().is_relative_to(dataset):
            raise ConfigError(
                f"the default output folder {folder} would be inside the dataset {dataset}",
                where="--output",
                hint="pass --output DIR outside the dataset",
            )
    return folder


@contextmanager
def _progress() -> Iterator[Any]:
    """A progress bar on a terminal (stderr); nothing otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done)

    with bar:
        yield update


def _short(path: str | Path | None) -> str:
    """A path relative to the current folder when inside it."""
    if path is None:
        return ""
    text = str(path)
    try:
        relative = os.path.relpath(text)
    except ValueError:
        return text
    return relative if not relative.startswith("..") else text


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def print_summary(report: CheckReport, files: dict[str, Path], flagged: int | None) -> None:
    """Counts by severity and kind, the first findings of each kind, and the files."""
    console = Console(highlight=False, soft_wrap=True)
    data = report.config.data
    images = report.stats.summary["images"]
    splits = ", ".join(f"{s} {n}" for s, n in images["per_split"].items())
    console.print(
        f"[bold]mediscope check[/bold]  {escape(_short(data.path))} "
        f"({data.format}, {report.config.task})"
    )
    if data.test_path is not None:
        console.print(f"test      {escape(_short(data.test_path))}")
    console.print(
        f"samples   {images['count']} ({escape(splits)}); splits: {escape(report.split_source)}"
    )
    console.print(f"classes   {escape(', '.join(report.classes))}")
    counts = report.counts
    console.print(
        f"found     [bold red]{_count(counts['error'], 'error')}[/], "
        f"[yellow]{_count(counts['warning'], 'warning')}[/], [cyan]{counts['info']} info[/]"
    )
    table = report.by_kind()
    shown: dict[tuple[str, str], int] = {}
    for finding in report.findings:
        key = (finding.severity, finding.kind)
        total = table[finding.kind][finding.severity]
        if key not in shown:
            style = SEVERITY_STYLE[finding.severity]
            console.print(f"\n[{style}]{finding.severity}[/] {finding.kind} ({total})")
            shown[key] = 0
        if shown[key] < SHOWN:
            place = _short(finding.file) if finding.file else ""
            if place and finding.line is not None:
                place = f"{place}:{finding.line}"
            elif place and finding.entry:
                place = f"{place}: {finding.entry}"
            text = f"{place}: {finding.message}" if place else finding.message
            console.print(f"  {escape(text)}")
        elif shown[key] == SHOWN:
            console.print(f"  ... {total - SHOWN} more")
        shown[key] += 1
    console.print()
    for label, file in files.items():
        note = f" ({flagged} samples)" if label == "exclude" and flagged is not None else ""
        console.print(f"{label:<11}{escape(_short(file))}{note}")
