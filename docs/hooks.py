"""MkDocs hooks: the configuration reference is generated from the schema at build time."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
SRC = DOCS.parent / "src"


def _reference() -> tuple[str, str]:
    # The checkout's own sources, not whichever mediscope the environment installed.
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    spec = importlib.util.spec_from_file_location("config_reference", DOCS / "config_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from mediscope.config.schema import Config

    return str(module.MARKER), str(module.reference_markdown(Config))


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Replaces the marker of ``configuration.md`` with the tables of every config key."""
    if "<!-- config-reference -->" not in markdown:
        return markdown
    marker, reference = _reference()
    return markdown.replace(marker, reference)
