"""A size ladder for the scaling analysis: nine fixed GPTs from 0.1 M to 8.7 M parameters.

Total parameters at the default 4096-token vocabulary (tied embeddings counted once, rope, SwiGLU):
0.11, 0.14, 0.25, 0.36, 0.73, 1.3, 2.6, 5.0 and 8.7 M, an 83x span, so the throughput fit T(N)
and the Chinchilla crossover are well posed. The sampler walks the ladder: each trial takes the
size with the fewest trials so far (smallest first on ties), so any number of trials covers the
sizes evenly. The learning rate follows width (larger models want smaller steps) rather than
being searched, so every trial is one point of the ladder, not a tuning run.
"""

from __future__ import annotations

from sweeps.ladders import Ladder, lr_for

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
LADDER = Ladder(SIZES)

config_for = LADDER.config
suggest = LADDER.suggest
sampler = LADDER.sampler

__all__ = ["LADDER", "SIZES", "config_for", "lr_for", "sampler", "suggest"]
