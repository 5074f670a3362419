"""A size ladder for the scaling analysis: nine fixed GPTs from 0.1 M to 8.7 M parameters.

Total parameters at the default 4096-token vocabulary (tied embeddings counted once, rope, SwiGLU):
0.11, 0.14, 0.25, 0.36, 0.73, 1.3, 2.6, 5.0 and 8.7 M, an 83x span, so the throughput fit T(N)
and the Chinchilla crossover are well posed. The sampler walks the ladder: each trial takes the
size with the fewest trials so far (smallest first on ties), so any number of trials covers the
sizes evenly. The learning rate follows width (larger models want smaller steps) rather than
being searched, so every trial is one point of the ladder, not a tuning run.
"""

from __future__ import annotations

import math
from typing import Any

from study.config import ModelConfig, TrainConfig
from sweeps.default import n_head_for

# name -> (n_layer, d_model)
SIZES: dict[str, tuple[int, int]] = {
    "L1-d24": (1, 24),
    "L1-d32": (1, 32),
    "L2-d48": (2, 48),
    "L2-d64": (2, 64),
    "L3-d96": (3, 96),
    "L4-d128": (4, 128),
    "L4-d192": (4, 192),
    "L5-d256": (5, 256),
    "L6-d320": (6, 320),
}


def lr_for(d_model: int) -> float:
    """3e-3 at width 256, scaled by 1/sqrt(width), kept within [1e-3, 1e-2]."""
    return min(1e-2, max(1e-3, 3e-3 * math.sqrt(256 / d_model)))


def config_for(name: str) -> TrainConfig:
    n_layer, d_model = SIZES[name]
    model = ModelConfig(n_layer=n_layer, d_model=d_model, n_head=n_head_for(d_model), pos="rope",
                        mlp="swiglu")
    return TrainConfig(model=model, lr=lr_for(d_model))


def suggest(trial: Any) -> TrainConfig:
    return config_for(trial.suggest_categorical("size", list(SIZES)))


def sampler(*, seed: int) -> Any:
    """A sampler that gives each trial the least-tried size (any state but waiting)."""
    import optuna
    from optuna.trial import TrialState

    tried = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL, TrialState.PRUNED)

    class LadderSampler(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self._fallback = optuna.samplers.RandomSampler(seed=seed)

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            return {}

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
            return {}

        def sample_independent(self, study: Any, trial: Any, param_name: str,
                               param_distribution: Any) -> Any:
            if param_name != "size":
                return self._fallback.sample_independent(study, trial, param_name,
                                                         param_distribution)
            counts = dict.fromkeys(param_distribution.choices, 0)
            for t in study.get_trials(deepcopy=False, states=tried):
                if t.params.get("size") in counts:
                    counts[t.params["size"]] += 1
            return min(counts, key=lambda name: counts[name])  # first of the least tried

    return LadderSampler()
