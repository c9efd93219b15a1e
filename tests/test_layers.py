"""Layers point one way: config -> data / models / losses / metrics -> tasks -> engine ->
inference -> reports -> evaluation / api -> study -> cli, and no package imports
another that imports it back. The check itself is ``tools/layers.py`` (runnable alone).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).parents[1]


def layers_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("layers_tool", ROOT / "tools" / "layers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["layers_tool"] = module
    spec.loader.exec_module(module)
    return module


def test_no_import_points_up_a_layer() -> None:
    tool = layers_tool()
    graph = tool.import_graph(ROOT / "src")
    upward = [
        f"{module}:{line} imports {target}"
        for module, target, line in tool.upward_imports(graph)
        if (module, target) not in tool.ALLOWED
    ]
    assert upward == []


def test_every_allowed_exception_has_a_reason_and_still_exists() -> None:
    tool = layers_tool()
    graph = tool.import_graph(ROOT / "src")
    found = {(module, target) for module, target, _ in tool.upward_imports(graph)}
    for pair, reason in tool.ALLOWED.items():
        assert reason.strip(), pair
        assert pair in found, f"{pair} is allowed but no longer imported: remove it"


def test_no_package_imports_one_that_imports_it_back() -> None:
    tool = layers_tool()
    assert tool.package_cycles(tool.import_graph(ROOT / "src", type_only=False)) == []


def test_every_package_is_in_a_layer() -> None:
    tool = layers_tool()
    for module in tool.import_graph(ROOT / "src"):
        tool.layer_of(module)  # raises for a package missing from LAYERS


def test_the_check_finds_an_upward_import(tmp_path: Path) -> None:
    tool = layers_tool()
    package = tmp_path / "mediscope"
    (package / "data").mkdir(parents=True)
    (package / "engine").mkdir()
    (package / "__init__.py").write_text("")
    (package / "engine" / "__init__.py").write_text("from mediscope.data import thing\n")
    (package / "data" / "__init__.py").write_text("def f():\n    from mediscope.engine import x\n")
    graph = tool.import_graph(tmp_path)
    assert tool.upward_imports(graph) == [("mediscope.data", "mediscope.engine", 2)]
    assert tool.package_cycles(graph) == [["mediscope.data", "mediscope.engine"]]
