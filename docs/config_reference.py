"""The configuration reference, generated from the config schema.

Every key's type, default and description comes from the pydantic models in
``mediscope.config.schema``, so the reference page cannot drift from the schema.
``docs/hooks.py`` puts the tables into ``configuration.md`` at build time, and
``tests/config/test_schema_docs.py`` walks the same fields to check that each one has a
description.
"""

from __future__ import annotations

import enum
import inspect
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

MARKER = "<!-- config-reference -->"


def nested_models(annotation: Any) -> list[type[BaseModel]]:
    """Returns the pydantic models an annotation holds (itself, or inside a union)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        for arg in typing.get_args(annotation):
            found.extend(nested_models(arg))
    return found


def sections(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, type[BaseModel]]]:
    """Yields ``(dotted prefix, model)`` for ``model`` and every model reachable from it.

    The top level has the prefix ``""``; ``data.split`` is ``("data.split", SplitConfig)``.
    """
    yield prefix, model
    for name, field in model.model_fields.items():
        for sub in nested_models(field.annotation):
            yield from sections(sub, f"{prefix}.{name}" if prefix else name)


def fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """Yields ``(dotted key, field)`` for every field of every model reachable from ``model``."""
    for section, sub in sections(model, prefix):
        for name, field in sub.model_fields.items():
            yield (f"{section}.{name}" if section else name), field


def type_text(annotation: Any) -> str:
    """A short, readable form of a field's type: ``int``, ``auto | min | max``, ..."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "none"
    if origin is typing.Literal:
        return " | ".join(str(arg).lower() if isinstance(arg, bool) else str(arg) for arg in args)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(type_text(arg) for arg in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_text(arg) for arg in args)}]"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def default_text(field: FieldInfo) -> str:
    """The default as a config would write it, ``required`` when there is none."""
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{_yaml(value)}`"


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, enum.Enum):
        return _yaml(value.value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_yaml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_yaml(item)}" for key, item in value.items()) + "}"
    return str(value)


def escape(text: str) -> str:
    """Text safe in a markdown table cell: ``<class>``, ``_mask.png`` and ``|`` stay literal."""
    for char in "\\`*_|":
        text = text.replace(char, "\\" + char)
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def anchor(key: str) -> str:
    """The id MkDocs gives the heading of section ``key``: ``data.split`` -> ``datasplit``."""
    return re.sub(r"[^\w-]", "", key).lower()


def table_markdown(prefix: str, model: type[BaseModel]) -> str:
    """A table of a model's keys (dotted below ``prefix``): type, default, description."""
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        kind = escape(type_text(field.annotation))
        if nested_models(field.annotation):
            # "section" links to the section's own table below.
            kind = kind.replace("section", f"[section](#{anchor(key)})")
        lines.append(
            f"| `{key}` | {kind} | {default_text(field)} | {escape(field.description or '')} |"
        )
    return "\n".join(lines) + "\n"


def reference_markdown(config: type[BaseModel]) -> str:
    """The whole reference: the top-level keys, then a heading and a table per section."""
    parts = []
    for key, model in sections(config):
        heading = f"### `{key}`" if key else "### Top level"
        doc = inspect.cleandoc(model.__doc__ or "") if key else ""
        blocks = (heading, doc, table_markdown(key, model))
        parts.append("\n\n".join(block for block in blocks if block))
    return "\n".join(parts)
