"""Torch datasets over typed samples.

Augmentation randomness is seeded per sample from ``(seed, epoch, index)``: the same
run gives the same augmented batches whatever the number of workers, and a resumed
run continues exactly where it stopped. The training sampler passes ``(epoch, index)``
keys (see :mod:`mediscope.data.samplers`); plain indices use ``dataset.epoch``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from mediscope.data.images import read_image
from mediscope.data.samples import Sample
from mediscope.errors import DataError


class ImageDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Base dataset: reads an image, applies the transform of the current epoch.

    Args:
        samples: The samples.
        transform: The pipeline while augmenting.
        plain_transform: The pipeline once augmentation ends (``augment_until``).
        channels: 1 (grayscale) or 3 (RGB).
        seed: Base of the per-sample augmentation seeds.
        augment_until: Epoch from which ``plain_transform`` is used; None: never.
        window: DICOM intensity window (centre, width) instead of the file's.
        intensity: ``(min, max)`` of stored values shown as 0 and 255 (``data.intensity``
            fixed or percentile); None: images beyond 8 bits by their own range.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        transform: A.Compose,
        plain_transform: A.Compose | None = None,
        channels: int = 3,
        seed: int = 0,
        augment_until: int | None = None,
        window: tuple[float, float] | None = None,
        intensity: tuple[float, float] | None = None,
    ) -> None:
        self.samples = list(samples)
        self.window = window
        self.intensity = intensity
        self.transform = transform
        self.plain_transform = plain_transform or transform
        self.channels = channels
        self.seed = seed
        self.augment_until = augment_until
        self.epoch = 0

    def read_sample_image(self, sample: Sample) -> np.ndarray:
        """The sample's image as ``H x W x channels`` uint8, with the dataset's windows."""
        return read_image(
            sample.image, channels=self.channels, window=self.window, intensity=self.intensity
        )

    def __len__(self) -> int:
        return len(self.samples)

    def current_transform(self, epoch: int) -> A.Compose:
        """The pipeline for ``epoch``."""
        if self.augment_until is not None and epoch >= self.augment_until:
            return self.plain_transform
        return self.transform

    def locate(self, key: int | tuple[int, int]) -> tuple[int, int]:
        """``(epoch, index)`` of a key: the sampler's pair, or a plain index."""
        if isinstance(key, tuple):
            return key
        return self.epoch, int(key)

    def apply(self, epoch: int, index: int, **data: np.ndarray) -> dict[str, object]:
        """Runs the epoch's pipeline with a generator seeded by (seed, epoch, index)."""
        transform = self.current_transform(epoch)
        entropy = np.random.SeedSequence([self.seed, epoch, index]).generate_state(2)
        transform.set_random_state(
            np.random.default_rng(entropy), random.Random(int(entropy[0]) << 32 | int(entropy[1]))
        )
        out: dict[str, object] = transform(**data)
        return out


class ClassificationDataset(ImageDataset):
    """Yields ``(image CxHxW float tensor, class index tensor)``."""

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = self.locate(key)
        sample = self.samples[index]
        image = self.read_sample_image(sample)
        out = self.apply(epoch, index, image=image)
        label = -1 if sample.label is None else sample.label
        return out["image"], torch.tensor(label, dtype=torch.long)  # type: ignore[return-value]


class MultiLabelDataset(ImageDataset):
    """Yields ``(image CxHxW float tensor, 0/1 float tensor of the L labels)``."""

    def __init__(self, samples: Sequence[Sample], *, num_labels: int, **kwargs: Any) -> None:
        super().__init__(samples, **kwargs)
        self.num_labels = num_labels

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = self.locate(key)
        sample = self.samples[index]
        image = read_image(sample.image, channels=self.channels, window=self.window)
        out = self.apply(epoch, index, image=image)
        target = torch.zeros(self.num_labels, dtype=torch.float32)
        target[list(sample.label_set or ())] = 1.0
        return out["image"], target  # type: ignore[return-value]


class SegmentationDataset(ImageDataset):
    """Yields ``(image CxHxW float tensor, mask HxW int64 tensor)``.

    Args:
        decode_mask: Reads a mask file into an ``H x W`` array of class indices (the
            ``masks`` format's decoder with the config's palette and ignore index).
        **kwargs: As :class:`ImageDataset`.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        decode_mask: Callable[[str], np.ndarray],
        **kwargs: Any,
    ) -> None:
        super().__init__(samples, **kwargs)
        self.decode_mask = decode_mask

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The image (H x W x C uint8) and mask (H x W) of sample ``index``, unresized."""
        sample = self.samples[index]
        image = self.read_sample_image(sample)
        mask: np.ndarray
        if sample.mask is None:
            mask = np.zeros(image.shape[:2], dtype=np.uint8)
        else:
            mask = self.decode_mask(sample.mask)
            if not mask.flags.writeable:  # a view of the file's buffer; torch wants its own
                mask = mask.copy()
            if mask.shape != image.shape[:2]:
                mask_h, mask_w = int(mask.shape[0]), int(mask.shape[1])
                raise DataError(
                    f"mask size {mask_w}x{mask_h} differs from the image's "
                    f"{image.shape[1]}x{image.shape[0]}",
                    where=sample.mask,
                    hint="masks must have their image's width and height",
                )
        return image, mask

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = self.locate(key)
        image, mask = self.read(index)
        out = self.apply(epoch, index, image=image, mask=mask)
        target = torch.as_tensor(np.asarray(out["mask"]), dtype=torch.long)
        return out["image"], target  # type: ignore[return-value]


class DetectionDataset(ImageDataset):
    """Yields ``(image CxHxW float tensor, {"boxes": (N, 4) xyxy, "labels": (N,)})``.

    Boxes are in the pixels of the returned (resized) image. With ``crop_size`` the
    image is first cut to a crop of that size (for large images): during training a
    random crop, centred on a random object with probability ``crop_object_prob``;
    in evaluation a fixed crop per image (seeded by its index), so that validation
    metrics compare across epochs. Boxes are clipped to the crop and dropped when
    less than :data:`~mediscope.data.transforms.MIN_BOX_VISIBILITY` of them is inside.

    Args:
        crop_size: ``(H, W)`` of the crop, or None for whole images.
        crop_object_prob: Share of crops placed on an object.
        train: Random crops (training) or fixed ones (evaluation).
        **kwargs: As :class:`ImageDataset`.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        crop_size: tuple[int, int] | None = None,
        crop_object_prob: float = 0.8,
        train: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(samples, **kwargs)
        self.crop_size = crop_size
        self.crop_object_prob = crop_object_prob
        self.train = train

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The image (H x W x C uint8), its boxes (N, 4) and labels (N,), uncropped."""
        sample = self.samples[index]
        image = self.read_sample_image(sample)
        boxes = np.zeros((0, 4), np.float32) if sample.boxes is None else sample.boxes
        labels = np.zeros(0, np.int64) if sample.box_labels is None else sample.box_labels
        return image, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)

    def crop(
        self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A crop of ``crop_size`` (whole sides where the image is smaller)."""
        assert self.crop_size is not None
        height, width = image.shape[:2]
        ch, cw = min(self.crop_size[0], height), min(self.crop_size[1], width)
        if len(boxes) and rng.random() < self.crop_object_prob:
            box = boxes[rng.integers(len(boxes))]
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            x0 = int(np.clip(cx - rng.uniform(0.15, 0.85) * cw, 0, width - cw))
            y0 = int(np.clip(cy - rng.uniform(0.15, 0.85) * ch, 0, height - ch))
        else:
            x0 = int(rng.integers(0, width - cw + 1))
            y0 = int(rng.integers(0, height - ch + 1))
        return (image[y0 : y0 + ch, x0 : x0 + cw], *crop_boxes(boxes, labels, x0, y0, cw, ch))

    def __getitem__(  # type: ignore[override]
        self, key: int | tuple[int, int]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        epoch, index = self.locate(key)
        image, boxes, labels = self.read(index)
        if self.crop_size is not None:
            crop_epoch = epoch if self.train else 0
            entropy = np.random.SeedSequence([self.seed, crop_epoch, index, 7]).generate_state(2)
            image, boxes, labels = self.crop(image, boxes, labels, np.random.default_rng(entropy))
        out = self.apply(epoch, index, image=image, bboxes=boxes, labels=labels)
        out_boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        out_labels = np.asarray(out["labels"], dtype=np.int64).reshape(-1)
        target = {"boxes": torch.from_numpy(out_boxes), "labels": torch.from_numpy(out_labels)}
        return out["image"], target  # type: ignore[return-value]


def crop_boxes(
    boxes: np.ndarray, labels: np.ndarray, x0: int, y0: int, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes moved into a crop, clipped, and dropped when mostly outside it."""
    from mediscope.data.transforms import MIN_BOX_VISIBILITY

    if not len(boxes):
        return boxes, labels
    moved = boxes - np.array([x0, y0, x0, y0], dtype=np.float32)
    clipped = moved.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, width)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, height)
    area = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
    kept_area = (clipped[:, 2] - clipped[:, 0]).clip(0) * (clipped[:, 3] - clipped[:, 1]).clip(0)
    keep = (kept_area >= MIN_BOX_VISIBILITY * np.maximum(area, 1e-6)) & (kept_area > 0)
    return clipped[keep], labels[keep]


def detection_collate(
    batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Stacks images; targets stay a list (each image has its own number of boxes)."""
    images = torch.stack([item[0] for item in batch])
    return images, [item[1] for item in batch]
