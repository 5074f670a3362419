"""The size ladder for a GPU: eight fixed GPTs from 0.36 M to 60 M parameters.

A GPU trains a 1 M-parameter model on billions of tokens in five minutes, so its Chinchilla
crossover lies well above the CPU ladder's 8.7 M top. This ladder spans 165x (0.36, 1.1, 2.6, 4.2,
8.7, 16, 32 and 60 M total parameters at vocab 4096, rope, SwiGLU) so the throughput fit brackets
the crossover instead of extrapolating to it. Same rules as ``ladder``: the sampler walks the sizes
evenly, smallest first, and the learning rate follows width.
"""

from __future__ import annotations

from sweeps.ladders import Ladder

# name -> (n_layer, d_model)
SIZES: dict[str, tuple[int, int]] = {
    "L2-d64": (2, 64),
    "L3-d128": (3, 128),
    "L4-d192": (4, 192),
    "L4-d256": (4, 256),
    "L6-d320": (6, 320),
    "L6-d448": (6, 448),
    "L6-d640": (6, 640),
    "L8-d768": (8, 768),
}
LADDER = Ladder(SIZES)

config_for = LADDER.config
suggest = LADDER.suggest
sampler = LADDER.sampler
