"""``mediscope convert --from FMT --to FMT SRC DST``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from mediscope.errors import ConfigError

ENCODINGS = ("rle", "polygon")


def convert_command(
    src: Path = typer.Argument(..., help="The dataset to convert.", metavar="SRC"),
    dst: Path = typer.Argument(..., help="Where to write (a file or a folder).", metavar="DST"),
    source: str = typer.Option(..., "--from", help="Format of SRC: masks or coco.", metavar="FMT"),
    target: str = typer.Option(..., "--to", help="Format to write: coco or masks.", metavar="FMT"),
    encoding: str = typer.Option(
        "rle", "--encoding", help="COCO segmentation: rle (exact) or polygon (holes are lost)."
    ),
    classes: str | None = typer.Option(
        None,
        "--classes",
        help="Class names, background first, e.g. background,lesion (default: classes.txt "
        "of SRC, or the COCO categories).",
        metavar="A,B,C",
    ),
    images: Path | None = typer.Option(
        None,
        "--images",
        help="Image folder of a folder of masks; for a manifest CSV, the folder its paths "
        "start from.",
        metavar="DIR",
    ),
    img_suffix: str | None = typer.Option(
        None, "--img-suffix", help="Image file ending, e.g. .jpg (default: any image)."
    ),
    mask_suffix: str = typer.Option(".png", "--mask-suffix", help="Mask file ending."),
    ignore_index: int | None = typer.Option(
        None, "--ignore-index", help="Mask value left out of COCO (e.g. 255)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:
    """Convert a dataset between formats.

    \b
    Supported:
      --from masks --to coco  SRC: an MMSeg root (img/ + labels/), a manifest CSV
                              (image,mask[,split]) or a folder of masks with --images.
                              DST: a folder receiving annotations_<split>.json per split
                              (annotations.json without splits), or a .json file when
                              there is a single split. One annotation per connected
                              region; --encoding rle is pixel-exact.
      --from coco --to masks  SRC: a COCO JSON (RLE or polygons). DST: a folder of
                              single-channel class-index PNGs named after the images
                              (<file_name stem>.png) and classes.txt.
    """
    from mediscope.data.convert import ConvertOptions, convert

    if encoding not in ENCODINGS:
        raise ConfigError(
            f"unknown encoding '{encoding}'", where="--encoding", hint="rle or polygon"
        )
    options = ConvertOptions(
        classes=[c.strip() for c in classes.split(",")] if classes is not None else None,
        encoding="rle" if encoding == "rle" else "polygon",
        images=images,
        img_suffix=img_suffix,
        mask_suffix=mask_suffix,
        ignore_index=ignore_index,
        overwrite=overwrite,
    )
    result = convert(source, target, src, dst, options)
    console = Console(highlight=False)
    for line in result.lines:
        console.print(line, soft_wrap=True)
