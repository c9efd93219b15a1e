"""Prediction output folders that a bad input leaves as they were.

``mediscope predict`` writes a file or two per image (masks, overlays, probability
maps). They go to a hidden staging folder beside the output first and move into it
only once every image is done, so that an unreadable image in the middle of the inputs
leaves no half-written output behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mediscope.files import replace_dir


@contextmanager
def staged_output(output: Path, *, replace: Sequence[str] = ()) -> Iterator[Path]:
    """Yields an empty hidden folder beside ``output``; on success its files move into
    ``output`` (created when missing; files of the same name replaced, other files
    kept), on failure it is removed and ``output`` is untouched.

    Args:
        output: The output folder.
        replace: Sub-folders that replace their namesakes in ``output`` as a whole
            (YOLO ``labels/``: a label file left from an earlier run would be wrong).
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    try:
        yield staging
        output.mkdir(exist_ok=True)
        for name in replace:
            if (staging / name).is_dir():
                replace_dir(staging / name, output / name)
        for file in sorted(staging.rglob("*")):
            if file.is_file():
                target = output / file.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(file, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
