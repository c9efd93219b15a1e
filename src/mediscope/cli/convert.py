"""``mediscope convert --from FMT --to FMT SRC DST``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from mediscope.errors import ConfigError

ENCODINGS = ("rle", "polygon")
ON_BAD_LABEL = ("error", "skip")


def convert_command(
    src: Path = typer.Argument(..., help="The dataset to convert.", metavar="SRC"),
    dst: Path = typer.Argument(..., help="Where to write (a file or a folder).", metavar="DST"),
    source: str = typer.Option(
        ..., "--from", help="Format of SRC: masks, coco, yolo or voc.", metavar="FMT"
    ),
    target: str = typer.Option(
        ..., "--to", help="Format to write: coco, masks, yolo or voc.", metavar="FMT"
    ),
    encoding: str = typer.Option(
        "rle", "--encoding", help="COCO segmentation: rle (exact) or polygon (holes are lost)."
    ),
    classes: str | None = typer.Option(
        None,
        "--classes",
        help="Class names. Masks: background first, e.g. background,lesion (default: "
        "classes.txt of SRC, or the COCO categories). Detection sources: no background, "
        "e.g. cocci,bacilli (default: the source's names).",
        metavar="A,B,C",
    ),
    images: Path | None = typer.Option(
        None,
        "--images",
        help="Image folder of a folder of masks; for a manifest CSV, the folder its paths "
        "start from; for COCO boxes, the folder file_names start from.",
        metavar="DIR",
    ),
    img_suffix: str | None = typer.Option(
        None, "--img-suffix", help="Image file ending, e.g. .jpg (default: any image)."
    ),
    mask_suffix: str = typer.Option(".png", "--mask-suffix", help="Mask file ending."),
    ignore_index: int | None = typer.Option(
        None, "--ignore-index", help="Mask value left out of COCO or boxes (e.g. 255)."
    ),
    on_bad_label: str = typer.Option(
        "error",
        "--on-bad-label",
        help="Detection sources: 'error' stops at a bad label naming file:line, 'skip' "
        "drops it with one warning.",
    ),
    link: bool = typer.Option(
        False, "--link", help="Detection targets: hard-link the images instead of copying."
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
      --from yolo|voc|coco --to yolo|voc|coco
                              Detection boxes. SRC: a YOLO root (data.yaml, images/ +
                              labels/), a VOC root (Annotations/ + JPEGImages/) or COCO
                              JSON (a file or annotations_<split>.json files). DST: a
                              complete dataset with its images, splits kept. Exact to
                              1e-6 pixels.
      --from masks --to yolo|voc
                              One box per connected region of each class; the masks'
                              background (class 0) is no detection class, so mask
                              class k becomes box class k - 1.
    """
    from mediscope.data.convert import ConvertOptions, convert

    if encoding not in ENCODINGS:
        raise ConfigError(
            f"unknown encoding '{encoding}'", where="--encoding", hint="rle or polygon"
        )
    if on_bad_label not in ON_BAD_LABEL:
        raise ConfigError(
            f"unknown value '{on_bad_label}'", where="--on-bad-label", hint="error or skip"
        )
    options = ConvertOptions(
        classes=[c.strip() for c in classes.split(",")] if classes is not None else None,
        encoding="rle" if encoding == "rle" else "polygon",
        images=images,
        img_suffix=img_suffix,
        mask_suffix=mask_suffix,
        ignore_index=ignore_index,
        overwrite=overwrite,
        on_bad_label="skip" if on_bad_label == "skip" else "error",
        link=link,
    )
    result = convert(source, target, src, dst, options)
    console = Console(highlight=False)
    for line in result.lines:
        console.print(line, soft_wrap=True)
