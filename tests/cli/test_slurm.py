"""``mediscope slurm``: an sbatch script for a DDP run on a cluster."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import tiny_config
from mediscope.tasks.validate import load_config


def test_slurm_prints_an_sbatch_script_that_srun_can_run(
    tiny_crops: Path, tmp_path: Path, write_config: Callable[..., Path], cli: Any
) -> None:
    config = write_config(tiny_config(tiny_crops, tmp_path / "runs", data={"num_workers": 3}))
    result = cli("slurm", config, "--nodes", "2", "--gpus-per-node", "4", "--set", "seed=7")
    assert result.code == 0, result.err
    script = result.out
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --signal=TERM@120",
    ):
        assert line in lines
    assert len(lines) < 30  # it stays small
    # the srun line runs mediscope fit with overrides the config accepts
    command = script[script.index("srun ") :].replace("\\\n", " ").split()
    assert command[:4] == ["srun", "mediscope", "fit", str(config)]
    overrides = [command[i + 1] for i, word in enumerate(command) if word == "--set"]
    assert "trainer.num_nodes=2" in overrides and "seed=7" in overrides
    cfg = load_config(config, overrides)
    assert (cfg.trainer.devices, cfg.trainer.num_nodes, cfg.trainer.strategy) == (4, 2, "ddp")
    if shutil.which("bash"):
        path = tmp_path / "train.sbatch"
        path.write_text(script)
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


def test_slurm_refuses_a_bad_config_before_the_cluster_does(
    tmp_path: Path, write_config: Callable[..., Path], cli: Any
) -> None:
    config = write_config({"task": "classification", "data": {"path": "x"}})
    result = cli("slurm", config, "--nodes", "2")
    assert result.code == 2 and result.err.startswith("error:")
    assert result.out == ""


@pytest.mark.parametrize("nodes", ["0", "-1"])
def test_slurm_needs_a_node(
    nodes: str, tiny_crops: Path, tmp_path: Path, write_config: Callable[..., Path], cli: Any
) -> None:
    config = write_config(tiny_config(tiny_crops, tmp_path / "runs"))
    assert cli("slurm", config, "--nodes", nodes).code == 2
