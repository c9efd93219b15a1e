"""Does the data pipeline keep up with the model? Images per second of the loader alone
and of the training step alone, per demo config and ``data.num_workers``.

For each task's demo config (``src/mediscope/configs/demo``, on freshly generated
synthetic data of the demo's image size) and ``num_workers`` 0, 1 and 2:

* ``loader``: the training DataLoader alone (read, augment, collate), images/s over
  ``--batches`` batches after the first; ``first_batch_s``: the time to the first
  batch of a new loader (worker start-up); ``restart_s``: the time to the first batch
  of the next epoch, with the workers kept (``persistent_workers``, the default) and
  without;
* ``step``: Lightning's training step alone (forward, loss, backward, optimizer, the
  task's metrics) on batches already in memory, images/s, measured again next to each
  ``num_workers`` setting's loader figures;
* ``training``: both together, as ``fit`` runs them, images/s.

The training rates are the best of two runs each. With ``num_workers`` 0 the CPU time
of the process per image is recorded too, for the loader and the step
(``step_over_loader_cpu``): unlike wall time it does not depend on what else the
machine runs.

``loader_over_step`` is the headroom of the pipeline: at least 3 means the model never
waits for data. The machine may be shared, so every figure of a task is measured in the
same run, close together, and the load average is recorded before and after.
Results: ``benchmarks/results/dataloader.json``.

Usage:
    python benchmarks/dataloader.py [--batches 8] [--only classification ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from mediscope.files import write_json_atomic

RESULTS = Path(__file__).parent / "results" / "dataloader.json"
DEMO = Path(__file__).resolve().parents[1] / "src" / "mediscope" / "configs" / "demo"
WORKERS = (0, 1, 2)
WARMUP = 2  # training steps before the clock starts (allocations, first-call costs)
REPEATS = 2  # training rates are the best of this many runs (the machine may be shared)


def _classification(root: Path, batches: int) -> list[str]:
    from mediscope.data.synthetic.gram_crops import generate_gram_crops

    per_class = (batches + WARMUP + 2) * 32 // 4 * 5 // 4 + 1  # 80 % of it trains
    generate_gram_crops(root, per_class=per_class, test_per_class=2, size=64, seed=0)
    return [f"data.path={root / 'train'}", f"data.test_path={root / 'test'}"]


def _segmentation(root: Path, batches: int) -> list[str]:
    from mediscope.data.synthetic.lesions import generate_lesions

    generate_lesions(root, train=(batches + WARMUP + 2) * 8, val=8, test=2, size=96, seed=0)
    return [f"data.path={root}"]


def _detection(root: Path, batches: int) -> list[str]:
    from mediscope.data.synthetic.gram_stain import generate_gram_stain

    count = (batches + WARMUP + 2) * 8 * 5 // 4 + 1
    generate_gram_stain(root, count=count, test_count=2, size=256, seed=0)
    return [f"data.path={root}"]


#: task -> (demo config, data generator returning the config's data overrides)
TASKS: dict[str, tuple[str, Callable[[Path, int], list[str]]]] = {
    "classification": ("gram-crops.yaml", _classification),
    "segmentation": ("lesions.yaml", _segmentation),
    "detection": ("gram-stain.yaml", _detection),
}


def _images(batch: Any) -> int:
    first = batch[0] if isinstance(batch, list | tuple) else batch
    if isinstance(first, torch.Tensor):
        return int(first.shape[0])
    return len(first)


def loader_figures(config: Any, batches: int) -> dict[str, float]:
    """The training loader alone: start-up, steady images/s and restart per epoch."""
    from mediscope.tasks import data_module

    datamodule = data_module(config)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    start = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    first = time.perf_counter() - start
    images = 0
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        images += _images(next(iterator))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    figures = {"images_per_s": images / seconds, "first_batch_s": first}
    if config.data.num_workers == 0:  # all the work in this process: its CPU time
        figures["cpu_ms_per_image"] = 1000 * cpu / images
    if config.data.num_workers > 0:
        for persistent in (True, False):
            datamodule.config.data.persistent_workers = persistent
            loader = datamodule.train_dataloader()
            for _ in iter(loader):  # an epoch, then the next one's first batch
                pass
            start = time.perf_counter()
            next(iter(loader))
            key = "restart_s" if persistent else "restart_s_not_persistent"
            figures[key] = time.perf_counter() - start
            del loader
    return figures


class _Clock(L.Callback):
    """Seconds from the start of training step ``WARMUP`` to the end of the last one."""

    def __init__(self) -> None:
        self.start = self.end = self.cpu_start = self.cpu_end = 0.0
        self.images = 0

    def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, index: int) -> None:
        if index == WARMUP:
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_train_batch_end(
        self, trainer: Any, module: Any, outputs: Any, batch: Any, index: int
    ) -> None:
        if index >= WARMUP:
            self.images += _images(batch)
            self.end, self.cpu_end = time.perf_counter(), time.process_time()

    @property
    def rate(self) -> float:
        """Images per second (wall time)."""
        return self.images / (self.end - self.start)

    @property
    def cpu_ms(self) -> float:
        """CPU milliseconds of this process (all its threads) per image."""
        return 1000 * (self.cpu_end - self.cpu_start) / self.images


def _identity(batch: Any) -> Any:
    return batch


def training_rate(config: Any, batches: int, *, cached: bool) -> tuple[float, float]:
    """Images/s of Lightning's training steps, on batches in memory (``cached``: the
    step alone) or from the configured loader (step and loader together)."""
    from mediscope.tasks import build_task, data_module

    L.seed_everything(0, verbose=False)
    datamodule = data_module(config)
    datamodule.setup("fit")
    task = build_task(
        config,
        datamodule.classes,
        class_counts=datamodule.train_class_counts(),
        normalization=datamodule.normalization_stats(),
    )
    total = batches + WARMUP
    loader: DataLoader[Any] = datamodule.train_dataloader()
    if cached:
        source = iter(datamodule.loader(datamodule.train_dataset, train=True))
        kept = [next(source) for _ in range(total)]
        loader = DataLoader(kept, batch_size=None, collate_fn=_identity)  # type: ignore[arg-type]
    clock = _Clock()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=total,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )
    trainer.fit(task, train_dataloaders=loader)
    return clock.rate, clock.cpu_ms


def best_rate(config: Any, batches: int, *, cached: bool) -> tuple[float, float]:
    """The best of ``REPEATS`` runs of :func:`training_rate` (the least disturbed)."""
    return max(training_rate(config, batches, cached=cached) for _ in range(REPEATS))


def measure(task: str, root: Path, batches: int) -> dict[str, Any]:
    from mediscope.tasks.validate import load_config

    name, generate = TASKS[task]
    data = generate(root / task, batches)
    base = [*data, f"run.dir={root / 'runs'}", "logging.progress=none"]
    config = load_config(DEMO / name, base)
    result: dict[str, Any] = {
        "config": f"configs/demo/{name}",
        "model": config.model.name,
        "image_size": config.data.image_size,
        "batch_size": config.data.batch_size,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "workers": {},
    }
    for workers in WORKERS:
        cfg = load_config(DEMO / name, [*base, f"data.num_workers={workers}"])
        step, step_cpu = best_rate(cfg, batches, cached=True)  # next to the loader's figures
        loader = loader_figures(cfg, batches)
        together, _ = best_rate(cfg, batches, cached=False)
        row = {
            "step_images_per_s": round(step, 1),
            "loader_images_per_s": round(loader.pop("images_per_s"), 1),
            "training_images_per_s": round(together, 1),
        }
        row["loader_over_step"] = round(row["loader_images_per_s"] / step, 2)
        row["training_over_step"] = round(together / step, 2)
        if "cpu_ms_per_image" in loader:
            row["step_cpu_ms_per_image"] = round(step_cpu, 2)
            row["loader_cpu_ms_per_image"] = round(loader.pop("cpu_ms_per_image"), 2)
            row["step_over_loader_cpu"] = round(step_cpu / row["loader_cpu_ms_per_image"], 1)
        row.update({k: round(v, 3) for k, v in loader.items()})
        result["workers"][str(workers)] = row
        print(task, workers, row, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=8, help="timed batches per figure")
    parser.add_argument("--only", nargs="*", choices=list(TASKS), help="these tasks only")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore", message=".*no `val_dataloader`")
    from mediscope.engine.trainer import quiet_lightning

    quiet_lightning()
    load_before = [round(x, 2) for x in os.getloadavg()]
    tasks: dict[str, Any] = {}
    if args.only and RESULTS.is_file():  # keep the other tasks' figures
        tasks = json.loads(RESULTS.read_text(encoding="utf-8")).get("tasks", {})
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.only or list(TASKS):
            figures = measure(task, Path(tmp), args.batches)
            tasks[task] = {"timed_batches": args.batches, **figures}
            _write(tasks, load_before)  # after every task: a long run keeps what it measured


def _write(tasks: dict[str, Any], load_before: list[float]) -> None:
    default = 0  # data.num_workers' default
    result = {
        "question": "images/s of the training loader alone vs the training step alone",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.platform(),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "default_num_workers": default,
        "target": "loader_over_step >= 3 at the default settings",
        "target_met": {
            task: figures["workers"][str(default)]["loader_over_step"] >= 3
            for task, figures in tasks.items()
        },
        "tasks": tasks,
    }
    write_json_atomic(RESULTS, result)
    print(RESULTS)


if __name__ == "__main__":
    main()
