"""Helpers of the detection data tests: images, random boxes, comparing sample sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mediscope.data.samples import Sample, SampleSet


def write_image(path: Path, width: int, height: int, *, seed: int = 0) -> Path:
    """Writes a random RGB image (JPEG or PNG by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def random_boxes(
    rng: np.random.Generator, width: int, height: int, count: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random float boxes inside a ``width x height`` image, and their labels."""
    x = np.sort(rng.uniform(0, width, (count, 2)), axis=1)
    y = np.sort(rng.uniform(0, height, (count, 2)), axis=1)
    x[:, 1] = np.maximum(x[:, 1], x[:, 0] + 0.5)
    y[:, 1] = np.maximum(y[:, 1], y[:, 0] + 0.5)
    x, y = np.clip(x, 0, width), np.clip(y, 0, height)
    boxes = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1).astype(np.float32)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    labels = rng.integers(0, num_classes, count).astype(np.int64)
    return boxes[keep], labels[keep]


def random_sample_set(
    root: Path,
    *,
    classes: tuple[str, ...] = ("cocci", "bacilli", "yeast"),
    splits: dict[str | None, int] | None = None,
    seed: int = 0,
    suffix: str = ".png",
) -> SampleSet:
    """A detection SampleSet of random images (some negatives) with random float boxes."""
    rng = np.random.default_rng(seed)
    splits = splits if splits is not None else {"train": 5, "val": 3}
    samples: list[Sample] = []
    for split, count in splits.items():
        for i in range(count):
            width, height = int(rng.integers(20, 90)), int(rng.integers(20, 90))
            folder = root / "pics" / (split or "all")
            image = write_image(folder / f"{split or 'img'}{i}{suffix}", width, height, seed=i)
            n = 0 if i == 0 else int(rng.integers(1, 6))
            boxes, labels = random_boxes(rng, width, height, n, len(classes))
            samples.append(Sample(str(image), boxes=boxes, box_labels=labels, split=split))
    return SampleSet(list(classes), samples, root)


def by_key(samples: SampleSet) -> dict[tuple[str | None, str], Sample]:
    """Samples by ``(split, image stem)``."""
    return {(s.split, Path(s.image).stem): s for s in samples.samples}


def assert_same_boxes(a: SampleSet, b: SampleSet, *, atol: float = 1e-6) -> None:
    """Same classes, same images (by split and stem), same boxes within ``atol`` pixels."""
    assert a.classes == b.classes
    first, second = by_key(a), by_key(b)
    assert sorted(first, key=str) == sorted(second, key=str)
    for key, sample in first.items():
        other = second[key]
        assert sample.boxes is not None and other.boxes is not None
        assert sample.boxes.dtype == np.float32 and other.boxes.dtype == np.float32
        assert sample.boxes.shape == other.boxes.shape, key
        np.testing.assert_allclose(other.boxes, sample.boxes, atol=atol, rtol=0, err_msg=str(key))
        assert other.box_labels is not None and sample.box_labels is not None
        assert other.box_labels.dtype == np.int64
        assert other.box_labels.tolist() == sample.box_labels.tolist(), key
