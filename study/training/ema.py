"""An exponential moving average of the weights, the one evaluation scores (``--ema-decay``).

Updated after every optimizer step while the budget clock runs (its cost is the run's), swapped
into the model for evaluation with the clock paused. Early on the decay is capped at
``(1 + step) / (10 + step)`` (the usual warm start), so the average does not stay anchored to
the initial weights for ~1 / (1 - decay) steps of a run that may take only a few hundred.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch


def decay_at(step: int, decay: float) -> float:
    """The decay applied after optimizer step ``step`` (from 0): ``decay``, warm-started."""
    return min(decay, (1 + step) / (10 + step))


class WeightAverage:
    """EMA of ``params`` (in place tensors of a model), ``avg = d * avg + (1 - d) * p``."""

    def __init__(self, params: Sequence[torch.Tensor], *, decay: float) -> None:
        self.params = list(params)
        self.decay = decay
        with torch.no_grad():
            self.average = [p.detach().clone() for p in params]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        d = decay_at(self.updates, self.decay)
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1 - d)
        self.updates += 1

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """The model holds the average inside the block, its trained weights again after (in
        place: a captured CUDA graph keeps pointing at the same storage)."""
        with torch.no_grad():
            trained = [p.detach().clone() for p in self.params]
            torch._foreach_copy_(self.params, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, trained)
