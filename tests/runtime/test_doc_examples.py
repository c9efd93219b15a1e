"""The examples of "Use a trained model" (docs and README) run, on a real run folder,
and the docstring examples of the runtime modules pass as doctests."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import numpy as np
import pytest

import mediscope
from mediscope.runtime import info, inputs, pipeline, results

ROOT = Path(__file__).resolve().parents[2]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("page", ["docs/deploy.md", "README.md"])
def test_the_python_examples_run(
    page: str, trained_runs: dict[str, Path], tiny_smears: Path, monkeypatch, tmp_path: Path
) -> None:
    smear = sorted((tiny_smears / "images" / "test").glob("*.png"))[0]
    (tmp_path / "smear.png").write_bytes(smear.read_bytes())
    monkeypatch.chdir(tmp_path)
    blocks = [b for b in _python_blocks(ROOT / page) if "mediscope.load(" in b]
    assert blocks, f"{page} has no example of mediscope.load"
    for block in blocks:
        # the example's run folder is the tiny detection run
        code = re.sub(r'load\("runs/[^"]*"\)', "load(RUN)", block)
        namespace = {"RUN": trained_runs["detection"]}
        exec(compile(code, page, "exec"), namespace)
        assert isinstance(namespace["result"], mediscope.DetectionResult)
        if "overlay" in namespace:
            assert np.asarray(namespace["overlay"]).shape[2] == 3


@pytest.mark.parametrize("module", [info, inputs, pipeline, results])
def test_docstring_examples(module: object) -> None:
    failed, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert tried > 0 and failed == 0
