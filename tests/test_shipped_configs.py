"""Every shipped config loads and trains one epoch on tiny data of its format."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediscope.config import load_config
from mediscope.engine.api import fit

CONFIGS = sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml"))


def test_configs_are_shipped_in_the_package() -> None:
    from mediscope.demo import DEMO_CONFIG, packaged_config_text

    assert CONFIGS, "no configs found"
    assert "task: classification" in packaged_config_text(DEMO_CONFIG)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_shipped_config_trains_one_epoch(path: Path, tiny_crops: Path, tmp_path: Path) -> None:
    config = load_config(
        path,
        [
            f"data.path={tiny_crops / 'train'}",
            f"data.test_path={tiny_crops / 'test'}",
            "trainer.max_epochs=1",
            "logging.progress=none",
            f"run.dir={tmp_path}",
        ],
    )
    result = fit(config)
    assert (result.run_dir / "val_metrics.json").is_file()
    assert result.epochs_run == 1
