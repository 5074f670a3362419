"""The optuna pieces a worker is built from: the pruner and sampler a run names, and optuna's
logging turned down to warnings. optuna is imported inside each, off the training path."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from study.errors import UsageError
from study.orchestra.options import PRUNERS
from study.storage.schema import curve_step

if TYPE_CHECKING:
    import optuna


def make_pruner(name: str, *, curve_points: int, budget: float) -> optuna.pruners.BasePruner:
    """``median`` waits for a quarter of the budget: early on, small models always lead.
    Steps are ``curve_step`` s (budget seconds)."""
    import optuna

    def step(index: int) -> int:
        return curve_step(index, budget=budget, curve_points=curve_points)

    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=5, n_warmup_steps=step(max(1, curve_points // 4))
        )
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=step(1), max_resource=step(curve_points))
    raise UsageError(f"unknown pruner {name!r}; use {', '.join(PRUNERS)}")


def make_sampler(
    sweep_sampler: Callable[..., Any] | None, *, seed: int
) -> optuna.samplers.BaseSampler:
    """The sweep's own sampler if it has one, else TPE."""
    import optuna

    if sweep_sampler is not None:
        sampler: optuna.samplers.BaseSampler = sweep_sampler(seed=seed)
        return sampler
    # constant_liar keeps parallel workers from sampling the same point while trials run.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
