"""``mediscope demo``: the embedded end-to-end example."""

from __future__ import annotations

from pathlib import Path

import typer


def demo_command(
    runs: Path = typer.Option(Path("runs"), "--runs", help="Where the run folder goes."),
    cache: Path | None = typer.Option(
        None, "--cache", help="Where the synthetic data is kept (default: the user cache)."
    ),
    epochs: int | None = typer.Option(None, "--epochs", help="Override the epochs."),
) -> None:
    """Synthetic data (made once): train and test a Gram-stain classifier, then a
    dermoscopy-lesion segmenter (galleries and overlays); prints both run folders."""
    from mediscope.cli.output import print_fit_summary, print_metrics
    from mediscope.demo import run_demo, run_segmentation_demo

    def summary(fit_result: object, config: object) -> None:
        print_fit_summary(fit_result, config, run_line=False)

    print("1/2 classification: synthetic Gram-stained bacteria crops, 4 classes")
    result = run_demo(runs=runs, cache=cache, epochs=epochs, on_fit=summary)
    print_metrics("test (held-out synthetic crops)", result.test_metrics, result.test_metrics_path)
    print("2/2 segmentation: synthetic dermoscopy lesions")
    seg = run_segmentation_demo(runs=runs, cache=cache, epochs=epochs, on_fit=summary)
    print_metrics("test (held-out synthetic lesions)", seg.test_metrics, seg.test_metrics_path)
    for path in seg.outputs:
        print(f"see: {path}")
    print(f"run: {result.fit.run_dir}")
    print(f"run: {seg.fit.run_dir}")
