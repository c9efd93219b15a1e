"""The embedded demo: synthetic Gram-stain crops → classifier → test metrics."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mediscope.config import config_from_text
from mediscope.config.schema import Config

DEMO_CONFIG = "demo/gram-crops.yaml"
DATA_VERSION = "gram-crops-v1"


def cache_dir() -> Path:
    """``$MEDISCOPE_CACHE``, else ``$XDG_CACHE_HOME/mediscope``, else ``~/.cache/mediscope``."""
    if os.environ.get("MEDISCOPE_CACHE"):
        return Path(os.environ["MEDISCOPE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mediscope"


def packaged_config_text(name: str) -> str:
    """The text of a config shipped inside the package (``configs/<name>``)."""
    return resources.files("mediscope").joinpath("configs", name).read_text(encoding="utf-8")


def demo_data(cache: Path | None = None) -> Path:
    """The demo's synthetic crops, generated on first use and reused after."""
    from mediscope.data.synthetic.gram_crops import generate_gram_crops

    root = (cache or cache_dir()) / DATA_VERSION
    if not (root / "classes.txt").is_file():
        generate_gram_crops(root, per_class=300, test_per_class=100, size=64, seed=0)
    return root


def demo_config(data_root: Path, runs: Path, epochs: int | None = None) -> Config:
    """The packaged demo config pointed at ``data_root`` and ``runs``."""
    overrides = [
        f"data.path={data_root / 'train'}",
        f"data.test_path={data_root / 'test'}",
        f"run.dir={runs}",
    ]
    if epochs is not None:
        overrides.append(f"trainer.max_epochs={epochs}")
    return config_from_text(
        packaged_config_text(DEMO_CONFIG), path=Path("configs") / DEMO_CONFIG, overrides=overrides
    )


@dataclass
class DemoResult:
    """The fit result, the test metrics and where they are."""

    fit: Any
    test_metrics: dict[str, float]
    test_metrics_path: Path
    seconds: float


def run_demo(
    *,
    runs: Path = Path("runs"),
    cache: Path | None = None,
    epochs: int | None = None,
    on_fit: Callable[[Any, Config], None] | None = None,
) -> DemoResult:
    """Generates the data (once), trains the demo classifier and tests its best checkpoint."""
    from mediscope.engine.api import fit, test

    started = time.perf_counter()
    config = demo_config(demo_data(cache), runs, epochs)
    result = fit(config)
    if on_fit is not None:
        on_fit(result, config)
    assert result.best_checkpoint is not None
    metrics, path = test(config, result.best_checkpoint)
    return DemoResult(result, metrics, path, time.perf_counter() - started)
