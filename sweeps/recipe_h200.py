"""The H200 recipe screen: the strongest regularised models of ``regularise`` grown larger, with
more dropout, and the one speedrun switch that paid on this GPU.

On an H200 a five-minute trial sees the bundled TinyStories sample (5.4 M tokens) a hundred times
or more, so the best model is the one that memorises least. ``regularise-h200-300s`` found dropout
moving the best size up, 1.1 M without it (0.668 bits per byte) to 5.0 M at dropout 0.2 (0.573),
8.7 M level with it (0.575) and the larger the rung the more dropout it wanted;
``results/compare-recipes-h200-120s.txt`` measured each speedrun switch on the 5.0 M model and
only the embedding shortcut paid (-0.5%; Muon untuned +1.7%, ReLU^2 + RMSNorm + QK-norm +2.2%,
the smaller vocabularies +3.3% and +7.5%, WSD level). This screen trains, with the shortcut and
weight decay 1.0, the 8.7 M rung at dropout 0.3 and 0.4 and the 14 M rung at 0.4, at 120 s in
one study; ``recipe_h200_final`` trains its winner for 300 s. Every trial is scored on the same
held-out text (``EVAL_BYTES``), as in that comparison.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from study.config import TrainConfig
from sweeps import balanced_sampler
from sweeps.ladder_gpu import LADDER

PARAM = "cell"
EVAL_BYTES = 262_144
SHORTCUT = dataclasses.replace(LADDER.base, embed_shortcut=True)
# cell -> (rung of the GPU ladder, dropout), most promising first
CELLS: dict[str, tuple[str, float]] = {
    "L6-d320 do0.3": ("L6-d320", 0.3),
    "L6-d320 do0.4": ("L6-d320", 0.4),
    "L7-d384 do0.4": ("L7-d384", 0.4),
}


def config_for(cell: str) -> TrainConfig:
    """The training config of screen cell ``cell`` (a key of ``CELLS``): its rung of the GPU
    ladder (weight decay 1.0) with the embedding shortcut, at the cell's dropout."""
    rung, dropout = CELLS[cell]
    ladder = dataclasses.replace(
        LADDER, base=SHORTCUT, dropout=dropout, recipe={"eval_bytes": EVAL_BYTES}
    )
    return ladder.config(rung)


def suggest(trial: Any) -> TrainConfig:
    return config_for(trial.suggest_categorical(PARAM, list(CELLS)))


def sampler(*, seed: int) -> Any:
    """Each trial takes the least-tried cell, first in ``CELLS`` order on ties."""
    return balanced_sampler(PARAM, seed=seed)
