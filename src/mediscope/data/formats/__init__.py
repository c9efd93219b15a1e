"""Dataset formats by name: ``mediscope list formats``.

A format is a reader ``read(path, *, classes, task) -> SampleSet``.
"""

from __future__ import annotations

from mediscope.data.formats import imagefolder
from mediscope.registry import FORMATS

FORMATS.register(
    "imagefolder",
    imagefolder.read_imagefolder,
    description="one folder per class: ROOT/<class>/<image>",
    tasks=("classification",),
)

__all__ = ["imagefolder"]
