"""Atomic file writes: write to a temporary name beside the target, then rename.

A reader (or a crash) never sees a half-written config, metrics file or checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside ``target``; renames it to ``target`` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(target: str | Path, text: str) -> Path:
    """Writes ``text`` to ``target`` atomically (UTF-8)."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_json_atomic(target: str | Path, data: Any) -> Path:
    """Writes ``data`` as indented JSON to ``target`` atomically; NaN becomes null."""
    return write_text_atomic(target, json.dumps(_finite(data), indent=2) + "\n")


def write_with(target: str | Path, writer: Callable[[Path], Any]) -> Path:
    """Calls ``writer(tmp_path)`` and renames the result to ``target``."""
    with atomic_path(target) as tmp:
        writer(tmp)
    return Path(target)


def _finite(data: Any) -> Any:
    if isinstance(data, float) and data != data:  # NaN is not valid JSON
        return None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data
