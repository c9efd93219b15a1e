"""Checkpoints and weights files load with ``weights_only=True``: a file carrying pickled
code is refused with one line naming it, and the code never runs."""

from __future__ import annotations

import pathlib
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from helpers import tiny_config
from mediscope.engine.checkpoints import AtomicCheckpointIO, read_checkpoint
from mediscope.errors import CheckpointError
from mediscope.files import read_torch_file
from mediscope.models.pretrained import read_state_dict

SRC = Path(__file__).resolve().parents[2] / "src" / "mediscope"


class Payload:
    """Unpickling this creates ``marker``: what an attacker's code would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.marker,))


def craft(path: Path, marker: Path) -> Path:
    """A checkpoint that looks like mediscope's, with code in it."""
    torch.save(
        {
            "state_dict": {"model.head.weight": torch.zeros(4, 8)},
            "epoch": 0,
            "mediscope": Payload(marker),
        },
        path,
    )
    return path


@pytest.fixture
def crafted(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "marker"
    path = craft(tmp_path / "crafted.ckpt", marker)
    # the file is really dangerous: an unsafe load runs the payload
    probe = tmp_path / "probe"
    torch.load(craft(tmp_path / "probe.ckpt", probe), weights_only=False)
    assert probe.exists()
    return path, marker


REFUSED = re.compile(
    r"holds pickled Python code \([\w.]+\), not just weights; it was refused unread"
)


def test_the_readers_refuse_it(crafted: tuple[Path, Path]) -> None:
    path, marker = crafted
    for read in (
        read_checkpoint,
        read_torch_file,
        read_state_dict,
        AtomicCheckpointIO().load_checkpoint,
    ):
        with pytest.raises(CheckpointError, match=REFUSED) as caught:
            read(path)
        assert caught.value.where == str(path)
    assert not marker.exists()


def test_every_command_refuses_it(
    crafted: tuple[Path, Path], tiny_crops: Path, tmp_path: Path, write_config: Any, cli: Any
) -> None:
    path, marker = crafted
    runs = tmp_path / "runs"
    cfg = write_config(tiny_config(tiny_crops, runs, trainer={"max_epochs": 1}))
    image = next((tiny_crops / "test").rglob("*.png"))
    commands = [
        ("test", cfg, "--checkpoint", path),
        ("validate", cfg, "--checkpoint", path),
        ("predict", cfg, "--checkpoint", path, "--input", image, "--output", tmp_path / "p.csv"),
        ("fit", cfg, "--resume", path),
        ("fit", cfg, "--weights", path),
        ("fit", cfg, "--set", f"model.pretrained={path}"),
    ]
    for args in commands:
        result = cli(*args)
        assert result.code == 2, (args, result.err)
        (line,) = result.err.strip().splitlines()
        assert line.startswith(f"error: {path}: the "), line
        assert REFUSED.search(line), line
        assert not marker.exists(), args
    assert not runs.exists()  # nothing was created for a refused file


def test_a_damaged_checkpoint_is_named(tmp_path: Path) -> None:
    good = tmp_path / "good.ckpt"
    torch.save({"a": torch.zeros(1000)}, good)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="not a loadable checkpoint") as caught:
        read_torch_file(cut)
    assert caught.value.where == str(cut)
    with pytest.raises(CheckpointError, match="weights file not found"):
        read_torch_file(tmp_path / "missing.pt", what="weights file")


def test_every_torch_load_in_the_package_is_weights_only() -> None:
    calls = []
    for file in SRC.rglob("*.py"):
        text = file.read_text(encoding="utf-8")
        for found in re.finditer(r"torch\.load\(", text):
            depth, end = 0, found.end() - 1
            for end in range(found.end() - 1, len(text)):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            calls.append((file.relative_to(SRC), text[found.start() : end + 1]))
    assert calls, "no torch.load found: the pattern is stale"
    unsafe = [(f, c) for f, c in calls if "weights_only=True" not in c]
    assert not unsafe
