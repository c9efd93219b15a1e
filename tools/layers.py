"""Prints how the layers of ``src/mediscope`` import each other.

Usage: ``python tools/layers.py [SRC]``. Lists every import that points up a layer
(see ``LAYERS``) and every cycle of run-time imports between packages (``a.b`` level),
and exits 1 when there is an upward import not listed in ``ALLOWED`` or a cycle.
``tests/test_layers.py`` runs the same checks.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

#: Lower layers first; a module may import its own layer and the layers below it.
LAYERS: tuple[tuple[str, ...], ...] = (
    # The package root only maps public names to modules, imported lazily.
    ("", "errors", "files", "yamlsafe", "registry", "params"),
    ("config",),
    ("data", "models", "losses", "metrics", "optim", "runtime", "slides"),
    ("tasks",),
    ("engine",),
    ("inference",),
    ("reports",),
    ("evaluation", "api", "export"),
    ("study",),
    ("cli", "demo", "serve", "__main__"),
)

#: Upward imports with a reason each: (importing module, imported module) -> why.
ALLOWED: dict[tuple[str, str], str] = {}


def layer_of(module: str) -> int:
    """The layer index of ``mediscope.<part>...`` (by its first part)."""
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else ""
    for index, names in enumerate(LAYERS):
        if head in names:
            return index
    raise KeyError(f"{module}: not in any layer; add its package to LAYERS")


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _type_only_lines(tree: ast.Module) -> set[int]:
    """Lines of the ``if TYPE_CHECKING:`` blocks (imports for annotations only)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, module: str) -> Iterator[tuple[str, int, bool]]:
    """``mediscope`` modules imported by ``path`` (module-level and inside functions), as
    (module, line, whether the import is for type annotations only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = _type_only_lines(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mediscope"):
                    yield alias.name, node.lineno, node.lineno in type_only
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("mediscope"):
                yield target, node.lineno, node.lineno in type_only


def import_graph(src: Path, *, type_only: bool = True) -> dict[str, dict[str, int]]:
    """Module -> {imported module: first line}; ``type_only``: with the imports made for
    annotations only (they point a way too, but cannot make a cycle at run time)."""
    root = src / "mediscope"
    graph: dict[str, dict[str, int]] = {}
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, src)
        edges = graph.setdefault(module, {})
        for target, line, for_types in imports_of(path, module):
            if type_only or not for_types:
                edges.setdefault(target, line)
    return graph


def upward_imports(graph: dict[str, dict[str, int]]) -> list[tuple[str, str, int]]:
    """Imports from a lower layer to a higher one, as (module, imported, line)."""
    found = []
    for module, edges in graph.items():
        for target, line in edges.items():
            if layer_of(target) > layer_of(module):
                found.append((module, target, line))
    return sorted(found)


def package_cycles(graph: dict[str, dict[str, int]], depth: int = 2) -> list[list[str]]:
    """Cycles between packages (``mediscope.<a>.<b>`` cut to ``depth`` parts)."""
    cut = lambda name: ".".join(name.split(".")[: depth + 1])  # noqa: E731
    edges: dict[str, set[str]] = {}
    for module, targets in graph.items():
        for target in targets:
            a, b = cut(module), cut(target)
            if a != b and not b.startswith(a + ".") and not a.startswith(b + "."):
                edges.setdefault(a, set()).add(b)
    # Tarjan's strongly connected components.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(components)


def main() -> int:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "src"
    graph = import_graph(src)
    upward = upward_imports(graph)
    bad = [u for u in upward if (u[0], u[1]) not in ALLOWED]
    names = " -> ".join("/".join(layer) for layer in LAYERS)
    print(f"layers: {names}")
    print(f"{len(graph)} modules, {sum(len(e) for e in graph.values())} imports of mediscope")
    print(f"upward imports: {len(upward)} ({len(upward) - len(bad)} allowed)")
    for module, target, line in upward:
        reason = ALLOWED.get((module, target))
        print(f"  {module}:{line} -> {target}" + (f"  (allowed: {reason})" if reason else ""))
    cycles = package_cycles(import_graph(src, type_only=False))
    print(f"package cycles: {len(cycles)}")
    for cycle in cycles:
        print("  " + " <-> ".join(cycle))
    return 1 if bad or cycles else 0


if __name__ == "__main__":
    raise SystemExit(main())
