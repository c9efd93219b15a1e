"""A weighted mean over an epoch's batches, reduced over every process under DDP."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class WeightedMean(Metric):
    """The mean of batch values weighted by batch sizes; NaN and inf stay in it.

    Its two sums are added over processes, so under DDP it is the mean over every
    process's samples, however unevenly they are shared out.

    Examples:
        >>> mean = WeightedMean()
        >>> mean.update(torch.tensor(1.5), 2)
        >>> mean.update(torch.tensor(1.0), 6)
        >>> float(mean.compute())
        1.125
    """

    full_state_update = False
    total: torch.Tensor
    weight: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("weight", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, value: torch.Tensor, weight: int | float) -> None:
        """Adds a batch's mean ``value`` over ``weight`` samples."""
        self.total += value.detach().float() * weight
        self.weight += weight

    def compute(self) -> torch.Tensor:
        """The weighted mean (NaN before any update)."""
        return self.total / self.weight
