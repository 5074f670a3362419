"""The five-minute study's search space: width, depth, learning rate, positional scheme, MLP,
weight decay, dropout, the optimizer (AdamW or Muon), the schedule (cosine or warmup-stable-decay)
and the embedding shortcut.

Widths step roughly by 1.5x so size is searched on a log scale; heads are 32 wide below 256 and
64 wide from there, which keeps every width valid for rope (even head dimension). Regularisation
is searched because a fast device repeats a small corpus many times in five minutes, and there
the best model is the best regularised one (``sweeps.ladder_gpu``): AdamW weight decay on a log
scale from 0.01 to 3 (decoupled: each step shrinks weights by lr x weight decay) and dropout from
0 to 0.3.

Of the recipe's switches (``docs/recipe.md``) those that paid where they were measured are
searched. On the 2-core CPU at 300 s (the best CPU configuration, one seed, held-out bits per
byte): Muon (its default learning rate 0.02 on the hidden matrices, ``lr`` on the rest) 0.9745
warmup-stable-decay 0.9930 and the embedding shortcut 0.9980 against 1.0203. On an H200 at 120 s
the embedding shortcut again (0.5781 against 0.5809; Muon untuned and WSD did not pay there). The others measured worse on both (vocabularies 1024 and 2048, ReLU^2 +
RMSNorm + QK-norm, value embeddings): ``--sweep modern`` has them.
"""

from __future__ import annotations

from typing import Any

from study.config import ModelConfig, TrainConfig

WIDTHS = (64, 96, 128, 192, 256, 384, 512)


def n_head_for(d_model: int) -> int:
    """Heads of 32 dimensions below width 256, of 64 from there."""
    return max(1, d_model // (32 if d_model < 256 else 64))


def suggest(trial: Any) -> TrainConfig:
    d_model = trial.suggest_categorical("d_model", list(WIDTHS))
    n_layer = trial.suggest_int("n_layer", 1, 6)
    lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    pos = trial.suggest_categorical("pos", ["learned", "rope"])
    mlp = trial.suggest_categorical("mlp", ["swiglu", "gelu"])
    weight_decay = trial.suggest_float("weight_decay", 0.01, 3.0, log=True)
    dropout = trial.suggest_float("dropout", 0.0, 0.3)
    optimizer = trial.suggest_categorical("optimizer", ["adamw", "muon"])
    schedule = trial.suggest_categorical("schedule", ["cosine", "wsd"])
    embed_shortcut = trial.suggest_categorical("embed_shortcut", [False, True])
    model = ModelConfig(
        n_layer=n_layer,
        d_model=d_model,
        n_head=n_head_for(d_model),
        pos=pos,
        mlp=mlp,
        dropout=dropout,
        embed_shortcut=embed_shortcut,
    )
    return TrainConfig(
        model=model,
        lr=lr,
        weight_decay=weight_decay,
        optimizer=optimizer,
        schedule=schedule,
    )
