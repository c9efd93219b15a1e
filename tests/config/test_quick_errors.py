"""A config's schema mistake is told before torch and Lightning load (about 0.5 s
instead of 8): ``fit``, ``compare`` and ``slurm`` read the config first, and
:mod:`mediscope.tasks` loads its registry on first use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import mediscope

SRC = Path(mediscope.__file__).resolve().parents[1]

#: Runs the command line in-process, then says which heavy modules it had imported.
SCRIPT = """
import sys
from mediscope.cli.main import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "lightning", "torchvision") if m in sys.modules)
print("exit", code, "heavy", ",".join(heavy) or "none")
"""


@pytest.mark.parametrize("command", ["fit", "compare", "slurm"])
def test_a_schema_mistake_is_told_without_loading_torch(tmp_path: Path, command: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("task: classification\ndata: {path: nowhere}\nmodle: {name: resnet18}\n")
    args = [command, str(config)]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.stdout.strip().splitlines()[-1] == "exit 2 heavy none", done.stderr
    error = done.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"error: {config}:3: modle: unknown key")


def test_the_tasks_load_on_first_use() -> None:
    code = (
        "import sys, mediscope.tasks as t, mediscope.tasks.validate\n"
        "assert 'torch' not in sys.modules\n"
        "assert t.TASKS.names()[0] == 'classification' and 'torch' in sys.modules\n"
        "assert t.__dict__['TASKS'] is t.TASKS  # cached: monkeypatch sees a plain attribute\n"
        "try:\n    t.nothing\nexcept AttributeError as e:\n    print(e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "module 'mediscope.tasks' has no attribute 'nothing'"
