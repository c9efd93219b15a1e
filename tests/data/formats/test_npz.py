"""The npz format: arrays in a NumPy .npz, memory-mapped and read lazily."""

from __future__ import annotations

import gc
import mmap
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from mediscope.data import npz_items
from mediscope.data.formats.npz import read_npz
from mediscope.data.images import read_image
from mediscope.data.npz_items import member_array, read_item
from mediscope.errors import DataError
from mediscope.registry import FORMATS


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Extracted arrays go into the test's folder, never the user's cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MEDISCOPE_CACHE", str(cache))
    return cache


def medmnist_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (12, 7, 5, 3), dtype=np.uint8),
        "train_labels": rng.permutation(np.arange(12) % 4).reshape(12, 1),
        "val_images": rng.integers(0, 256, (4, 7, 5, 3), dtype=np.uint8),
        "val_labels": np.array([[0], [1], [2], [3]]),
        "test_images": rng.integers(0, 256, (3, 7, 5, 3), dtype=np.uint8),
        "test_labels": np.array([[3], [3], [0]]),
    }


def test_medmnist_keys_give_splits_and_pixels(tmp_path: Path) -> None:
    arrays = medmnist_arrays()
    np.savez(tmp_path / "data.npz", **arrays)
    found = FORMATS.get("npz")(tmp_path / "data.npz", classes=None, task="classification")
    assert found.classes == ["0", "1", "2", "3"]
    assert len(found) == 19 and found.root == tmp_path
    assert [s.split for s in found.samples] == ["train"] * 12 + ["val"] * 4 + ["test"] * 3
    expected = np.concatenate([arrays[f"{p}_labels"][:, 0] for p in ("train", "val", "test")])
    assert found.labels().tolist() == expected.tolist()
    assert found.ids()[13] == "data.npz::val_images::1"
    assert found.samples[13].image == f"{tmp_path / 'data.npz'}::val_images::1"
    for sample, index in ((found.samples[5], 5), (found.samples[18], 2)):
        key = sample.image.split("::")[1]
        assert np.array_equal(read_image(sample.image), arrays[key][index])
    gray = read_image(found.samples[0].image, channels=1)
    assert gray.shape == (7, 5, 1) and gray.dtype == np.uint8


def test_plain_keys_gray_images_and_class_names(tmp_path: Path) -> None:
    images = np.arange(5 * 4 * 6, dtype=np.uint8).reshape(5, 4, 6)
    labels = np.array([2, 0, 2, 1, 0], dtype=np.uint8)
    names = np.array(["ADI", "BACK", "DEB"])
    np.savez(tmp_path / "train.npz", images=images, labels=labels, label_names=names)
    found = read_npz(tmp_path / "train.npz", task="classification")
    assert found.classes == ["ADI", "BACK", "DEB"]
    assert found.labels().tolist() == [2, 0, 2, 1, 0]
    assert {s.split for s in found.samples} == {None}
    assert found.ids()[3] == "train.npz::images::3"
    rgb = read_image(found.samples[3].image)
    assert rgb.shape == (4, 6, 3) and np.array_equal(rgb, np.repeat(images[3][:, :, None], 3, 2))
    assert np.array_equal(read_image(found.samples[3].image, channels=1)[:, :, 0], images[3])


def test_given_classes_as_indices_or_names(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "test_tiny.npz", images=np.zeros((3, 2, 2), np.uint8), labels=[[2], [0], [2]]
    )
    as_index = read_npz(tmp_path / "test_tiny.npz", classes=["a", "b", "c"], task="classification")
    assert as_index.labels().tolist() == [2, 0, 2]
    # Training classes inferred as the label values "0", "2": the test labels are names.
    by_name = read_npz(tmp_path / "test_tiny.npz", classes=["0", "2"], task="classification")
    assert by_name.labels().tolist() == [1, 0, 1]
    with pytest.raises(
        DataError,
        match=r"test_tiny.npz: label 2 is out of range for 2 classes of data.classes; classes: a, b",
    ):
        read_npz(tmp_path / "test_tiny.npz", classes=["a", "b"], task="classification")


def test_stored_array_is_mapped_from_the_npz_itself(tmp_path: Path, own_cache: Path) -> None:
    arrays = medmnist_arrays()
    np.savez(tmp_path / "data.npz", **arrays)
    mapped = member_array(tmp_path / "data.npz", "train_images")
    assert isinstance(mapped.base, mmap.mmap)
    assert len(mapped.base) == (tmp_path / "data.npz").stat().st_size  # the zip, not a copy
    assert not mapped.flags.writeable and np.array_equal(mapped, arrays["train_images"])
    assert not own_cache.exists()  # nothing extracted
    item = read_item(f"{tmp_path / 'data.npz'}::train_images::4")
    assert item.base is None and np.array_equal(item, arrays["train_images"][4])


def test_compressed_array_is_extracted_once_and_mapped(
    tmp_path: Path, own_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrays = medmnist_arrays()
    np.savez_compressed(tmp_path / "data.npz", **arrays)
    found = read_npz(tmp_path / "data.npz", task="classification")
    copies = sorted(own_cache.glob("npz/data-*/*.npy"))
    assert [c.name for c in copies] == ["test_images.npy", "train_images.npy", "val_images.npy"]
    mapped = member_array(tmp_path / "data.npz", "val_images")
    assert isinstance(mapped.base, mmap.mmap) and len(mapped.base) == copies[2].stat().st_size
    assert np.array_equal(read_image(found.samples[14].image), arrays["val_images"][2])
    # A new process (fresh handles) reuses the extracted copy.
    inode = copies[1].stat().st_ino
    monkeypatch.setattr(npz_items, "_HANDLES", npz_items._Handles())
    assert np.array_equal(read_image(found.samples[0].image), arrays["train_images"][0])
    assert copies[1].stat().st_ino == inode


def test_rewritten_file_is_mapped_again(tmp_path: Path) -> None:
    first, second = medmnist_arrays(0), medmnist_arrays(1)
    np.savez_compressed(tmp_path / "data.npz", **first)
    ref = f"{tmp_path / 'data.npz'}::train_images::3"
    assert np.array_equal(read_image(ref), first["train_images"][3])
    np.savez_compressed(tmp_path / "data.npz", **second)
    os.utime(tmp_path / "data.npz", ns=(1, 1))  # a new version even within one clock tick
    assert np.array_equal(read_image(ref), second["train_images"][3])


def test_fortran_order_arrays(tmp_path: Path) -> None:
    arrays = medmnist_arrays()
    images = np.asfortranarray(arrays["train_images"])
    np.savez(tmp_path / "f.npz", images=images, labels=arrays["train_labels"])
    for i in (0, 7, 11):
        assert np.array_equal(read_image(f"{tmp_path / 'f.npz'}::images::{i}"), images[i])


def vm_rss() -> int:
    """Resident memory of this process in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_reading_every_image_keeps_memory_flat(tmp_path: Path) -> None:
    count, size = 640, (224, 224, 3)  # 96 MB of images
    patch = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)
    # A broadcast view: np.savez writes it in chunks, so the test never holds 96 MB.
    np.savez(
        tmp_path / "big.npz", images=np.broadcast_to(patch, (count, *size)), labels=np.zeros(count)
    )
    file_size = (tmp_path / "big.npz").stat().st_size
    samples = read_npz(tmp_path / "big.npz", task="classification").samples
    gc.collect()
    before = peak = vm_rss()
    for i, sample in enumerate(samples):
        image = read_image(sample.image)
        if i % 40 == 0:
            assert np.array_equal(image, patch)
            peak = max(peak, vm_rss())
    assert peak - before < file_size // 4, (peak - before, file_size)
    # The control: touching the whole map does count it, so the measure can see a leak.
    touched = int(np.asarray(member_array(tmp_path / "big.npz", "images")).sum(dtype=np.uint64))
    assert touched == int(patch.sum(dtype=np.uint64)) * count
    assert vm_rss() - before > file_size // 2


class References(Dataset[torch.Tensor]):
    def __init__(self, refs: list[str]) -> None:
        self.refs = refs

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(read_image(self.refs[index]))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_forked_dataloader_workers_read_the_same_pixels(tmp_path: Path) -> None:
    arrays = medmnist_arrays()
    np.savez(tmp_path / "data.npz", **arrays)
    refs = [s.image for s in read_npz(tmp_path / "data.npz", task="classification").samples]
    read_image(refs[0])  # the parent holds open maps when the workers fork
    loader = DataLoader(
        References(refs), batch_size=5, num_workers=2, multiprocessing_context="fork"
    )
    images = torch.cat(list(loader)).numpy()
    expected = np.concatenate([arrays[k] for k in ("train_images", "val_images", "test_images")])
    assert np.array_equal(images, expected)


def test_errors_name_the_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(DataError, match=r"text.npz: not an npz file"):
        read_npz(tmp_path / "text.npz", task="classification")
    with pytest.raises(DataError, match=r"none.npz: npz file not found"):
        read_npz(tmp_path / "none.npz", task="classification")
    np.savez(tmp_path / "keys.npz", x=np.zeros(2), y=np.zeros(2))
    with pytest.raises(
        DataError, match=r"keys.npz: no image array; expected images/labels .*found: x, y"
    ):
        read_npz(tmp_path / "keys.npz", task="classification")
    np.savez(tmp_path / "nolabels.npz", train_images=np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(
        DataError, match=r"nolabels.npz: array 'train_images' has no 'train_labels'"
    ):
        read_npz(tmp_path / "nolabels.npz", task="classification")
    images = np.zeros((3, 4, 4), np.uint8)
    np.savez(tmp_path / "count.npz", images=images, labels=np.zeros(2, int))
    with pytest.raises(DataError, match=r"count.npz: 'labels' holds 2 labels for 3 images"):
        read_npz(tmp_path / "count.npz", task="classification")
    np.savez(tmp_path / "multi.npz", images=images, labels=np.zeros((3, 4), int))
    with pytest.raises(DataError, match=r"'labels' has shape \(3, 4\); .*multi-label"):
        read_npz(tmp_path / "multi.npz", task="classification")
    np.savez(tmp_path / "float.npz", images=images, labels=np.array([0.5, 1, 2]))
    with pytest.raises(DataError, match=r"'labels' must hold integer class indices"):
        read_npz(tmp_path / "float.npz", task="classification")
    np.savez(tmp_path / "shape.npz", images=np.zeros((3, 4), np.uint8), labels=np.zeros(3, int))
    with pytest.raises(DataError, match=r"'images' has shape \(3, 4\); expected \(N, H, W\)"):
        read_npz(tmp_path / "shape.npz", task="classification")
    names = np.array(["a", None], dtype=object)
    np.savez(tmp_path / "objects.npz", images=images, labels=np.zeros(3, int), classes=names)
    with pytest.raises(DataError, match=r"objects.npz: cannot read array 'classes'"):
        read_npz(tmp_path / "objects.npz", task="classification")
    with pytest.raises(DataError, match=r"count.npz: index 3 is out of range: 'images' holds 3"):
        read_image(f"{tmp_path / 'count.npz'}::images::3")
    with pytest.raises(
        DataError, match=r"count.npz: no array 'train_images'; arrays: images, labels"
    ):
        read_image(f"{tmp_path / 'count.npz'}::train_images::0")
    with pytest.raises(DataError, match="the npz format holds no detection targets"):
        read_npz(tmp_path / "count.npz", task="detection")


def test_short_array_is_reported(tmp_path: Path) -> None:
    header = {"descr": "|u1", "fortran_order": False, "shape": (10, 4, 4)}
    with zipfile.ZipFile(tmp_path / "short.npz", "w") as archive:
        with archive.open("images.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, header)
            f.write(bytes(2 * 16))  # 2 of the 10 images
        with archive.open("labels.npy", "w") as f:
            np.lib.format.write_array(f, np.zeros(10, np.int64))
    with pytest.raises(
        DataError, match=r"short.npz: array 'images' of shape \(10, 4, 4\) is cut short"
    ):
        read_npz(tmp_path / "short.npz", task="classification")


def test_datamodule_uses_the_files_splits(tmp_path: Path) -> None:
    from mediscope.tasks import data_module
    from mediscope.tasks.validate import config_from_dict

    np.savez(tmp_path / "data.npz", **medmnist_arrays())
    config = config_from_dict(
        {
            "task": "classification",
            "data": {"format": "npz", "path": str(tmp_path / "data.npz"), "image_size": 8},
            "model": {"name": "simple_cnn"},
        }
    )
    module = data_module(config)
    assert module.split_sizes() == {"train": 12, "val": 4}
    assert module.test_set().ids() == [f"data.npz::test_images::{i}" for i in range(3)]
    image, label = module.dataset(module.test_set(), train=False)[2]
    assert image.shape == (3, 8, 8) and int(label) == 0


def test_prediction_inputs_need_no_labels(tmp_path: Path) -> None:
    """An npz of images only, or with -1 for unknown labels, is a prediction input."""
    from mediscope.data.formats.npz import npz_image_refs
    from mediscope.runtime.inputs import collect_inputs

    images = np.random.default_rng(0).integers(0, 255, (3, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "only.npz", images=images)
    np.savez(tmp_path / "unknown.npz", images=images, labels=np.full(3, -1))
    np.savez(tmp_path / "splits.npz", val_images=images[:1], test_images=images)
    for name in ("only", "unknown"):
        with pytest.raises(DataError):  # training still needs labels
            read_npz(tmp_path / f"{name}.npz", task="classification")
        refs = collect_inputs([tmp_path / f"{name}.npz"])
        assert refs == [f"{tmp_path / name}.npz::images::{i}" for i in range(3)]
        assert (read_image(refs[2]) == images[2]).all()
    refs = npz_image_refs(tmp_path / "splits.npz")
    assert [r.split("::", 1)[1] for r in refs] == [
        "val_images::0",
        "test_images::0",
        "test_images::1",
        "test_images::2",
    ]
    np.savez(tmp_path / "none.npz", x=np.zeros(2))
    with pytest.raises(DataError, match=r"none.npz: no image array; name it images"):
        npz_image_refs(tmp_path / "none.npz")
    np.savez(tmp_path / "flat.npz", images=np.zeros((3, 4), np.uint8))
    with pytest.raises(DataError, match=r"'images' has shape \(3, 4\)"):
        npz_image_refs(tmp_path / "flat.npz")
