"""Regularisation under repeated data: weight decay and dropout on the sizes around and above the
GPU ladder's best.

A fast device repeats the shared TinyStories corpus (5.4 M tokens) hundreds of times in five
minutes, so the best model is the one that memorises least. ``ladder_gpu`` (weight decay 1.0, no
dropout) measured on an H200 at 300 s: 1.1 M parameters best at 0.668 bits per byte, 1.9 M 0.698,
3.0 M 0.825 and every larger rung above 1.0 (train loss falling under 0.5: memorised). This sweep
asks how far stronger regularisation moves that answer: each trial is one cell of a grid, rung x
(weight decay, dropout), walked evenly in the order below (the first cells are the ones that can
move the best size: dropout on the ladder's best rungs and their larger neighbours). The learning
rate follows width, as on the ladders, so the cells differ only in what they regularise.

Measured on H200s at 300 s (``regularise-h200-300s``, the first 8 cells): dropout moved the best
size up, from 1.12 M without it (0.668 bits per byte) to 5.0 M at dropout 0.2 (0.573); the larger
the rung, the more dropout it wanted.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from study.config import TrainConfig
from sweeps import balanced_sampler
from sweeps.ladder_gpu import LADDER

PARAM = "cell"
RUNGS = ("L3-d128", "L4-d160", "L5-d192", "L5-d256")
# (weight decay, dropout), most promising first
SETTINGS: tuple[tuple[float, float], ...] = ((1.0, 0.1), (1.0, 0.2), (3.0, 0.0), (3.0, 0.1))


def cell_name(rung: str, weight_decay: float, dropout: float) -> str:
    """The stored name of a grid cell, e.g. ``L4-d160 wd1 do0.1``."""
    return f"{rung} wd{weight_decay:g} do{dropout:g}"


CELLS: dict[str, tuple[str, float, float]] = {
    cell_name(rung, wd, do): (rung, wd, do) for wd, do in SETTINGS for rung in RUNGS
}


def config_for(cell: str) -> TrainConfig:
    """The training config of grid cell ``cell`` (a key of ``CELLS``): its rung of the GPU
    ladder, regularised as the cell says."""
    rung, weight_decay, dropout = CELLS[cell]
    return dataclasses.replace(LADDER, weight_decay=weight_decay, dropout=dropout).config(rung)


def suggest(trial: Any) -> TrainConfig:
    return config_for(trial.suggest_categorical(PARAM, list(CELLS)))


def sampler(*, seed: int) -> Any:
    """Each trial takes the least-tried cell, first in ``CELLS`` order on ties."""
    return balanced_sampler(PARAM, seed=seed)
