"""The embedded demo: synthetic Gram-stain crops → classifier → test metrics; synthetic
dermoscopy lesions → segmenter → test metrics, galleries and overlays; synthetic
Gram-stained smears → detector → test mAP, then a large smear predicted in tiles
with overlays and the count of bacteria per class."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mediscope.config.schema import Config
from mediscope.files import cache_dir
from mediscope.tasks.validate import config_from_text

DEMO_CONFIG = "demo/gram-crops.yaml"
DATA_VERSION = "gram-crops-v1"
SEGMENTATION_CONFIG = "demo/lesions.yaml"
LESIONS_VERSION = "lesions-v1"
DETECTION_CONFIG = "demo/gram-stain.yaml"
SMEARS_VERSION = "gram-stain-v3"
#: Bacteria per area of the demo's training and test fields against the generator's
#: default: a detector that learnt on crowded fields finds the cells of a dense smear's
#: clumps one by one (see the counting section of docs/detection.md).
SMEARS_CROWDING = 2.0
#: Test images the demo segments into masks and overlays (``<run>/predictions``).
OVERLAY_IMAGES = 8


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


def lesion_data(cache: Path | None = None) -> Path:
    """The demo's synthetic dermoscopy lesions (MMSeg layout), generated on first use."""
    from mediscope.data.synthetic.lesions import generate_lesions

    root = (cache or cache_dir()) / LESIONS_VERSION
    if not (root / "classes.txt").is_file():
        generate_lesions(root, train=240, val=60, test=60, size=96, seed=0)
    return root


def smear_data(cache: Path | None = None) -> Path:
    """The demo's synthetic Gram-stained smears (YOLO layout, one large smear)."""
    from mediscope.data.synthetic.gram_stain import generate_gram_stain

    root = (cache or cache_dir()) / SMEARS_VERSION
    if not (root / "data.yaml").is_file():
        generate_gram_stain(
            root,
            count=200,
            test_count=50,
            size=256,
            seed=0,
            large=(1600, 1200),
            large_count=1,
            crowding=SMEARS_CROWDING,
        )
    return root


def demo_config(data_root: Path, runs: Path, epochs: int | None = None) -> Config:
    """The packaged demo config pointed at ``data_root`` and ``runs``."""
    overrides = [f"data.path={data_root / 'train'}", f"data.test_path={data_root / 'test'}"]
    return _packaged(DEMO_CONFIG, overrides, runs, epochs)


def segmentation_demo_config(data_root: Path, runs: Path, epochs: int | None = None) -> Config:
    """The packaged lesion-segmentation demo config pointed at ``data_root`` and ``runs``."""
    return _packaged(SEGMENTATION_CONFIG, [f"data.path={data_root}"], runs, epochs)


def detection_demo_config(data_root: Path, runs: Path, epochs: int | None = None) -> Config:
    """The packaged smear-detection demo config pointed at ``data_root`` and ``runs``."""
    return _packaged(DETECTION_CONFIG, [f"data.path={data_root}"], runs, epochs)


def _packaged(name: str, overrides: list[str], runs: Path, epochs: int | None) -> Config:
    overrides = [*overrides, f"run.dir={runs}"]
    if epochs is not None:
        overrides.append(f"trainer.max_epochs={epochs}")
    return config_from_text(
        packaged_config_text(name), path=Path("configs") / name, overrides=overrides
    )


@dataclass
class DemoResult:
    """The fit result, the test metrics and where they are."""

    fit: Any
    test_metrics: dict[str, float]
    test_metrics_path: Path
    seconds: float
    outputs: list[Path] = field(default_factory=list)
    counts: Any = None


def run_demo(
    *,
    runs: Path = Path("runs"),
    cache: Path | None = None,
    epochs: int | None = None,
    on_fit: Callable[[Any, Config], None] | None = None,
) -> DemoResult:
    """Generates the data (once), trains the demo classifier and tests its best checkpoint."""
    started = time.perf_counter()
    config = demo_config(demo_data(cache), runs, epochs)
    return _fit_and_test(config, on_fit, started)


def run_segmentation_demo(
    *,
    runs: Path = Path("runs"),
    cache: Path | None = None,
    epochs: int | None = None,
    on_fit: Callable[[Any, Config], None] | None = None,
) -> DemoResult:
    """Synthetic lesions (once) → a small U-Net → test metrics, galleries and overlays."""
    from mediscope.inference.predict_files import predict_masks

    started = time.perf_counter()
    root = lesion_data(cache)
    config = segmentation_demo_config(root, runs, epochs)
    result = _fit_and_test(config, on_fit, started)
    run = result.fit.run_dir
    images = sorted((root / "img" / "test").iterdir())[:OVERLAY_IMAGES]
    predict_masks(config, result.fit.best_checkpoint, [str(p) for p in images], run / "predictions")
    result.outputs = [
        run / "plots" / "test_best.png",
        run / "plots" / "test_worst.png",
        run / "predictions" / "overlays",
    ]
    result.seconds = time.perf_counter() - started
    return result


def run_detection_demo(
    *,
    runs: Path = Path("runs"),
    cache: Path | None = None,
    epochs: int | None = None,
    on_fit: Callable[[Any, Config], None] | None = None,
) -> DemoResult:
    """Synthetic smears (once) → a small detector → test mAP; a large smear in tiles."""
    from mediscope.inference.predict_files import predict_boxes

    started = time.perf_counter()
    root = smear_data(cache)
    config = detection_demo_config(root, runs, epochs)
    result = _fit_and_test(config, on_fit, started)
    run = result.fit.run_dir
    smears = [str(p) for p in sorted((root / "large" / "images").glob("*.png"))]
    counts = predict_boxes(config, result.fit.best_checkpoint, smears, run / "predictions")
    result.counts = counts
    result.outputs = [
        run / "plots" / "test_pr_curves.png",
        run / "predictions" / "overlays",
        run / "predictions" / "counts.csv",
    ]
    result.seconds = time.perf_counter() - started
    return result


def _fit_and_test(
    config: Config, on_fit: Callable[[Any, Config], None] | None, started: float
) -> DemoResult:
    from mediscope.api import fit, test

    result = fit(config)
    if on_fit is not None:
        on_fit(result, config)
    assert result.best_checkpoint is not None
    if result.test_metrics:  # fit tested it (trainer.test_after_fit)
        metrics, path = result.test_metrics, result.run_dir / "test_metrics.json"
    else:
        metrics, path = test(config, result.best_checkpoint)
    return DemoResult(result, metrics, path, time.perf_counter() - started)
