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
    ) -> None:
        self.samples = list(samples)
        self.window = window
        self.transform = transform
        self.plain_transform = plain_transform or transform
        self.channels = channels
        self.seed = seed
        self.augment_until = augment_until
        self.epoch = 0

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
        image = read_image(sample.image, channels=self.channels, window=self.window)
        out = self.apply(epoch, index, image=image)
        label = -1 if sample.label is None else sample.label
        return out["image"], torch.tensor(label, dtype=torch.long)  # type: ignore[return-value]


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
        image = read_image(sample.image, channels=self.channels, window=self.window)
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
