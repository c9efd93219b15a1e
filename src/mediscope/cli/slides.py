"""Whole slides on the command line: ``mediscope predict`` hands slide inputs here."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from mediscope.errors import ConfigError


def slide_inputs(inputs: list[Path]) -> list[Path]:
    """The inputs that are whole slides; all or none of them may be.

    Raises:
        ConfigError: when slides and other inputs are mixed.
    """
    from mediscope.slides.reader import is_slide

    slides = [path for path in inputs if is_slide(path)]
    if slides and len(slides) != len(inputs):
        other = next(path for path in inputs if path not in slides)
        raise ConfigError(
            "slides and images in one prediction",
            where=str(other),
            hint="predict the slides and the other inputs in two runs",
        )
    return slides


def predict_slides(
    source: Path,
    slides: list[Path],
    output: Path,
    *,
    checkpoint: Path | None,
    overrides: list[str],
) -> None:
    """Predicts each slide into ``output/<slide name>/`` and prints one line per slide."""
    import mediscope
    from mediscope.slides.predict import predict_slide, summary_line

    if output.suffix.lower() in (".csv", ".json"):
        raise ConfigError(
            "slide prediction writes a folder per slide",
            where="--output",
            hint="give a folder, e.g. --output out/",
        )
    predictor = mediscope.load(source, checkpoint=checkpoint, overrides=overrides or None)
    console = Console(highlight=False)
    for slide in slides:
        done = predict_slide(predictor, slide, output / slide.stem)
        console.print(summary_line(done), soft_wrap=True)
        console.print(f"outputs: {done.folder}", markup=False, soft_wrap=True)


def slide_sources(src: Path, *, wanted: bool) -> list[Path]:
    """The slides ``mediscope data tile`` cuts: ``src`` when it is a slide, or the slides
    in the folder ``src`` when slide options were given (``wanted``)."""
    from mediscope.slides.reader import is_slide

    if src.is_file():
        return [src] if is_slide(src) else []
    if wanted and src.is_dir():
        found = sorted(path for path in src.iterdir() if path.is_file() and is_slide(path))
        if not found:
            raise ConfigError(
                "no slides (.svs, .ndpi, pyramidal .tif, ...) in the folder", where=str(src)
            )
        return found
    return []


def tile_slides_command(
    slides: list[Path],
    dst: Path,
    *,
    size: int,
    overlap: float,
    mpp: float | None,
    level: int | None,
    min_tissue: float,
    annotations: Path | None,
    overwrite: bool,
) -> None:
    """Cuts slides into patches (all written, or none) and prints what was made."""
    from mediscope.files import staged_dir
    from mediscope.slides.patches import tile_slides

    stride = max(1, round(size * (1 - overlap)))
    with staged_dir(dst, overwrite=overwrite) as tmp:
        summary = tile_slides(
            slides,
            tmp,
            size=size,
            mpp=mpp,
            level=level,
            stride=stride,
            min_tissue=min_tissue,
            annotations=annotations,
            progress=True,
        )
    console = Console(highlight=False)
    per_folder = ", ".join(f"{name} {n}" for name, n in sorted(summary.classes.items()))
    console.print(f"{summary.slides} slides -> {summary.patches} patches ({per_folder})")
    if summary.skipped:
        console.print(f"tissue patches outside the annotated regions: {summary.skipped}")
    console.print(f"data: {dst}", markup=False, soft_wrap=True)
