"""The one way mediscope reads YAML: safe tags only, and bounded.

Every YAML document the project reads (configs, ``--set`` and ``--grid`` values, a YOLO
``data.yaml``, a run folder's ``config.yaml``) goes through :func:`parse_yaml`, which
refuses, with the line at fault:

- a document larger than :data:`MAX_BYTES`;
- nesting deeper than :data:`MAX_DEPTH` levels;
- aliases (``*name``) that expand to more than :data:`MAX_NODES` nodes in all (a
  "billion laughs" alias bomb of a few hundred bytes would otherwise expand to
  hundreds of millions of values), and an alias inside the node it names;
- a mapping key given twice (YAML would silently keep the last one, dropping, say, a
  whole ``data:`` section).

:func:`yaml_problem` turns any error of the YAML reader into ``(where, message, hint)``
for a one-line :class:`~mediscope.errors.MediscopeError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mediscope.errors import MediscopeError
from mediscope.files import read_text_file

#: The largest YAML document read (bytes of UTF-8).
MAX_BYTES = 1_000_000
#: The deepest nesting of lists and mappings.
MAX_DEPTH = 64
#: The most nodes a document may hold once its aliases are expanded.
MAX_NODES = 100_000

_MERGE = "tag:yaml.org,2002:merge"


class YamlLimitError(yaml.MarkedYAMLError):
    """A document over a limit, or with a repeated key: ``problem`` says which, ``hint``
    what to do, ``problem_mark`` where."""

    def __init__(self, problem: str, mark: yaml.Mark | None, hint: str):
        super().__init__(problem=problem, problem_mark=mark)
        self.hint = hint


class BoundedLoader(yaml.SafeLoader):
    """A :class:`yaml.SafeLoader` that counts nodes (aliases expanded), nesting depth and
    repeated keys while it composes, and stops at the first limit hit."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._nodes = 0
        self._depth = 0
        self._keys: list[str] = []  # the key path to the node being composed
        self._sizes: dict[int, int] = {}  # id(node) -> nodes once expanded (done nodes)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """Composes one node, counting it (an alias counts its whole target)."""
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:  # an unknown alias: PyYAML's own error
                size = self._sizes.get(id(target))
                if size is None:
                    raise YamlLimitError(
                        f"the alias *{event.anchor} lies inside the node it names (a loop)",
                        event.start_mark,
                        "write the value out instead of the alias",
                    )
                self._count(size, event.start_mark)
            return super().compose_node(parent, index)
        key = str(index.value) if isinstance(index, yaml.ScalarNode) else None
        if isinstance(index, int):
            key = str(index)
        if key is not None:
            self._keys.append(key)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlLimitError(
                f"nested deeper than {MAX_DEPTH} levels",
                self.peek_event().start_mark,
                "use fewer levels of lists and mappings",
            )
        node = super().compose_node(parent, index)
        if isinstance(node, yaml.MappingNode):
            self._check_keys(node)  # while self._keys is the path to this mapping
        self._depth -= 1
        if key is not None:
            self._keys.pop()
        if node is None:
            return None
        self._count(1, node.start_mark)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        self._sizes[id(node)] = 1 + sum(self._sizes.get(id(c), 1) for c in children)
        return node

    def _count(self, nodes: int, mark: yaml.Mark) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            raise YamlLimitError(
                f"the document expands to more than {MAX_NODES} values (aliases "
                "expanded); its aliases (*name) repeat too much",
                mark,
                "write the values out, or use fewer aliases",
            )

    def _check_keys(self, node: yaml.MappingNode) -> None:
        seen: dict[tuple[str, str], yaml.Mark] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE:
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                dotted = ".".join([*self._keys, str(key_node.value)])
                raise YamlLimitError(
                    f"{dotted}: the key repeats (first at line {seen[key].line + 1})",
                    key_node.start_mark,
                    "keep one of them: YAML would silently use the last",
                )
            seen[key] = key_node.start_mark


def parse_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """Reads one YAML document within the limits.

    Returns:
        The data (None for an empty document) and its node tree (for line numbers).

    Raises:
        yaml.YAMLError: invalid YAML, or :class:`YamlLimitError` for a document over a
            limit or with a repeated key (see :func:`yaml_problem`).
    """
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_BYTES:
        raise YamlLimitError(
            f"the file is larger than {MAX_BYTES // 1_000_000} MB ({size:,} bytes)",
            None,
            "is it the right file? a YAML config or data.yaml is a few KB",
        )
    loader = BoundedLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except RecursionError:
        raise YamlLimitError("nested too deeply", None, "check brackets and indentation") from None
    finally:
        loader.dispose()
    return data, node


def load_yaml(text: str) -> Any:
    """The data of :func:`parse_yaml` alone (a ``yaml.safe_load`` within the limits)."""
    return parse_yaml(text)[0]


def yaml_problem(exc: yaml.YAMLError, name: str) -> tuple[str, str, str]:
    """``(where, message, hint)`` of a YAML error, each on one line: the file and line of
    the problem, what it is (``invalid YAML: ...``, with the line a bracket or quote was
    opened on, or the limit hit) and what usually fixes it."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{name}:{mark.line + 1}" if mark is not None else name
    if isinstance(exc, YamlLimitError):
        return where, str(exc.problem), exc.hint
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or ["?"])[0]
    problem = " ".join(str(problem).split())
    context = getattr(exc, "context", None) or ""
    start = getattr(exc, "context_mark", None)
    if context and start is not None and mark is not None and start.line != mark.line:
        problem += f" ({context.removeprefix('while ')} started on line {start.line + 1})"
    if "'\\t'" in problem:
        hint = "indent with spaces: YAML does not allow tabs"
    elif isinstance(exc, yaml.reader.ReaderError):
        hint = "save it as plain UTF-8 text, without control characters"
    elif "flow" in context or "quoted" in context:
        hint = "close the bracket, brace or quote opened there"
    else:
        hint = "check indentation and colons"
    return where, f"invalid YAML: {problem}", hint


def read_yaml_file(
    path: str | Path, *, error: type[MediscopeError], what: str = "YAML file"
) -> tuple[Any, yaml.Node | None]:
    """Reads a YAML file within the limits (a regular file of at most :data:`MAX_BYTES`).

    Args:
        path: The file.
        error: The error class to raise (``ConfigError``, ``DataError``, ...).
        what: How errors name the file.

    Returns:
        The data and its node tree, as :func:`parse_yaml`.

    Raises:
        MediscopeError: ``error``, naming the file and line: a missing, special (device,
            FIFO) or too large file, invalid YAML, a limit hit or a repeated key.
    """
    text = read_text_file(path, limit=MAX_BYTES, what=what, error=error)
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        where, message, hint = yaml_problem(exc, str(path))
        raise error(message, where=where, hint=hint) from None
