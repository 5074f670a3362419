"""The CPU size ladder with the screened recipe: ten ``ladder_dense`` sizes, 0.105 M to 1.9 M
parameters at 1.27-1.54x steps, trained with the settings of the winning cell of the
``recipe_cpu`` screen (``recipe-cpu-300s``: Muon, warmup-stable-decay, the embedding shortcut
and twice the width's AdamW learning rate), every trial scored on the same held-out bytes.
"""

from __future__ import annotations

from sweeps.ladder_dense import SIZES
from sweeps.recipe_cpu import ladder

CELL = "adam lr x2"
RUNGS = list(SIZES)[:10]
LADDER = ladder(CELL, RUNGS)

config_for = LADDER.config
suggest = LADDER.suggest
sampler = LADDER.sampler
