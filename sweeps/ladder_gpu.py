"""The GPU size ladder for repeated data: ten GPTs from 0.36 M to 32 M parameters, weight decay 1.0.

On a GPU a five-minute trial sees the shared TinyStories corpus (5.4 M tokens) hundreds of times,
and without strong regularisation larger models memorise it (``ladder_large`` at weight decay
0.1: the 8.7 M model reached train loss 0.18 and held-out 5.3 nats). This ladder trains every rung
with AdamW weight decay 1.0 (decoupled, so each step shrinks weights by lr x 1.0), the setting an
H200 probe found best (1.1 M model: 0.664 bits per byte at 300 s against 0.710 at 0.1). Sizes step
by 1.5-1.8x: 0.36, 0.62, 1.1, 1.9, 3.0, 5.0, 8.7, 14, 21 and 32 M total parameters (vocab 4096,
rope, SwiGLU); the learning rate follows width (``sweeps.ladders.lr_for``).
"""

from __future__ import annotations

from sweeps.ladders import Ladder

# name -> (n_layer, d_model)
SIZES: dict[str, tuple[int, int]] = {
    "L2-d64": (2, 64),
    "L2-d96": (2, 96),
    "L3-d128": (3, 128),
    "L4-d160": (4, 160),
    "L5-d192": (5, 192),
    "L5-d256": (5, 256),
    "L6-d320": (6, 320),
    "L7-d384": (7, 384),
    "L6-d512": (6, 512),
    "L6-d640": (6, 640),
}
WEIGHT_DECAY = 1.0
LADDER = Ladder(SIZES, weight_decay=WEIGHT_DECAY)

config_for = LADDER.config
suggest = LADDER.suggest
sampler = LADDER.sampler
