"""``mediscope data synth ...``: realistic synthetic datasets."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(
    help="Make datasets: synthetic generators.",
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
