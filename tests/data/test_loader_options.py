"""The DataLoader's worker options: persistent workers, prefetch, pinned memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import tiny_config
from mediscope.data.datamodule import loader_options
from mediscope.tasks import data_module
from mediscope.tasks.validate import config_from_dict


def test_options_by_default_and_when_set(tiny_crops: Path, tmp_path: Path) -> None:
    config = config_from_dict(tiny_config(tiny_crops, tmp_path))
    assert loader_options(config) == {"num_workers": 0, "pin_memory": False}
    raw = tiny_config(tiny_crops, tmp_path, data={"num_workers": 2}, trainer={"accelerator": "cpu"})
    config = config_from_dict(raw)
    assert loader_options(config) == {
        "num_workers": 2,
        "persistent_workers": True,
        "prefetch_factor": 2,
        "pin_memory": False,  # auto: only for a CUDA GPU
    }
    raw["data"].update(persistent_workers=False, prefetch_factor=4, pin_memory=True)
    options = loader_options(config_from_dict(raw))
    assert options["persistent_workers"] is False and options["prefetch_factor"] == 4
    assert options["pin_memory"] is True


def test_auto_pins_memory_for_a_gpu(
    tiny_crops: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = config_from_dict(tiny_config(tiny_crops, tmp_path))
    assert loader_options(config)["pin_memory"] is True
    cpu = config_from_dict(tiny_config(tiny_crops, tmp_path, trainer={"accelerator": "cpu"}))
    assert loader_options(cpu)["pin_memory"] is False


@pytest.mark.timeout(120)
def test_persistent_workers_still_change_with_the_epoch(tiny_crops: Path, tmp_path: Path) -> None:
    """The workers are kept between epochs, yet each epoch has its own order and
    augmentation: the sampler hands every index to the workers with its epoch."""
    raw = tiny_config(
        tiny_crops,
        tmp_path,
        data={"num_workers": 1},
        augment={"hflip": 0.5, "vflip": 0.5, "rotate90": 0.5},
    )
    datamodule = data_module(config_from_dict(raw))
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    epochs = []
    workers = []
    for epoch in (0, 1, 0):
        datamodule.set_epoch(epoch)
        loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
        epochs.append(torch.cat([images for images, _ in loader]))
        workers.append([w.pid for w in loader._iterator._workers])  # type: ignore[union-attr]
    assert workers[0] == workers[1] == workers[2]  # the same worker process throughout
    assert not torch.equal(epochs[0], epochs[1])
    assert torch.equal(epochs[0], epochs[2])  # (seed, epoch) decides, not the worker's past
