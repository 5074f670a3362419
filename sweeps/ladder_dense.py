"""The CPU size ladder at 1.4x steps: twelve fixed GPTs from 0.1 M to 3.9 M parameters.

``ladder`` steps by about 2x, so a five-minute CPU optimum is known only within a factor of 2-4.
This ladder steps by 1.27-1.54x (1.39x on average) over the same lower range, 0.105, 0.144,
0.184, 0.25, 0.36, 0.48, 0.73, 0.92, 1.3, 1.9, 2.6 and 3.9 M total parameters at vocab 4096, rope,
SwiGLU, so the loss minimum and the held-out prediction test have neighbours on both sides of the
optimum. Rung names shared with ``ladder`` are the same models. The learning rate follows width
(``sweeps.ladders.lr_for``); weight decay is the default 0.1 (a CPU trial sees its data at most a
few times, see ``study.data.budget``).
"""

from __future__ import annotations

from sweeps.ladders import Ladder

# name -> (n_layer, d_model)
SIZES: dict[str, tuple[int, int]] = {
    "L1-d24": (1, 24),
    "L1-d32": (1, 32),
    "L1-d40": (1, 40),
    "L2-d48": (2, 48),
    "L2-d64": (2, 64),
    "L2-d80": (2, 80),
    "L3-d96": (3, 96),
    "L2-d128": (2, 128),
    "L4-d128": (4, 128),
    "L4-d160": (4, 160),
    "L4-d192": (4, 192),
    "L5-d224": (5, 224),
}
LADDER = Ladder(SIZES)

config_for = LADDER.config
suggest = LADDER.suggest
sampler = LADDER.sampler
