"""Positional schemes and MLP types at a fixed size: the ladder's L4-d128 GPT (1.3 M parameters).

Eight cells, pos (learned, rope, alibi, none) x mlp (swiglu, gelu), walked evenly like
``sweeps.archs`` (least-tried cell first), the learning rate drawn log-uniformly from [1e-3, 1e-2]
by a seeded random sampler so repeated trials of a cell scan it; compare the best trial per cell.
The two MLPs hold the same weights (8 d^2 per layer, study.models.gpt.mlp_hidden); learned
positions add seq_len x d_model = 32,768 embedding parameters, the other schemes none.
"""

from __future__ import annotations

from typing import Any

from study.config import POS_SCHEMES, ModelConfig, TrainConfig
from sweeps import balanced_sampler
from sweeps.archs import LR_RANGE

N_LAYER, D_MODEL, N_HEAD = 4, 128, 4
CELLS = [f"{pos}+{mlp}" for pos in POS_SCHEMES for mlp in ("swiglu", "gelu")]


def suggest(trial: Any) -> TrainConfig:
    pos, mlp = trial.suggest_categorical("cell", CELLS).split("+")
    lr = trial.suggest_float("lr", *LR_RANGE, log=True)
    model = ModelConfig(n_layer=N_LAYER, d_model=D_MODEL, n_head=N_HEAD, pos=pos, mlp=mlp)
    return TrainConfig(model=model, lr=lr)


def sampler(*, seed: int) -> Any:
    return balanced_sampler("cell", seed=seed)
