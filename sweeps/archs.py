"""GPT, LSTM and masked diffusion at matched parameter counts, one cell (arch, size) per trial.

At the default 4096-token vocabulary each size fixes the width, so the tied embedding (about half
the parameters at these sizes) is the same for every architecture, and depth makes up the rest:
a transformer layer holds about 12 d^2 weights (attention 4 d^2, SwiGLU MLP 8 d^2) and an LSTM
layer 8 d^2, so an LSTM of 3u layers matches a transformer of 2u layers. Totals (tied embeddings
counted once, the diffusion model's extra [MASK] row included), in parameters:

    size   width  GPT / diffusion layers  LSTM layers  GPT       diffusion  LSTM
    0.6M     96          2                     3        614,880   614,976    616,800
    0.9M    128          2                     3        920,192   920,320    920,704
    1.7M    192          2                     3      1,672,128 1,672,320  1,675,968
    4.2M    256          4                     6      4,212,992 4,213,248  4,206,848

The cells are walked evenly (each trial takes the least-tried cell, first in order on ties), so
any number of trials covers them; the learning rate is drawn log-uniformly from [1e-3, 1e-2] by a
seeded random sampler, so repeated trials of a cell scan it. Compare the best trial per cell.
Transformers use rope and SwiGLU (the ladder's choice); the diffusion model's number is an upper
bound (``val_is_bound``), see study/models/diffusion.py for what it covers.
"""

from __future__ import annotations

from typing import Any

from study.config import ARCHS, ModelConfig, TrainConfig
from sweeps import balanced_sampler
from sweeps.default import n_head_for

# size -> (d_model, transformer layers); LSTMs take 3/2 as many layers.
SIZES: dict[str, tuple[int, int]] = {
    "0.6M": (96, 2),
    "0.9M": (128, 2),
    "1.7M": (192, 2),
    "4.2M": (256, 4),
}
LR_RANGE = (1e-3, 1e-2)
CELLS = [f"{arch}@{size}" for size in SIZES for arch in ARCHS]


def model_for(arch: str, size: str) -> ModelConfig:
    """The model of ``arch`` at ``size`` (a key of SIZES)."""
    d_model, layers = SIZES[size]
    if arch == "lstm":
        return ModelConfig(arch="lstm", n_layer=layers * 3 // 2, d_model=d_model)
    return ModelConfig(
        arch=arch,
        n_layer=layers,
        d_model=d_model,
        n_head=n_head_for(d_model),
        pos="rope",
        mlp="swiglu",
    )


def suggest(trial: Any) -> TrainConfig:
    arch, size = trial.suggest_categorical("cell", CELLS).split("@")
    lr = trial.suggest_float("lr", *LR_RANGE, log=True)
    return TrainConfig(model=model_for(arch, size), lr=lr)


def sampler(*, seed: int) -> Any:
    return balanced_sampler("cell", seed=seed)
