"""A shuffling sampler whose order is a function of (seed, epoch) only, shared out by rank.

It yields ``(epoch, index)`` pairs, so the dataset knows the epoch of every item it
loads (augmentation seeds, augmentation schedule) even in worker processes, and a run
resumed at any epoch sees exactly the batches the uninterrupted run saw.

Under DDP every rank draws the same epoch order and takes every ``world``-th item of it
from its ``rank`` on: the ranks' shares are disjoint, together they are the epoch's
order, and they change every epoch. The sampler is told its rank and the epoch by the
data module (Lightning's distributed sampler wrapper is not used), so it does not depend
on which Lightning release forwards ``set_epoch`` to a wrapped sampler.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

#: Set to a file path prefix, every sampler appends the indices it yields per epoch to
#: ``<prefix>.rank<N>.jsonl`` (one JSON line per epoch): how tests see what each rank drew.
LOG_ENV = "MEDISCOPE_SAMPLER_LOG"


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` in an order drawn from ``(seed, epoch)``, one rank's share.

    Args:
        length: Number of samples.
        seed: The run's seed.
        shuffle: Draw a new permutation per epoch; else ascending order.
        weights: Per-sample weights: draw ``length`` samples with replacement in
            proportion to them (a class-balanced sampler).
        rank: This process's rank among ``world`` (0 for a single process).
        world: How many processes share the data.
        drop_uneven: Give every rank the same number of samples (training: DDP steps
            in lockstep) by leaving out the last ``length % world`` items of the epoch's
            order, different items each shuffled epoch; else (evaluation) every sample
            is yielded exactly once and shares differ by at most one.
        epoch: The epoch to start at.

    Examples:
        >>> a = EpochSampler(10, seed=0, rank=0, world=2, drop_uneven=True)
        >>> b = EpochSampler(10, seed=0, rank=1, world=2, drop_uneven=True)
        >>> ia, ib = [i for _, i in a], [i for _, i in b]
        >>> len(ia), len(ib), sorted(ia + ib) == list(range(10))
        (5, 5, True)
    """

    def __init__(
        self,
        length: int,
        *,
        seed: int,
        shuffle: bool = True,
        weights: np.ndarray | None = None,
        rank: int = 0,
        world: int = 1,
        drop_uneven: bool = False,
        epoch: int = 0,
    ) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in 0..{world - 1}")
        self.length = length
        self.seed = seed
        self.shuffle = shuffle
        self.weights = None if weights is None else np.asarray(weights, float) / np.sum(weights)
        self.rank = rank
        self.world = world
        self.drop_uneven = drop_uneven
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose order :meth:`__iter__` yields."""
        self.epoch = epoch

    def epoch_order(self) -> np.ndarray:
        """The whole epoch's order (every rank's share), the same on every rank."""
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.weights is not None:  # draws with replacement, in proportion to weights
            return rng.choice(self.length, size=self.length, replace=True, p=self.weights)
        if self.shuffle:
            return rng.permutation(self.length)
        return np.arange(self.length)

    def indices(self) -> np.ndarray:
        """This rank's share of :meth:`epoch_order`."""
        order = self.epoch_order()
        if self.drop_uneven:
            order = order[: len(self) * self.world]
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        share = self.indices()
        _log_share(self, share)
        epoch = self.epoch
        return ((epoch, int(i)) for i in share)

    def __len__(self) -> int:
        if self.drop_uneven:
            return self.length // self.world
        return len(range(self.rank, self.length, self.world))


def _log_share(sampler: EpochSampler, share: np.ndarray) -> None:
    prefix = os.environ.get(LOG_ENV)
    if not prefix:
        return
    line = {
        "epoch": sampler.epoch,
        "rank": sampler.rank,
        "world": sampler.world,
        "shuffle": sampler.shuffle,
        "length": sampler.length,
        "indices": [int(i) for i in share],
    }
    with open(f"{prefix}.rank{sampler.rank}.jsonl", "a", encoding="utf-8") as file:
        file.write(json.dumps(line) + "\n")
