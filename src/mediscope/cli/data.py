"""``mediscope data synth ...``: realistic synthetic datasets."""

from __future__ import annotations

from pathlib import Path

import click
import typer
from rich.console import Console

app = typer.Typer(
    help="Make datasets: synthetic generators and public datasets (fetch).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
synth_app = typer.Typer(
    help="Generate a realistic synthetic dataset.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(synth_app, name="synth")


@synth_app.command("gram-crops")
def gram_crops(
    dst: Path = typer.Argument(
        ..., help="Output folder (must not exist or be empty).", metavar="DST"
    ),
    per_class: int = typer.Option(300, help="Training images per class."),
    test_per_class: int = typer.Option(100, help="Test images per class."),
    size: int = typer.Option(64, help="Image side in pixels."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same files."),
    overwrite: bool = typer.Option(False, help="Replace an existing non-empty folder."),
) -> None:
    """Gram-stained bacteria crops in 4 classes (imagefolder: DST/train, DST/test)."""
    from mediscope.data.synthetic.gram_crops import generate_gram_crops

    summary = generate_gram_crops(
        dst,
        per_class=per_class,
        test_per_class=test_per_class,
        size=size,
        seed=seed,
        overwrite=overwrite,
    )
    console = Console(highlight=False)
    for split, counts in summary.counts.items():
        total = sum(counts.values())
        detail = ", ".join(f"{k} {v}" for k, v in counts.items())
        console.print(f"{split}: {total} images ({detail})")
    console.print(f"data: {summary.root}", soft_wrap=True)


@synth_app.command("lesions")
def lesions(
    dst: Path = typer.Argument(
        ..., help="Output folder (must not exist or be empty).", metavar="DST"
    ),
    train: int = typer.Option(200, help="Training images."),
    val: int = typer.Option(50, help="Validation images."),
    test: int = typer.Option(50, help="Test images."),
    size: int = typer.Option(128, help="Image side in pixels."),
    multiclass: bool = typer.Option(
        False, "--multiclass", help="Masks of nevus (1) and melanoma (2) instead of lesion (1)."
    ),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same files."),
    overwrite: bool = typer.Option(False, help="Replace an existing non-empty folder."),
) -> None:
    """Dermoscopy-like lesion images and masks (MMSeg layout: DST/img, DST/labels).

    Images are JPEG, masks single-channel PNGs of class indices.
    """
    from mediscope.data.synthetic.lesions import generate_lesions

    summary = generate_lesions(
        dst,
        train=train,
        val=val,
        test=test,
        size=size,
        seed=seed,
        multiclass=multiclass,
        overwrite=overwrite,
    )
    console = Console(highlight=False)
    for split, n in summary.counts.items():
        console.print(f"{split}: {n} images")
    console.print("lesions: " + ", ".join(f"{c} {n}" for c, n in summary.lesions.items()))
    shares = ", ".join(f"{c} {100 * v:.1f} %" for c, v in summary.pixel_shares.items())
    console.print(f"pixels: {shares}")
    console.print(f"data: {summary.root}", soft_wrap=True)


@app.command("fetch")
def fetch(
    name: str = typer.Argument(
        "", help="Dataset name (see --list), e.g. pathmnist_64.", metavar="NAME", show_default=False
    ),
    dst: Path | None = typer.Argument(
        None, help="Folder to put it in (created if needed).", metavar="DST", show_default=False
    ),
    mirror: str | None = typer.Option(
        None,
        "--mirror",
        metavar="URL",
        help="Base URL replacing the scheme and host of the download URLs (a lab mirror); "
        "default $MEDISCOPE_DOWNLOAD_BASE.",
    ),
    force: bool = typer.Option(False, "--force", help="Download again even if present."),
    list_all: bool = typer.Option(False, "--list", help="List the datasets, sizes and licences."),
) -> None:
    """Download a public dataset into DST: checksummed, resumable, unpacked in place."""
    from mediscope.data.download import fetch as fetch_dataset

    console = Console(highlight=False)
    if list_all:
        _print_catalog(console)
        return
    if not name or dst is None:
        raise click.UsageError("give NAME and DST, or --list to see the names")
    result = fetch_dataset(
        name,
        dst,
        mirror=mirror,
        force=force,
        log=lambda message: console.print(message, markup=False, soft_wrap=True),
    )
    console.print(f"data: {result.path}", markup=False, soft_wrap=True)


def _print_catalog(console: Console) -> None:
    from rich.table import Table

    from mediscope.data.catalog import datasets
    from mediscope.data.download import human_size

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("name", "size", "licence", "description"):
        table.add_column(column)
    for entry in datasets():
        source = " (needs a Kaggle account)" if entry.kaggle else ""
        table.add_row(entry.name, human_size(entry.size), entry.licence, entry.title + source)
    Console(width=132, highlight=False).print(table)
    console.print("size ?: the source publishes no file size")
