"""What a run ran on: versions, git commit, seed, hardware (``environment.json``)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from mediscope import __version__

PACKAGES = ("torch", "torchvision", "lightning", "timm", "torchmetrics", "albumentations", "numpy")


def git_commit(path: Path) -> dict[str, Any] | None:
    """Commit and dirty flag of the git checkout containing ``path``, if any."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment_info(seed: int) -> dict[str, Any]:
    """Versions, git commits, seed, CPU and GPUs, and the command line."""
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "mediscope": __version__,
        "python": platform.python_version(),
        "packages": {p: _version(p) for p in PACKAGES},
        "mediscope_git": git_commit(Path(__file__).resolve().parent),
        "project_git": git_commit(Path.cwd()),
        "seed": seed,
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpus": gpus,
        "argv": sys.argv,
    }
