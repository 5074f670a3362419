"""The loss law for repeated data (Muennighoff et al. 2023, arXiv 2305.16264), and the choice
between it and Chinchilla's fresh-data law for a study's points.

    L(N, D, U) = E + A / N'^alpha + B / D'^beta
    D' = U + U R*_D (1 - exp(-R_D / R*_D)),      R_D = max(D / U - 1, 0)
    N' = U_N + U_N R*_N (1 - exp(-R_N / R*_N)),  R_N = max(N / U_N - 1, 0),
    U_N = min(N, N_opt(U_D)),  U_D = min(U, D)

U is the unique training tokens a point's corpus had, D the tokens it saw, U_D the unique tokens
it actually met, N_opt(U_D) the compute-optimal size for U_D tokens under the Chinchilla
constants: N_opt(D) = G (D G)^(beta / alpha), G = (alpha A / (beta B))^(1 / (alpha + beta)), as
in the authors' repository (huggingface/datablations, "Parametric Fit"). The data term is
Chinchilla's exactly when D <= U; the parameter term is when N <= N_opt(U_D), so the whole law
is Chinchilla's for fresh data and a model no larger than compute-optimal for it. Their fit gave
R*_D = 15.39 and R*_N = 5.31.

Arrays in, frozen results out; soft problems in ``warnings``, unusable input raises
:class:`~analysis.fits.errors.FitError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analysis.fits.core import positive_finite
from analysis.fits.errors import FitError
from analysis.fits.loss_law import CHINCHILLA_GRID, LossLawFit, StartGrid, fit_loss_law, huber
from study.fmt import fmt_count

FloatArray = NDArray[np.float64]

# Muennighoff et al. (2023), huggingface/datablations README ("Parametric Fit").
PUBLISHED_RD_STAR = 15.387756
PUBLISHED_RN_STAR = 5.309743
# R* beyond these bounds changes no prediction a study can check: at R* = 1e4, 1,000 epochs are
# still worth 95% of fresh data; below 0.1 a repeat is worth almost nothing.
R_STAR_BOUNDS = (0.1, 1e4)


def effective_data(tokens: ArrayLike, unique: ArrayLike, *, rd_star: float) -> FloatArray:
    """D' = U + U R*_D (1 - exp(-R_D / R*_D)) with R_D = D / U - 1; exactly D when D <= U."""
    d, u = np.asarray(tokens, dtype=np.float64), np.asarray(unique, dtype=np.float64)
    repeats = np.maximum(d / u - 1.0, 0.0)
    return np.where(d <= u, d, u + u * rd_star * -np.expm1(-repeats / rd_star))


def effective_params(params: ArrayLike, unique_params: ArrayLike, *, rn_star: float) -> FloatArray:
    """N' = U_N + U_N R*_N (1 - exp(-R_N / R*_N)), U_N = min(N, ``unique_params``); exactly N
    when N <= ``unique_params`` (parameters beyond what the unique data can use decay in value)."""
    n = np.asarray(params, dtype=np.float64)
    u_n = np.minimum(n, np.asarray(unique_params, dtype=np.float64))
    excess = np.maximum(n / u_n - 1.0, 0.0)
    return u_n + u_n * rn_star * -np.expm1(-excess / rn_star)


def optimal_params_for_tokens(tokens: ArrayLike, law: LossLawFit) -> FloatArray:
    """N_opt(D) = G (D G)^(beta / alpha), G = (alpha A / (beta B))^(1 / (alpha + beta)): the
    compute-optimal size for D tokens under ``law``; infinite when an exponent is not positive
    (then no parameter counts as excess)."""
    d = np.asarray(tokens, dtype=np.float64)
    if not (law.alpha > 0 and law.beta > 0):
        return np.full_like(d, math.inf)
    log_g = (math.log(law.alpha * law.A) - math.log(law.beta * law.B)) / (law.alpha + law.beta)
    return np.exp(log_g + (np.log(d) + log_g) * (law.beta / law.alpha))


def unique_params(tokens: ArrayLike, unique: ArrayLike, law: LossLawFit) -> FloatArray:
    """N_opt(U_D) with U_D = min(U, D): the size beyond which parameters count as excess."""
    d, u = np.asarray(tokens, dtype=np.float64), np.asarray(unique, dtype=np.float64)
    return optimal_params_for_tokens(np.minimum(u, d), law)


@dataclass(frozen=True)
class DataConstrainedFit:
    """Chinchilla's constants (``base``) with the decay constants R*_D and R*_N of repeated data
    and of parameters beyond what the unique data can use.

    ``rd_constrained``/``rn_constrained`` say whether any point reached the regime that decides
    that constant (a repeated token; a model above N_opt(U)); an unconstrained one keeps the
    published value.
    """

    base: LossLawFit
    rd_star: float
    rn_star: float
    rd_constrained: bool
    rn_constrained: bool
    objective: float
    converged: bool
    n_points: int
    n_fresh: int
    max_epochs: float
    n_range: tuple[float, float]
    stages: str
    warnings: tuple[str, ...] = ()

    def predict(self, n: ArrayLike, d: ArrayLike, unique: ArrayLike) -> FloatArray:
        """L(N, D, U) = E + A / N'^alpha + B / D'^beta."""
        b = self.base
        u_n = unique_params(d, unique, b)
        n_eff = effective_params(n, u_n, rn_star=self.rn_star)
        d_eff = effective_data(d, unique, rd_star=self.rd_star)
        return b.E + b.A * n_eff**-b.alpha + b.B * d_eff**-b.beta

    def surface(self, unique: float) -> DataConstrainedSurface:
        """The law at a fixed number of unique tokens, as :func:`~analysis.fits.loss_optimum.loss_optimal_n` takes it."""
        if not (unique > 0 and math.isfinite(unique)):
            raise FitError(f"unique tokens must be positive and finite, got {unique!r}")
        return DataConstrainedSurface(fit=self, unique=float(unique))

    def as_dict(self) -> dict[str, float]:
        """The Chinchilla constants and exponents with R*_D and R*_N."""
        return {**self.base.as_dict(), "rd_star": self.rd_star, "rn_star": self.rn_star}


@dataclass(frozen=True)
class DataConstrainedSurface:
    """A :class:`DataConstrainedFit` at one number of unique tokens: L(N, D) for that corpus."""

    fit: DataConstrainedFit = field(repr=False)
    unique: float

    @property
    def n_range(self) -> tuple[float, float]:
        return self.fit.n_range

    def predict(self, n: ArrayLike, d: ArrayLike) -> FloatArray:
        return self.fit.predict(n, d, np.full(np.shape(d), self.unique))


def fit_data_constrained(
    params: ArrayLike,
    tokens: ArrayLike,
    unique: ArrayLike,
    loss: ArrayLike,
    *,
    base: LossLawFit | None = None,
    delta: float = 1e-3,
    grid: StartGrid = CHINCHILLA_GRID,
) -> DataConstrainedFit:
    """Fit the data-constrained law in two stages: Chinchilla's five constants on the points
    that did not repeat their data (D <= U), then R*_D and R*_N on every point with those fixed,
    both by Huber loss (``delta``) on log loss.

    Why stages: fresh points decide E, A, B, alpha, beta (R*_D has no effect there; R*_N only on
    models above N_opt(D), which stage one fits without that discount, and a warning counts
    them), and on
    the few points of a short study a joint seven-parameter fit lets R*_D trade off against B
    and beta (a steeper data term with a faster decay draws the same repeated points). Fixing
    the constants first also keeps the law exactly Chinchilla's on fresh data. ``base`` skips
    stage one (constants from another fit, or published ones).

    Raises:
        FitError: bad values, differing lengths, no repeated point, or (without ``base``)
            fewer than 5 fresh points.
    """
    n, d = positive_finite("params", params), positive_finite("tokens", tokens)
    u, loss_arr = positive_finite("unique", unique), positive_finite("loss", loss)
    if not n.shape == d.shape == u.shape == loss_arr.shape:
        raise FitError("params, tokens, unique and loss differ in length")
    fresh = d <= u
    if fresh.all():
        raise FitError("no point repeats its data (D <= U everywhere): fit Chinchilla's law")
    warnings: list[str] = []
    stages = "R*_D and R*_N on all points, Chinchilla constants given"
    if base is None:
        base, stages = _fit_fresh_stage(n, d, u, loss_arr, fresh, delta, grid, warnings)
    rn_free = bool((n > unique_params(d, u, base)).any())
    if not rn_free:
        warnings.append(
            f"no model exceeds N_opt(U): R*_N is not constrained, kept at the "
            f"published {PUBLISHED_RN_STAR:g}"
        )
    rd_star, rn_star, objective, converged = _fit_r_stars(
        n, d, u, np.log(loss_arr), base=base, delta=delta, rn_free=rn_free
    )
    if not converged:
        warnings.append("the R* fit did not converge (L-BFGS stopped early)")
    warnings.extend(_bound_warnings(rd_star, rn_star, rn_free=rn_free))
    return DataConstrainedFit(
        base=base,
        rd_star=rd_star,
        rn_star=rn_star,
        rd_constrained=True,
        rn_constrained=rn_free,
        objective=objective,
        converged=converged,
        n_points=int(n.size),
        n_fresh=int(fresh.sum()),
        max_epochs=float((d / u).max()),
        n_range=(float(n.min()), float(n.max())),
        stages=stages,
        warnings=tuple(warnings),
    )


def _fit_fresh_stage(
    n: FloatArray,
    d: FloatArray,
    u: FloatArray,
    loss_arr: FloatArray,
    fresh: NDArray[np.bool_],
    delta: float,
    grid: StartGrid,
    warnings: list[str],
) -> tuple[LossLawFit, str]:
    """Stage one of :func:`fit_data_constrained`: Chinchilla's constants on the fresh points,
    and the stage description; its warnings are appended to ``warnings``."""
    if fresh.sum() < 5:
        raise FitError(
            f"the data-constrained law needs at least 5 points that saw their data at most "
            f"once (D <= U) to fix E, A, B, alpha, beta; got {int(fresh.sum())}"
        )
    base = fit_loss_law(n[fresh], d[fresh], loss_arr[fresh], delta=delta, grid=grid)
    stages = (
        f"Chinchilla constants on {int(fresh.sum())} fresh points, then R*_D and "
        f"R*_N on all {n.size}"
    )
    warnings.extend(f"Chinchilla stage: {w}" for w in base.warnings)
    big = int((n[fresh] > unique_params(d[fresh], u[fresh], base)).sum())
    if big:
        warnings.append(
            f"{big} of the {int(fresh.sum())} fresh points are above N_opt(D): "
            f"stage one fitted them without the excess-parameter discount"
        )
    return base, stages


def _bound_warnings(rd_star: float, rn_star: float, *, rn_free: bool) -> list[str]:
    """A warning for each fitted R* that sits at a bound of :data:`R_STAR_BOUNDS`."""
    warnings: list[str] = []
    for name, value, free, what in (
        ("R*_D", rd_star, True, "repeated tokens"),
        ("R*_N", rn_star, rn_free, "excess parameters"),
    ):
        if free and not R_STAR_BOUNDS[0] * 1.01 < value < R_STAR_BOUNDS[1] / 1.01:
            lo, hi = (fmt_count(v) for v in R_STAR_BOUNDS)
            warnings.append(
                f"{name} = {fmt_count(value)} sits at a bound of [{lo}, {hi}]: the "
                f"points do not resolve how fast {what} lose value"
            )
    return warnings


def _fit_r_stars(
    n: FloatArray,
    d: FloatArray,
    u: FloatArray,
    log_loss: FloatArray,
    *,
    base: LossLawFit,
    delta: float,
    rn_free: bool,
) -> tuple[float, float, float, bool]:
    """(R*_D, R*_N, objective, converged): L-BFGS-B over log R* from a small grid of starts."""
    from scipy.optimize import minimize

    u_n = unique_params(d, u, base)
    n_term = base.A * effective_params(n, u_n, rn_star=PUBLISHED_RN_STAR) ** -base.alpha

    def objective(log_r: FloatArray) -> float:
        rd = math.exp(log_r[0])
        nt = n_term
        if rn_free:
            nt = base.A * effective_params(n, u_n, rn_star=math.exp(log_r[1])) ** -base.alpha
        pred = base.E + nt + base.B * effective_data(d, u, rd_star=rd) ** -base.beta
        return huber(np.log(pred) - log_loss, delta=delta)[0]

    bounds = [(math.log(R_STAR_BOUNDS[0]), math.log(R_STAR_BOUNDS[1]))] * (2 if rn_free else 1)
    starts = np.log([1.0, PUBLISHED_RN_STAR, PUBLISHED_RD_STAR, 100.0])
    best: tuple[float, FloatArray, bool] = (math.inf, np.array([]), False)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for x0 in ([a, b] for a in starts for b in (starts if rn_free else starts[:1])):
            res = minimize(objective, np.array(x0[: len(bounds)]), method="L-BFGS-B", bounds=bounds)
            if math.isfinite(res.fun) and res.fun < best[0]:
                best = (float(res.fun), np.asarray(res.x), bool(res.success))
    if not best[1].size:
        raise FitError("the R* fit gave no finite objective from any start")
    rn = math.exp(best[1][1]) if rn_free else PUBLISHED_RN_STAR
    return math.exp(best[1][0]), rn, best[0], best[2]
