"""A size ladder for the scaling analysis: nine fixed GPTs from 0.1 M to 8.7 M parameters.

Total parameters at the default 4096-token vocabulary (tied embeddings counted once, rope, SwiGLU):
0.11, 0.14, 0.25, 0.36, 0.73, 1.3, 2.6, 5.0 and 8.7 M, an 83x span, so the throughput fit T(N)
and the Chinchilla crossover are well posed. The sampler walks the ladder: each trial takes the
size with the fewest trials so far (smallest first on ties), so any number of trials covers the
sizes evenly. The learning rate follows width (larger models want smaller steps) rather than
being searched, so every trial is one point of the ladder, not a tuning run.
"""

from __future__ import annotations

import math
from typing import Any

from study.config import ModelConfig, TrainConfig
from sweeps import balanced_sampler
from sweeps.default import n_head_for

# name -> (n_layer, d_model)
SIZES: dict[str, tuple[int, int]] = {
    "L1-d24": (1, 24),
    "L1-d32": (1, 32),
    "L2-d48": (2, 48),
    "L2-d64": (2, 64),
    "L3-d96": (3, 96),
    "L4-d128": (4, 128),
    "L4-d192": (4, 192),
    "L5-d256": (5, 256),
    "L6-d320": (6, 320),
}


def lr_for(d_model: int) -> float:
    """3e-3 at width 256, scaled by 1/sqrt(width), kept within [1e-3, 1e-2]."""
    return min(1e-2, max(1e-3, 3e-3 * math.sqrt(256 / d_model)))


def config_for(name: str, *, sizes: dict[str, tuple[int, int]] = SIZES) -> TrainConfig:
    """The ladder rung ``name`` of ``sizes`` (name -> (n_layer, d_model)): rope, SwiGLU."""
    n_layer, d_model = sizes[name]
    model = ModelConfig(n_layer=n_layer, d_model=d_model, n_head=n_head_for(d_model), pos="rope",
                        mlp="swiglu")
    return TrainConfig(model=model, lr=lr_for(d_model))


def suggest(trial: Any) -> TrainConfig:
    return config_for(trial.suggest_categorical("size", list(SIZES)))


def sampler(*, seed: int) -> Any:
    """Each trial takes the least-tried size, smallest first on ties."""
    return balanced_sampler("size", seed=seed)
