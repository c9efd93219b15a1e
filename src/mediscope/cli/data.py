"""``mediscope data synth ...``: realistic synthetic datasets."""

from __future__ import annotations

from pathlib import Path

import click
import typer
from rich.console import Console

app = typer.Typer(
    help="Make datasets: synthetic generators, public datasets (fetch, import), tiles.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
synth_app = typer.Typer(
    help="Generate a realistic synthetic dataset.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(synth_app, name="synth")
import_app = typer.Typer(
    help="Bring a dataset copy you obtained yourself into a mediscope layout.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(import_app, name="import")


@synth_app.command("gram-stain")
def gram_stain(
    dst: Path = typer.Argument(
        ..., help="Output folder (must not exist or be empty).", metavar="DST"
    ),
    count: int = typer.Option(200, help="Training images."),
    test_count: int = typer.Option(50, help="Test images (0: no test split)."),
    size: int = typer.Option(320, help="Image side in pixels (cells scale with it)."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same files."),
    large: str | None = typer.Option(
        None,
        "--large",
        metavar="WxH",
        help="Also write large smears of WxH pixels for tiled inference, e.g. 2000x1500.",
    ),
    large_count: int | None = typer.Option(
        None, "--large-count", help="Number of large smears (default 2 with --large)."
    ),
    fields: bool = typer.Option(
        True,
        "--fields/--whole-images",
        help="Draw each image as a field of a 2000x1500 smear, as crowded as its clumps make "
        "that part (default), or as a whole smear of its own, whose crowding varies less.",
    ),
    crowding: float = typer.Option(
        1.0,
        help="Bacteria per area of the train and test images against the default, e.g. 2 "
        "for fields as crowded as a dense smear's clumps (large smears keep the default).",
    ),
    overwrite: bool = typer.Option(False, help="Replace an existing non-empty folder."),
) -> None:
    """Gram-stained smears with YOLO boxes in 4 classes (DST/data.yaml, images/, labels/).

    One box per bacterial cell; debris and host cells have none; some images are negatives.
    """
    from mediscope.data.synthetic.gram_stain import generate_gram_stain

    large_size = _parse_size(large) if large is not None else None
    if large_count is None:
        large_count = 2 if large_size is not None else 0
    summary = generate_gram_stain(
        dst,
        count=count,
        test_count=test_count,
        size=size,
        seed=seed,
        large=large_size,
        large_count=large_count,
        fields=fields,
        crowding=crowding,
        overwrite=overwrite,
    )
    console = Console(highlight=False)
    for split, n in summary.images.items():
        objects = summary.objects[split]
        detail = ", ".join(f"{k} {v}" for k, v in objects.items())
        console.print(
            f"{split}: {n} images ({summary.negatives[split]} without bacteria), "
            f"{sum(objects.values())} boxes ({detail})",
            soft_wrap=True,
        )
    console.print(f"data: {summary.root}", markup=False, soft_wrap=True)


def _parse_size(text: str) -> tuple[int, int]:
    """``"2000x1500"`` as ``(2000, 1500)``."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.strip().isdigit() or not height.strip().isdigit():
        raise click.BadParameter(
            f"'{text}' is not WIDTHxHEIGHT, e.g. 2000x1500", param_hint="--large"
        )
    return int(width), int(height)


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
    for column in ("name", "size", "licence", "task", "description"):
        table.add_column(column)
    for entry in datasets():
        source = " (needs a Kaggle account)" if entry.kaggle else ""
        task = "not supported" if entry.unsupported else entry.task or "see layout"
        why = f" [not supported: {entry.unsupported}]" if entry.unsupported else ""
        row = (entry.name, human_size(entry.size), entry.licence, task, entry.title + source + why)
        table.add_row(*row)
    Console(width=160, highlight=False).print(table)
    console.print("size ?: the source publishes no file size")


@import_app.command("ph2")
def import_ph2(
    src: Path = typer.Argument(
        ...,
        help="The PH2 folder (holding 'PH2 Dataset images'), that folder itself, or a .zip.",
        metavar="SRC",
    ),
    dst: Path = typer.Argument(
        ..., help="Output folder (must not exist or be empty).", metavar="DST"
    ),
    split: str = typer.Option(
        "50,25,25", "--split", metavar="TRAIN,VAL,TEST", help="Shares of the cases per split."
    ),
    seed: int = typer.Option(0, help="Random seed of the split; the same seed, the same split."),
    size: int | None = typer.Option(
        None, "--size", min=1, help="Resize images and masks to SIZE x SIZE (default: keep)."
    ),
    overwrite: bool = typer.Option(False, help="Replace an existing non-empty folder."),
) -> None:
    """PH2 dermoscopy images and lesion masks: DST/images, DST/masks (0/1), manifest.csv.

    PH2 is given out after registration, so it is not downloaded: SRC is your copy.
    """
    from mediscope.data.prepare.ph2 import check_split
    from mediscope.data.prepare.ph2 import import_ph2 as run_import

    console = Console(highlight=False)
    summary = run_import(
        src,
        dst,
        split=check_split(split),
        seed=seed,
        size=size,
        overwrite=overwrite,
        log=lambda message: console.print(message, markup=False, soft_wrap=True),
    )
    for part, n in summary.counts.items():
        console.print(f"{part}: {n} cases")
    console.print(f"lesion pixels: {100 * summary.lesion_share:.1f} %")
    console.print(f"data: {summary.root / 'manifest.csv'}", markup=False, soft_wrap=True)


@import_app.command("oxford-pets")
def import_oxford_pets(
    src: Path = typer.Argument(
        ...,
        help="Folder of the unpacked archives (images/, annotations/) or of images.tar.gz "
        "and annotations.tar.gz.",
        metavar="SRC",
    ),
    dst: Path = typer.Argument(
        ..., help="Output folder (must not exist or be empty).", metavar="DST"
    ),
    size: int = typer.Option(256, min=0, help="Side of images and masks; 0 keeps the originals."),
    border: str = typer.Option(
        "ignore", "--border", help="Trimap border: 'ignore' (255) or 'pet' (cat or dog)."
    ),
    val_every: int = typer.Option(5, min=2, help="Every Nth trainval image goes to val."),
    overwrite: bool = typer.Option(False, help="Replace an existing non-empty folder."),
) -> None:
    """Oxford-IIIT Pet as background / cat / dog masks (MMSeg layout: DST/img, DST/labels).

    'data fetch oxford-pets DST' downloads and prepares it with the defaults; this command
    prepares a copy you have, with other options.
    """
    from mediscope.data.prepare.oxford_pets import prepare_pets

    if border not in ("ignore", "pet"):
        raise click.BadParameter("'ignore' or 'pet'", param_hint="--border")
    console = Console(highlight=False)
    summary = prepare_pets(
        src,
        dst,
        size=size or None,
        border="pet" if border == "pet" else "ignore",
        val_every=val_every,
        overwrite=overwrite,
        log=lambda message: console.print(message, markup=False, soft_wrap=True),
    )
    for part, n in summary.counts.items():
        console.print(f"{part}: {n} images")
    if summary.skipped:
        console.print("skipped: " + ", ".join(f"{n} {r}" for r, n in summary.skipped.items()))
    console.print(f"data: {summary.root}", markup=False, soft_wrap=True)


@app.command("tile")
def tile(
    src: Path = typer.Argument(
        ...,
        help="The detection dataset to tile, or a whole slide (.svs, .ndpi, pyramidal .tif), "
        "or a folder of slides (with --mpp or --level).",
        metavar="SRC",
    ),
    dst: Path = typer.Argument(
        ...,
        help="Output folder (must not exist or be empty): YOLO layout; for slides, a folder "
        "per slide, or per class with --annotations.",
        metavar="DST",
    ),
    size: int = typer.Option(640, "--size", min=1, help="Tile side in pixels."),
    overlap: float | None = typer.Option(
        None,
        "--overlap",
        min=0.0,
        max=0.99,
        help="Share of a tile its neighbours overlap (default 0.2; slides: 0).",
    ),
    mpp: float | None = typer.Option(
        None, "--mpp", min=0.0, help="Slides: microns per pixel of the patches, e.g. 0.5."
    ),
    level: int | None = typer.Option(
        None, "--level", min=0, help="Slides without --mpp: the pyramid level read (default 0)."
    ),
    min_tissue: float = typer.Option(
        0.5, "--min-tissue", min=0.0, max=1.0, help="Slides: share of a patch that is tissue."
    ),
    annotations: Path | None = typer.Option(
        None,
        "--annotations",
        help="Slides: a GeoJSON of classified regions (QuPath export, level-0 pixels); "
        "patches go to the folder of the class covering them.",
        metavar="GEOJSON",
    ),
    source_format: str = typer.Option(
        "yolo", "--format", help="Format of SRC: yolo, coco or voc.", metavar="FMT"
    ),
    min_visibility: float = typer.Option(
        0.5,
        "--min-visibility",
        min=0.0,
        max=1.0,
        help="Share of a box's area that must be inside a tile to keep it there.",
    ),
    keep_empty: bool = typer.Option(
        True, "--keep-empty/--drop-empty", help="Write tiles without boxes (negatives) too."
    ),
    classes: str | None = typer.Option(
        None, "--classes", help="Class names (default: the source's).", metavar="A,B,C"
    ),
    on_bad_label: str = typer.Option(
        "error", "--on-bad-label", help="'error' stops at a bad label, 'skip' drops it."
    ),
    overwrite: bool = typer.Option(False, help="Replace an existing non-empty folder."),
) -> None:
    """Cut large detection images into overlapping tiles with their boxes (YOLO layout),
    or whole slides into tissue patches.

    The last tile of a row or column is aligned to the image edge; image sides shorter
    than --size are kept whole. Boxes are clipped to each tile and kept where at least
    --min-visibility of their area is inside. Splits and sub-folders are kept.

    Whole slides are cut into tissue-only patches at --mpp (a patch set like NCT-CRC-HE
    from one's own slides), labelled by the regions of --annotations when given.
    """
    from mediscope.cli.slides import slide_sources, tile_slides_command

    slides = slide_sources(src, wanted=mpp is not None or level is not None or bool(annotations))
    if slides:
        tile_slides_command(
            slides,
            dst,
            size=size,
            overlap=overlap or 0.0,
            mpp=mpp,
            level=level,
            min_tissue=min_tissue,
            annotations=annotations,
            overwrite=overwrite,
        )
        return
    for option, given in (("--mpp", mpp), ("--level", level), ("--annotations", annotations)):
        if given is not None:
            raise click.BadParameter(f"{option} is for slides; {src} holds none", param_hint=option)
    from mediscope.data.prepare.tiles import tile_dataset

    if on_bad_label not in ("error", "skip"):
        raise click.BadParameter("'error' or 'skip'", param_hint="--on-bad-label")
    summary = tile_dataset(
        src,
        dst,
        size=size,
        overlap=0.2 if overlap is None else overlap,
        format=source_format,
        min_visibility=min_visibility,
        keep_empty=keep_empty,
        overwrite=overwrite,
        classes=[c.strip() for c in classes.split(",")] if classes is not None else None,
        on_bad_label=on_bad_label,
    )
    console = Console(highlight=False)
    per_split = ", ".join(f"{split} {n}" for split, n in summary.splits.items() if split != "none")
    detail = f" ({per_split})" if per_split else ""
    console.print(f"{summary.images} images -> {summary.tiles} tiles{detail}")
    boxes = f"boxes: {summary.boxes_kept} kept, {summary.boxes_dropped} dropped at tile edges"
    if summary.boxes_lost:
        boxes += f", {summary.boxes_lost} in no tile"
    console.print(boxes)
    if summary.empty_skipped:
        console.print(f"tiles without boxes left out: {summary.empty_skipped}")
    console.print(f"data: {summary.root}", markup=False, soft_wrap=True)
