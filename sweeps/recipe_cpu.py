"""The CPU recipe screen: the speedrun switches that paid one at a time, combined on the CPU's
best size, and one factor varied at a time around the combination.

``results/compare-recipes-cpu-300s.txt`` measured each switch alone on the 0.25 M model of
``ladder_dense`` (2 x 48, 1 head, rope, SwiGLU; 300 s on the idle 2-core CPU, 262,565 held-out
bytes): Muon -4.5% bits per byte, warmup-stable-decay -2.7%, the embedding shortcut -2.2%, while
ReLU^2 + RMSNorm + QK-norm (+2.0%) and the smaller vocabularies (+5.2%, +10.9%) lost. This sweep
trains the three winners together (``RECIPE``) and, cell by cell, moves one setting of that
combination: Muon's learning rate, the AdamW learning rate (embeddings, head, gains), the batch
size (more, smaller steps) and the decay's share of the budget. Every trial is scored on the same
held-out text (``EVAL_BYTES``), as in that comparison, so the numbers compare with it. The
winning cell's settings are the recipe ``recipe_ladder_cpu`` walks the sizes with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from study.config import ModelConfig, TrainConfig
from sweeps import balanced_sampler
from sweeps.ladder_dense import SIZES
from sweeps.ladders import Ladder

PARAM = "cell"
RUNG = "L2-d48"
EVAL_BYTES = 262_144
# The combination: the switches that paid alone on this model
RECIPE: dict[str, Any] = {"optimizer": "muon", "schedule": "wsd", "eval_bytes": EVAL_BYTES}
MODEL = ModelConfig(pos="rope", mlp="swiglu", embed_shortcut=True)

# cell -> (TrainConfig fields over RECIPE, learning-rate scale), the combination first
CELLS: dict[str, tuple[Mapping[str, Any], float]] = {
    "muon+wsd+shortcut": ({}, 1.0),
    "muon_lr 0.04": ({"muon_lr": 0.04}, 1.0),
    "adam lr x2": ({}, 2.0),
    "batch 16": ({"batch_size": 16}, 1.0),
    "cooldown 0.8": ({"cooldown_frac": 0.8}, 1.0),
}


def ladder(cell: str, rungs: Sequence[str] = tuple(SIZES)) -> Ladder:
    """The ``ladder_dense`` sizes ``rungs`` trained with the settings of screen cell ``cell``."""
    fields, lr_scale = CELLS[cell]
    sizes = {name: SIZES[name] for name in rungs}
    return Ladder(sizes, base=MODEL, recipe={**RECIPE, **fields}, lr_scale=lr_scale)


def config_for(cell: str) -> TrainConfig:
    """The training config of screen cell ``cell`` (a key of ``CELLS``) on ``RUNG``."""
    return ladder(cell).config(RUNG)


def suggest(trial: Any) -> TrainConfig:
    return config_for(trial.suggest_categorical(PARAM, list(CELLS)))


def sampler(*, seed: int) -> Any:
    """Each trial takes the least-tried cell, first in ``CELLS`` order on ties."""
    return balanced_sampler(PARAM, seed=seed)
