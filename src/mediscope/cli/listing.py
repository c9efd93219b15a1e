"""``mediscope list models|losses|formats|optimizers|schedulers``."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from mediscope.errors import UnknownNameError
from mediscope.registry import REGISTRIES, unknown_name_hint


def list_command(
    kind: str = typer.Argument(
        ..., help="models, losses, formats, optimizers or schedulers", metavar="KIND"
    ),
) -> None:
    """List what can be named in a config."""
    if kind not in REGISTRIES:
        raise UnknownNameError(
            f"cannot list '{kind}'", hint=unknown_name_hint(kind, list(REGISTRIES))
        )
    registry = REGISTRIES[kind]
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("name")
    table.add_column("task" if kind in ("models", "losses", "formats") else "")
    table.add_column("description")
    for entry in registry.entries():
        tasks = entry.tags.get("task") or ", ".join(entry.tags.get("tasks", ()))
        table.add_row(entry.name, tasks, entry.description)
    console = Console(width=120)
    console.print(table)
    if kind == "models":
        console.print("\nAny timm classifier also works as timm:<name>, e.g. timm:convnext_nano.")
        console.print(
            "Any segmentation_models_pytorch architecture works as smp:<Arch> with "
            "model.encoder, e.g. smp:Unet with resnet34."
        )
    if kind == "schedulers":
        console.print(
            "\nAny scheduler can start with a linear warm-up: scheduler.warmup_epochs: N."
        )
