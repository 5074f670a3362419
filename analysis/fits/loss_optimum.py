"""The size a loss law predicts is best when every size trains for the same wall-clock budget:
minimise L(N, T(N) * budget) over N, T the measured throughput.

Frozen results out; soft problems (an optimum at the search bound, outside the sizes the law saw,
a minimiser that did not converge) in ``warnings``; unusable input raises
:class:`~analysis.fits.errors.FitError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from analysis.fits.core import ThroughputFit
from analysis.fits.errors import FitError
from analysis.fits.loss_law import LossSurface
from study.fmt import fmt_count


@dataclass(frozen=True)
class LossOptimal:
    """The size the loss law predicts is best when every size trains for ``budget`` seconds."""

    n_opt: float
    tokens: float
    tokens_per_second: float
    loss: float
    tokens_per_param: float
    budget: float
    n_bounds: tuple[float, float]
    at_bound: bool
    extrapolated: bool
    warnings: tuple[str, ...] = ()


def loss_optimal_n(
    law: LossSurface,
    throughput: ThroughputFit,
    *,
    budget: float,
    n_bounds: tuple[float, float] | None = None,
) -> LossOptimal:
    """Minimise L(N, T(N) * budget) over log N on ``n_bounds`` (1-D bounded minimisation).

    ``law`` is any :class:`LossSurface`: a :class:`LossLawFit`, or a data-constrained fit bound
    to the study's unique tokens (:meth:`analysis.fits.data_constrained.DataConstrainedFit.surface`).
    The default bounds reach 1000x beyond the sizes either fit saw, on both sides.
    """
    from scipy.optimize import minimize_scalar

    if not budget > 0:
        raise FitError(f"budget must be positive, got {budget}")
    if n_bounds is None:
        lo_seen = min(law.n_range[0], throughput.n_min)
        hi_seen = max(law.n_range[1], throughput.n_max)
        n_bounds = (lo_seen / 1e3, hi_seen * 1e3)
    lo, hi = (float(v) for v in n_bounds)
    if not 0 < lo < hi:
        raise FitError(f"n_bounds must satisfy 0 < low < high, got {n_bounds}")

    def objective(log_n: float) -> float:
        n_val = math.exp(log_n)
        return float(law.predict(n_val, throughput.tokens_per_second(n_val) * budget))

    res = minimize_scalar(
        objective,
        bounds=(math.log(lo), math.log(hi)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    n_opt = float(math.exp(res.x))
    tps = float(throughput.tokens_per_second(n_opt))
    tokens = tps * budget
    warnings: list[str] = []
    at_bound = abs(res.x - math.log(lo)) < 1e-3 or abs(res.x - math.log(hi)) < 1e-3
    if at_bound:
        warnings.append(
            f"the optimum sits at the search bound ({fmt_count(n_opt)}): no interior minimum"
        )
    if not res.success:
        warnings.append("the 1-D minimisation did not converge")
    extrapolated = not (law.n_range[0] <= n_opt <= law.n_range[1])
    if extrapolated:
        warnings.append(
            f"N_opt = {fmt_count(n_opt)} lies outside the sizes the loss law saw "
            f"[{fmt_count(law.n_range[0])}, {fmt_count(law.n_range[1])}]"
        )
    return LossOptimal(
        n_opt=n_opt,
        tokens=tokens,
        tokens_per_second=tps,
        loss=float(res.fun),
        tokens_per_param=tokens / n_opt,
        budget=float(budget),
        n_bounds=(lo, hi),
        at_bound=bool(at_bound),
        extrapolated=extrapolated,
        warnings=tuple(warnings),
    )
