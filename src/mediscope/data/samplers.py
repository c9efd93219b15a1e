"""A shuffling sampler whose order is a function of (seed, epoch) only.

It yields ``(epoch, index)`` pairs, so the dataset knows the epoch of every item it
loads (augmentation seeds, augmentation schedule) even in worker processes, and a run
resumed at any epoch sees exactly the batches the uninterrupted run saw. Lightning
calls :meth:`set_epoch` before each epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` in an order drawn from ``(seed, epoch)``.

    Args:
        length: Number of samples.
        seed: The run's seed.
        shuffle: Draw a new permutation per epoch; else ascending order.
        weights: Per-sample weights: draw ``length`` samples with replacement in
            proportion to them (a class-balanced sampler).
    """

    def __init__(
        self,
        length: int,
        *,
        seed: int,
        shuffle: bool = True,
        weights: np.ndarray | None = None,
    ) -> None:
        self.length = length
        self.seed = seed
        self.shuffle = shuffle
        self.weights = None if weights is None else np.asarray(weights, float) / np.sum(weights)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose order :meth:`__iter__` yields."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = np.arange(self.length)
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.weights is not None:  # draws with replacement, in proportion to weights
            order = rng.choice(self.length, size=self.length, replace=True, p=self.weights)
        elif self.shuffle:
            order = rng.permutation(self.length)
        return ((self.epoch, int(i)) for i in order)

    def __len__(self) -> int:
        return self.length
