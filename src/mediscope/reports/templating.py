"""The jinja2 environment of the HTML pages (``report.html``, ``check.html``).

The templates live in ``mediscope/reports/templates``; Python code gives them plain
data (strings, numbers, lists, the dataclasses below) and they hold all the markup.
Autoescaping is on: every value is escaped, so class and file names are shown as
written, whatever characters they hold.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined


@dataclass(frozen=True)
class Figure:
    """A picture with its caption.

    Attributes:
        src: The image as a ``data:`` URI; None when it could not be drawn (the
            caption then says why).
        caption: The text under the picture.
        alt: The image's alternative text (default: the caption).
        title: The caption's tooltip, if any.
    """

    src: str | None
    caption: str
    alt: str | None = None
    title: str | None = None


@cache
def environment() -> Environment:
    """The environment of the report templates, built once."""
    return Environment(
        loader=PackageLoader("mediscope.reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **context: Any) -> str:
    """The text of ``template`` (a file name in ``templates/``) filled with ``context``."""
    return environment().get_template(template).render(**context)


def data_uri(data: bytes, mime: str = "image/png") -> str:
    """``data`` as a base64 ``data:`` URI, to inline a picture in a page."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def file_uri(path: Path) -> str:
    """A PNG or JPEG file as a ``data:`` URI (no file beside the page)."""
    mime = "image/jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "image/png"
    return data_uri(path.read_bytes(), mime)
