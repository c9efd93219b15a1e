"""Shared fixtures: tiny generated datasets, config writing, in-process CLI runs."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download
if os.environ.get("PYTEST_XDIST_WORKER"):
    # ``make test`` runs one worker per core: each computes on one thread (and so do the
    # processes it starts), so that two workers do not fight over the same cores.
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")


@pytest.fixture(scope="session")
def tiny_crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Gram-crops imagefolder dataset (train/ and test/), 32 px."""
    from mediscope.data.synthetic.gram_crops import generate_gram_crops

    root = tmp_path_factory.mktemp("data") / "gram-crops"
    generate_gram_crops(root, per_class=16, test_per_class=6, size=32, seed=1)
    return root


@pytest.fixture(scope="session")
def tiny_lesions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic lesion dataset in MMSeg layout (img/, labels/), 32 px."""
    from mediscope.data.synthetic.lesions import generate_lesions

    root = tmp_path_factory.mktemp("data") / "lesions"
    generate_lesions(root, train=12, val=4, test=4, size=32, seed=1)
    return root


@pytest.fixture(scope="session")
def tiny_smears(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small synthetic Gram-stained smears in YOLO layout (train, test, 1 large), 128 px.

    Whole small smears, not fields of a large one: 16 fields may miss a class altogether
    (many are nearly empty), and the tests of formats and checks want every class.
    """
    from mediscope.data.synthetic.gram_stain import generate_gram_stain

    root = tmp_path_factory.mktemp("data") / "smears"
    generate_gram_stain(
        root, count=16, test_count=4, size=128, seed=2, large=(600, 450), large_count=1,
        fields=False,
    )  # fmt: skip
    return root


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Writes a config dict (or YAML text) to a file in ``tmp_path``; returns its path."""
    counter = iter(range(1000))

    def write(content: dict[str, Any] | str, name: str | None = None) -> Path:
        path = tmp_path / (name or f"config{next(counter)}.yaml")
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Runs ``mediscope ARGS`` in-process; returns exit code, stdout and stderr."""
    from mediscope.cli.main import main

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def trained_runs(
    tiny_crops: Path,
    tiny_lesions: Path,
    tiny_smears: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    """One tiny run per task (1 epoch): task name -> run folder."""
    from helpers import tiny_config, tiny_detection_config, tiny_segmentation_config
    from mediscope.api import fit
    from mediscope.tasks.validate import config_from_dict

    runs = tmp_path_factory.mktemp("trained-runs")
    # without test metrics: the tests that need them measure them on copies
    trainer = {"max_epochs": 1, "test_after_fit": False}
    raw = {
        "classification": tiny_config(tiny_crops, runs, trainer=trainer),
        "segmentation": tiny_segmentation_config(tiny_lesions, runs, trainer=trainer),
        "detection": tiny_detection_config(tiny_smears, runs, trainer=trainer),
    }
    return {task: fit(config_from_dict(cfg)).run_dir for task, cfg in raw.items()}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files with slow tests first, the learning and demo tests (at the top of
    ``tests/``, the longest) before the others, each file's tests in their own order.

    With one worker per core (``make test``: ``--dist loadfile --no-loadscope-reorder``
    hands out whole files in this order) the longest files start at once and the quick
    ones fill in around them, instead of a learning test starting last.
    """
    top = Path(__file__).parent
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:
        if item.path not in slow_files:
            return 2
        return 0 if item.path.parent == top else 1

    items.sort(key=rank)
