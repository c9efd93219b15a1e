"""``mediscope demo``: the embedded end-to-end example."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer


def demo_command(
    runs: Path = typer.Option(Path("runs"), "--runs", help="Where the run folder goes."),
    cache: Path | None = typer.Option(
        None, "--cache", help="Where the synthetic data is kept (default: the user cache)."
    ),
    epochs: int | None = typer.Option(None, "--epochs", help="Override the epochs."),
) -> None:
    """Synthetic data (made once): train and test a Gram-stain classifier, a
    dermoscopy-lesion segmenter (galleries and overlays) and a detector of bacteria in
    smears (a large smear counted in tiles, with overlays); prints the three run folders
    and the command that serves them on a web page."""
    from mediscope.cli.output import print_fit_summary, print_metrics
    from mediscope.demo import run_demo, run_detection_demo, run_segmentation_demo

    def summary(fit_result: object, config: object) -> None:
        print_fit_summary(fit_result, config, run_line=False, test_panel=False)

    print("1/3 classification: synthetic Gram-stained bacteria crops, 4 classes")
    result = run_demo(runs=runs, cache=cache, epochs=epochs, on_fit=summary)
    print_metrics(
        "test (held-out synthetic crops)",
        result.test_metrics,
        result.test_metrics_path,
        "classification",
    )
    print("2/3 segmentation: synthetic dermoscopy lesions")
    seg = run_segmentation_demo(runs=runs, cache=cache, epochs=epochs, on_fit=summary)
    print_metrics(
        "test (held-out synthetic lesions)", seg.test_metrics, seg.test_metrics_path, "segmentation"
    )
    for path in seg.outputs:
        print(f"see: {path}")
    print("3/3 detection: synthetic Gram-stained smears, 4 classes of bacteria")
    det = run_detection_demo(runs=runs, cache=cache, epochs=epochs, on_fit=summary)
    print_metrics(
        "test (held-out synthetic smears)", det.test_metrics, det.test_metrics_path, "detection"
    )
    threshold = det.counts.attrs["score_threshold"]
    for _, row in det.counts.iterrows():
        name = Path(str(row["path"]))
        detail = ", ".join(f"{c} {int(row[c])}" for c in det.counts.columns[1:-1])
        print(f"counted on {name.name} (scores >= {threshold:.2f}): {int(row['total'])} ({detail})")
        truth = labelled_counts(name, list(det.counts.columns[1:-1]))
        if truth is not None:
            detail = ", ".join(f"{c} {n}" for c, n in truth.items())
            print(f"labelled on {name.name}: {sum(truth.values())} ({detail})")
    for path in det.outputs:
        print(f"see: {path}")
    runs_made = [result.fit.run_dir, seg.fit.run_dir, det.fit.run_dir]
    for run_dir in runs_made:
        print(f"run: {run_dir}")
    print(f"see them in a browser: {serve_command(runs_made)}")


def serve_command(runs: list[Path]) -> str:
    """The command that serves ``runs`` on the web page of ``mediscope serve``.

    Example:
        >>> serve_command([Path("runs/a b"), Path("runs/c")])
        "mediscope serve 'runs/a b' runs/c"
    """
    return " ".join(["mediscope", "serve", *(shlex.quote(str(run)) for run in runs)])


def labelled_counts(image: Path, classes: list[str]) -> dict[str, int] | None:
    """Objects per class in the YOLO label file of ``image`` (``images/`` → ``labels/``)."""
    label = image.parent.parent / "labels" / f"{image.stem}.txt"
    if not label.is_file():
        return None
    counts = dict.fromkeys(classes, 0)
    for line in label.read_text(encoding="utf-8").splitlines():
        if line.strip():
            counts[classes[int(line.split()[0])]] += 1
    return counts
