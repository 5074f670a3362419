"""Bootstrap intervals of the loss law's constants and of the loss-optimal size it predicts.

The law is refitted on resamples of the configurations it was fitted on, drawn with replacement
by a generator of fixed seed: a configuration's points (its seeds, and each trial's curve points
where those were fitted) are drawn together, so neither the seeds of one configuration nor the
points of one trial are split between a resample and its complement. Each refit runs L-BFGS
from the full fit's optimum and from 32 starts spread over Chinchilla's grid (``REFIT_GRID``;
200 refits from its 5,400 starts would take an hour), the lowest objective winning; the
loss-optimal N is recomputed with the same throughput fit and search bounds. The intervals are
percentile intervals over the resamples that fitted.

Pure: arrays in, a frozen result out. Too few configurations to resample raises
:class:`~analysis.fits.errors.FitError`, which a command reports as the reason for no interval.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from analysis.fits.core import ThroughputFit
from analysis.fits.errors import FitError
from analysis.fits.loss_law import LossLawFit, StartGrid, fit_loss_law
from analysis.fits.loss_optimum import loss_optimal_n

CONSTANTS = ("E", "A", "B", "alpha", "beta")
# A resample of fewer configurations than the law has constants cannot pin them down.
MIN_GROUPS = len(CONSTANTS)
# Where a refit starts besides the full fit's optimum: two values per constant across
# Chinchilla's grid, 32 starts. Where the data leave the constants loose the resamples' optima
# lie in other basins, which one start at the full optimum would never leave (its interval
# would then be as narrow as the start, not as the data).
REFIT_GRID = StartGrid(
    alpha=(0.5, 1.5), beta=(0.5, 1.5), e=(-1.0, 1.0), a=(5.0, 20.0), b=(5.0, 20.0)
)


@dataclass(frozen=True)
class LawBootstrap:
    """Percentile intervals over ``n_fitted`` of ``n_boot`` resamples of ``n_groups``
    configurations (generator seed ``seed``): ``constants`` name -> (low, high), ``n_opt``
    device -> (low, high) of the loss-optimal N, ``n_opt_at_bound`` device -> how many
    resamples put that optimum on its search bound."""

    n_boot: int
    n_fitted: int
    n_groups: int
    seed: int
    level: float
    constants: dict[str, tuple[float, float]]
    n_opt: dict[str, tuple[float, float]] = field(default_factory=dict)
    n_opt_at_bound: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: the counts, the level and each interval as ``[low, high]``."""
        return {
            "n_boot": self.n_boot,
            "n_fitted": self.n_fitted,
            "n_groups": self.n_groups,
            "seed": self.seed,
            "level": self.level,
            "constants": {k: list(v) for k, v in self.constants.items()},
            "n_opt": {k: list(v) for k, v in self.n_opt.items()},
            "n_opt_at_bound": dict(self.n_opt_at_bound),
        }


def bootstrap_loss_law(
    params: ArrayLike,
    tokens: ArrayLike,
    loss: ArrayLike,
    *,
    groups: ArrayLike,
    law: LossLawFit,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
    throughputs: Mapping[str, tuple[ThroughputFit, float]] | None = None,
) -> LawBootstrap:
    """Intervals of ``law`` (fitted on these points) by resampling ``groups`` (one label per
    point: its configuration). ``throughputs``: device -> (throughput fit, budget) for the
    loss-optimal N's interval.

    Raises:
        FitError: ``n_boot`` below 1, ``level`` outside (0, 1), lengths that differ, or fewer
            than ``MIN_GROUPS`` configurations.
    """
    n, d, y = (np.asarray(v, dtype=float).ravel() for v in (params, tokens, loss))
    labels = np.asarray(groups, dtype=object).ravel()
    if not n.shape == d.shape == y.shape == labels.shape:
        raise FitError("params, tokens, loss and groups differ in length")
    if n_boot < 1:
        raise FitError(f"the bootstrap needs at least 1 resample, got {n_boot}")
    if not 0 < level < 1:
        raise FitError(f"level must lie in (0, 1), got {level}")
    names, index = np.unique(labels.astype(str), return_inverse=True)
    if names.size < MIN_GROUPS:
        raise FitError(
            f"only {names.size} configurations to resample; the law's {len(CONSTANTS)} "
            f"constants need at least {MIN_GROUPS}"
        )
    members = [np.flatnonzero(index == g) for g in range(names.size)]
    start = _starts(law)
    rng = np.random.default_rng(seed)
    fits: list[LossLawFit] = []
    for _ in range(n_boot):
        take = np.concatenate([members[g] for g in rng.integers(0, names.size, names.size)])
        try:
            fits.append(fit_loss_law(n[take], d[take], y[take], delta=law.delta, grid=start))
        except FitError:  # no finite objective from the start: this resample gives nothing
            continue
    fits = [f for f in fits if all(math.isfinite(getattr(f, c)) for c in CONSTANTS)]
    if not fits:
        raise FitError(f"none of the {n_boot} resamples gave a finite law")
    tail = 100 * (1 - level) / 2
    constants = {c: _percentiles([getattr(f, c) for f in fits], tail) for c in CONSTANTS}
    n_opt, at_bound = _optimum_intervals(law, fits, throughputs or {}, tail)
    return LawBootstrap(n_boot, len(fits), int(names.size), seed, level, constants, n_opt, at_bound)


def _starts(law: LossLawFit) -> StartGrid:
    """A resample's L-BFGS starts: ``law``'s optimum (log A, log B, log E; a constant run to 0
    or to infinity starts from the edge of Chinchilla's grid instead) and ``REFIT_GRID``."""

    def log(value: float, edge: float) -> float:
        return math.log(value) if 0 < value < math.inf else edge

    optimum = (log(law.A, 25.0), log(law.B, 25.0), log(law.E, -1.0), law.alpha, law.beta)
    return dataclasses.replace(REFIT_GRID, extra=(optimum,))


def _percentiles(values: list[float], tail: float) -> tuple[float, float]:
    low, high = np.percentile(np.asarray(values, dtype=float), [tail, 100 - tail])
    return float(low), float(high)


def _optimum_intervals(
    law: LossLawFit,
    fits: list[LossLawFit],
    throughputs: Mapping[str, tuple[ThroughputFit, float]],
    tail: float,
) -> tuple[dict[str, tuple[float, float]], dict[str, int]]:
    """Per device, the interval of the resamples' loss-optimal N and how many sat on a bound
    (the full fit's search bounds for every resample: a resample may lack an end size)."""
    intervals: dict[str, tuple[float, float]] = {}
    at_bound: dict[str, int] = {}
    for device, (throughput, budget) in throughputs.items():
        bounds = (
            min(law.n_range[0], throughput.n_min) / 1e3,
            max(law.n_range[1], throughput.n_max) * 1e3,
        )
        optima = []
        for f in fits:
            try:
                optima.append(loss_optimal_n(f, throughput, budget=budget, n_bounds=bounds))
            except FitError:
                continue
        values = [o.n_opt for o in optima if math.isfinite(o.n_opt)]
        if values:
            intervals[device] = _percentiles(values, tail)
            at_bound[device] = sum(o.at_bound for o in optima)
    return intervals, at_bound
