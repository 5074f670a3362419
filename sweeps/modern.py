"""The speedrun recipe's search space (``../shared/RECIPES.md``): the default sweep's size, depth,
learning rate and regularisation, and beside them the optimizer (AdamW or Muon with its own
learning rate and weight decay), the architecture switches (ReLU^2, parameter-free RMSNorm,
QK-norm, untied head, logit soft-cap, zero-initialised projections), the schedule (cosine or
warmup-stable-decay with its cooldown), weight averaging, the vocabulary and the batch size.

Scores compare in bits per byte only: trials of different vocabularies predict different tokens,
so their per-token losses and perplexities do not compare. ``VOCAB_SIZES`` declares every
vocabulary, so the study builds each one's tokenizer and token cache before the first trial
(``study.orchestra.vocabularies``), and scores every trial on the same held-out text,
``eval_bytes`` of whole stories (``DEFAULT_EVAL_BYTES`` there), so bits per byte are over
identical bytes (the study's recorded held-out digest is that of the probe trial's vocabulary).
``batch`` auto is the trainer's own pick for the device (32 rows on a CPU, 256 on CUDA); a
smaller batch buys more optimizer steps in the same time.

Nothing here is measured yet: this space is the one a study of these recipes should search, not
a claim about which switch pays.
"""

from __future__ import annotations

from typing import Any

from study.config import ModelConfig, TrainConfig
from sweeps.default import WIDTHS, n_head_for

VOCAB_SIZES = (1024, 2048, 4096)
BATCHES = ("auto", 16, 32, 64, 128, 256)
SOFTCAPS = (0.0, 15.0, 30.0)


def suggest(trial: Any) -> TrainConfig:
    d_model = trial.suggest_categorical("d_model", list(WIDTHS))
    model = ModelConfig(
        n_layer=trial.suggest_int("n_layer", 1, 8),
        d_model=d_model,
        n_head=n_head_for(d_model),
        pos=trial.suggest_categorical("pos", ["learned", "rope"]),
        mlp=trial.suggest_categorical("mlp", ["swiglu", "gelu", "relu2"]),
        vocab_size=trial.suggest_categorical("vocab_size", list(VOCAB_SIZES)),
        dropout=trial.suggest_float("dropout", 0.0, 0.3),
        norm=trial.suggest_categorical("norm", ["layernorm", "rmsnorm"]),
        qk_norm=trial.suggest_categorical("qk_norm", [False, True]),
        untied_head=trial.suggest_categorical("untied_head", [False, True]),
        logit_softcap=trial.suggest_categorical("logit_softcap", list(SOFTCAPS)),
        zero_init_proj=trial.suggest_categorical("zero_init_proj", [False, True]),
    )
    optimizer = trial.suggest_categorical("optimizer", ["adamw", "muon"])
    muon: dict[str, Any] = {}
    if optimizer == "muon":
        muon = {
            "muon_lr": trial.suggest_float("muon_lr", 0.005, 0.08, log=True),
            "muon_weight_decay": trial.suggest_float("muon_weight_decay", 0.0, 0.5),
        }
    schedule = trial.suggest_categorical("schedule", ["cosine", "wsd"])
    cooldown = trial.suggest_float("cooldown_frac", 0.2, 0.8) if schedule == "wsd" else 0.5
    batch = trial.suggest_categorical("batch", list(BATCHES))
    return TrainConfig(
        model=model,
        lr=trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        weight_decay=trial.suggest_float("weight_decay", 0.01, 3.0, log=True),
        optimizer=optimizer,
        schedule=schedule,
        cooldown_frac=cooldown,
        ema_decay=trial.suggest_categorical("ema_decay", [0.0, 0.99, 0.999]),
        batch_size=None if batch == "auto" else batch,
        **muon,
    )
