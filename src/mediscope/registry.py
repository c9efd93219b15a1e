"""One small registry class, and the registries of mediscope.

A registry maps names to objects (model builders, loss classes, optimizers, ...).
Registration is explicit; a duplicate name is refused; an unknown name fails with
the list of valid names and a "did you mean".

Example:
    >>> from mediscope.registry import LOSSES
    >>> "CrossEntropyLoss" in LOSSES.names()
    True
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from mediscope.errors import UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with its name, a one-line description and free tags."""

    name: str
    obj: T
    description: str = ""
    tags: dict[str, Any] = field(default_factory=dict)


def did_you_mean(name: str, choices: list[str]) -> str | None:
    """Returns the closest of ``choices`` to ``name`` (case-insensitive), or None."""
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def unknown_name_hint(name: str, choices: list[str], *, limit: int = 40) -> str:
    """Builds "did you mean 'x'? valid: a, b, c" for an unknown ``name``."""
    guess = did_you_mean(name, choices)
    shown = ", ".join(choices[:limit]) + (", ..." if len(choices) > limit else "")
    prefix = f"did you mean '{guess}'? " if guess else ""
    return f"{prefix}valid: {shown}"


class Registry(Generic[T]):
    """Name → object map for one kind of thing.

    Args:
        kind: What is registered, used in messages ("model", "loss", ...).
        populate: Modules imported on first use; they register the built-in entries.
    """

    def __init__(self, kind: str, *, populate: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._populate = populate
        self._populated = not populate

    def _ensure_populated(self) -> None:
        if not self._populated:
            self._populated = True
            for module in self._populate:
                importlib.import_module(module)

    def register(
        self, name: str, obj: T | None = None, *, description: str = "", **tags: Any
    ) -> Any:
        """Registers ``obj`` under ``name``; without ``obj`` returns a decorator."""

        def add(target: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            doc = description or _first_doc_line(target)
            self._entries[name] = Entry(name, target, doc, dict(tags))
            return target

        return add(obj) if obj is not None else add

    def unregister(self, name: str) -> None:
        """Removes ``name`` (a plugin unloading, a test cleaning up); unknown: an error."""
        self._ensure_populated()
        if name not in self._entries:
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'", hint=unknown_name_hint(name, self.names())
            )
        del self._entries[name]

    def entry(self, name: str) -> Entry[T]:
        """Returns the entry of ``name``; raises UnknownNameError listing valid names."""
        self._ensure_populated()
        if name not in self._entries:
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'", hint=unknown_name_hint(name, self.names())
            )
        return self._entries[name]

    def get(self, name: str) -> T:
        """Returns the object registered as ``name``."""
        return self.entry(name).obj

    def names(self) -> list[str]:
        """All registered names, in registration order."""
        self._ensure_populated()
        return list(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        """All entries, in registration order."""
        self._ensure_populated()
        return iter(list(self._entries.values()))

    def __contains__(self, name: object) -> bool:
        self._ensure_populated()
        return name in self._entries

    def __len__(self) -> int:
        self._ensure_populated()
        return len(self._entries)


def _first_doc_line(obj: object) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


ModelBuilder = Callable[..., Any]

MODELS: Registry[ModelBuilder] = Registry("model", populate=("mediscope.models",))
LOSSES: Registry[type] = Registry("loss", populate=("mediscope.losses",))
OPTIMIZERS: Registry[type] = Registry("optimizer", populate=("mediscope.optim",))
SCHEDULERS: Registry[Any] = Registry("scheduler", populate=("mediscope.optim",))
FORMATS: Registry[Any] = Registry("data format", populate=("mediscope.data.formats",))

REGISTRIES: dict[str, Registry[Any]] = {
    "models": MODELS,
    "losses": LOSSES,
    "optimizers": OPTIMIZERS,
    "schedulers": SCHEDULERS,
    "formats": FORMATS,
}
