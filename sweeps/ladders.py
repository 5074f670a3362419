"""The one size-ladder factory: a fixed list of GPT sizes, each a complete config, walked evenly.

Every size ladder in the project is a ``Ladder``: the sweeps ``ladder`` and ``ladder_dense``
(CPU), ``ladder_large`` and ``ladder_gpu`` (GPU), and the sizes ``python -m bench`` measures. A
ladder names its rungs (name -> (n_layer, d_model)) and fills in the rest from one template, so a
rung means the same model wherever it is used. As a sweep, a ladder's ``suggest`` draws the
categorical parameter ``size`` (a rung name) and its ``sampler`` gives each trial the least-tried
rung, smallest first on ties; studies already stored in a database hold ``size`` with exactly
these names.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from study.config import ModelConfig, TrainConfig
from study.errors import UsageError
from sweeps import balanced_sampler
from sweeps.default import n_head_for

PARAM = "size"


def lr_for(d_model: int) -> float:
    """3e-3 at width 256, scaled by 1/sqrt(width), kept within [1e-3, 1e-2]."""
    return min(1e-2, max(1e-3, 3e-3 * math.sqrt(256 / d_model)))


@dataclass(frozen=True)
class Ladder:
    """Rungs ``sizes`` (name -> (n_layer, d_model), smallest first) of the model ``base``.

    ``head_dim`` fixes the head width (``n_head = d_model // head_dim``); without it heads follow
    ``sweeps.default.n_head_for`` (32 wide below width 256, 64 from there). The learning rate of
    a rung follows its width (``lr_for``) rather than being searched, so every trial of a ladder
    is one point of it, not a tuning run. ``weight_decay`` and ``dropout`` are the ladder's
    regularisation, the same on every rung. ``recipe`` holds further ``TrainConfig`` fields
    every rung trains with (optimizer, schedule, batch size ...), and ``lr_scale`` multiplies the
    width's learning rate: a ladder of a screened recipe keeps the screen's winning settings.
    """

    sizes: Mapping[str, tuple[int, int]]
    base: ModelConfig = field(default_factory=lambda: ModelConfig(pos="rope", mlp="swiglu"))
    head_dim: int | None = None
    weight_decay: float = TrainConfig.weight_decay
    dropout: float = 0.0
    recipe: Mapping[str, Any] = field(default_factory=dict)
    lr_scale: float = 1.0

    @property
    def names(self) -> list[str]:
        """The rung names, in ladder order."""
        return list(self.sizes)

    def model(self, name: str) -> ModelConfig:
        """The network of rung ``name``.

        Raises:
            UsageError: ``name`` is not a rung of this ladder.
        """
        if name not in self.sizes:
            raise UsageError(f"unknown size {name!r}; sizes: {', '.join(self.sizes)}")
        n_layer, d_model = self.sizes[name]
        n_head = d_model // self.head_dim if self.head_dim else n_head_for(d_model)
        return dataclasses.replace(
            self.base, n_layer=n_layer, d_model=d_model, n_head=n_head, dropout=self.dropout
        )

    def config(self, name: str) -> TrainConfig:
        """Rung ``name`` as a training config: its network, the learning rate of its width (times
        ``lr_scale``), the ladder's weight decay and its recipe."""
        model = self.model(name)
        lr = lr_for(model.d_model) * self.lr_scale
        return TrainConfig(model=model, lr=lr, weight_decay=self.weight_decay, **self.recipe)

    def suggest(self, trial: Any) -> TrainConfig:
        """The sweep's ``suggest``: the rung the trial's sampler picks for ``size``."""
        return self.config(trial.suggest_categorical(PARAM, self.names))

    def sampler(self, *, seed: int) -> Any:
        """The sweep's ``sampler``: each trial takes the least-tried rung (smallest on ties)."""
        return balanced_sampler(PARAM, seed=seed)
