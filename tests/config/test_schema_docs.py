"""Every config key is documented, and the documentation site builds.

The configuration reference (docs/configuration.md) is generated from the schema's field
descriptions, so a field without one would be a key without documentation.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel, Field

from mediscope.config.schema import Config

ROOT = Path(__file__).resolve().parents[2]


def _reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "config_reference", ROOT / "docs" / "config_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def undocumented(model: type[BaseModel]) -> list[str]:
    """The dotted keys of the fields reachable from ``model`` without a description."""
    return [
        key for key, field in _reference().fields(model) if not (field.description or "").strip()
    ]


def test_every_config_key_has_a_description() -> None:
    missing = undocumented(Config)
    assert not missing, f"config keys without a description: {', '.join(missing)}"


def test_the_walk_reaches_nested_sections() -> None:
    keys = {key for key, _ in _reference().fields(Config)}
    assert {"task", "data.crop_size", "data.split.val_fraction", "data.normalize.mean"} <= keys
    assert {"trainer.early_stopping.patience", "logging.mlflow_uri", "run.dir"} <= keys


def test_a_field_without_description_is_named_by_its_dotted_key() -> None:
    class Inner(BaseModel):
        size: int = Field(3, description="")
        kept: int = Field(1, description="documented")

    class Outer(BaseModel):
        inner: Inner | None = Field(None, description="a section")
        name: str = "x"

    assert sorted(undocumented(Outer)) == ["inner.size", "name"]


def test_the_reference_page_lists_every_key() -> None:
    reference = _reference()
    text = reference.reference_markdown(Config)
    for key, field in reference.fields(Config):
        assert f"`{key}`" in text, key
        assert reference.escape(field.description or "") in text, key
    assert "| `data.image_size` | tuple[int, int] | `[224, 224]` |" in text
    assert "| `data.path` | path | required |" in text


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed (pip install -e '.[docs]')",
)
def test_the_docs_build_strict(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    page = (tmp_path / "site" / "configuration" / "index.html").read_text(encoding="utf-8")
    assert "<!-- config-reference -->" not in page
    assert "data.crop_size" in page
