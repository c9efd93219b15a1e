"""``slurm``: print an sbatch script that trains a config on a SLURM cluster with DDP."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from mediscope.cli.train import SET_HELP

#: Seconds before the time limit at which SLURM sends SIGTERM to every process: they all
#: stop at the same step and last.ckpt keeps the last finished epoch.
SIGTERM_LEAD = 120


def sbatch_script(
    config_file: Path,
    *,
    run_name: str,
    nodes: int,
    gpus_per_node: int,
    cpus_per_task: int,
    time: str,
    partition: str | None = None,
    overrides: list[str] | None = None,
) -> str:
    """An sbatch script: one task per GPU, ``srun mediscope fit`` with the DDP settings.

    Examples:
        >>> text = sbatch_script(Path("c.yaml"), run_name="r", nodes=2, gpus_per_node=4,
        ...                      cpus_per_task=5, time="1:00:00")
        >>> "#SBATCH --ntasks-per-node=4" in text and "trainer.num_nodes=2" in text
        True
    """
    settings = [
        "trainer.accelerator=gpu",
        f"trainer.devices={gpus_per_node}",
        f"trainer.num_nodes={nodes}",
        "trainer.strategy=ddp",
        *(overrides or []),
    ]
    fit = ["srun", "mediscope", "fit", str(config_file)]
    for item in settings:
        fit += ["--set", item]
    command = " \\\n    ".join(
        [shlex.join(fit[:4]), *(shlex.join(fit[i : i + 2]) for i in range(4, len(fit), 2))]
    )
    lines = [
        "#!/bin/bash",
        "# One task (process) per GPU; data.num_workers + 1 CPUs per task; SIGTERM to every",
        f"# process {SIGTERM_LEAD} s before the time limit, so that they all stop cleanly.",
        f"#SBATCH --job-name={run_name}",
        f"#SBATCH --nodes={nodes}",
        f"#SBATCH --ntasks-per-node={gpus_per_node}",
        f"#SBATCH --gpus-per-node={gpus_per_node}",
        f"#SBATCH --cpus-per-task={cpus_per_task}",
        f"#SBATCH --time={time}",
        f"#SBATCH --signal=TERM@{SIGTERM_LEAD}",
        "#SBATCH --output=%x-%j.out",
    ]
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    lines += [
        "",
        "# Process 0 writes the run folder (run.dir must be on a shared file system to",
        "# resume). After a stop, submit again with '--resume last' added to the command.",
        command,
        "",
    ]
    return "\n".join(lines)


def slurm_command(
    config: Path = typer.Argument(..., help="The YAML config file.", metavar="CONFIG"),
    nodes: int = typer.Option(1, "--nodes", min=1, help="Machines."),
    gpus_per_node: int = typer.Option(1, "--gpus-per-node", min=1, help="GPUs per machine."),
    time: str = typer.Option("24:00:00", "--time", help="The job's time limit."),
    partition: str | None = typer.Option(None, "--partition", help="The SLURM partition."),
    overrides: list[str] | None = typer.Option(None, "--set", help=SET_HELP, metavar="KEY=VALUE"),
) -> None:
    """Print an sbatch script that trains CONFIG with DDP on NODES x GPUS-PER-NODE GPUs
    (save it, then: sbatch train.sbatch)."""
    from mediscope.cli import require_training_stack
    from mediscope.tasks.validate import load_config

    require_training_stack()
    cfg = load_config(config, overrides or [])  # fails here, not on the cluster
    print(
        sbatch_script(
            config,
            run_name=cfg.run.name,
            nodes=nodes,
            gpus_per_node=gpus_per_node,
            cpus_per_task=cfg.data.num_workers + 1,
            time=time,
            partition=partition,
            overrides=overrides,
        ),
        end="",
    )
