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
        """The law at a fixed number of unique tokens, as :func:`loss_optimal_n` takes it."""
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


# ---------------------------------------------------------------------------------------------
# Which law fits the study's regime
# ---------------------------------------------------------------------------------------------

# Up to about 4 epochs repeated tokens are worth nearly as much as fresh ones (Muennighoff et al.
# 2023, their Figure 3: at 4 epochs D' = 3.72 U of 4 U seen), so the fresh-data law still holds.
FRESH_EPOCHS = 4.0


@dataclass(frozen=True)
class ChosenLaw:
    """The law fitted to a study's points, which form it is and why.

    ``form`` is ``"chinchilla"`` or ``"data-constrained"``; exactly the matching one of
    ``chinchilla``/``data_constrained`` is set. ``n_dropped`` counts points the fit left out.
    """

    form: str
    reason: str
    chinchilla: LossLawFit | None
    data_constrained: DataConstrainedFit | None
    max_epochs: float
    n_points: int
    n_dropped: int
    warnings: tuple[str, ...] = ()

    @property
    def n_range(self) -> tuple[float, float]:
        return self._law().n_range

    def surface(self, unique: float | None) -> LossLawFit | DataConstrainedSurface:
        """L(N, D) for a corpus of ``unique`` tokens (ignored by the fresh-data law, which
        predicts as if every token were new)."""
        if self.data_constrained is not None:
            if unique is None:
                raise FitError("the data-constrained law needs the unique tokens to predict")
            return self.data_constrained.surface(unique)
        assert self.chinchilla is not None
        return self.chinchilla

    def predict(self, n: ArrayLike, d: ArrayLike, unique: ArrayLike | None = None) -> FloatArray:
        if self.data_constrained is not None:
            if unique is None:
                raise FitError("the data-constrained law needs the unique tokens to predict")
            return self.data_constrained.predict(n, d, unique)
        assert self.chinchilla is not None
        return self.chinchilla.predict(n, d)

    def constants(self) -> dict[str, float]:
        """E, A, B, alpha, beta, a, b, and for the data-constrained law R*_D and R*_N."""
        return self._law().as_dict()

    def as_dict(self) -> dict[str, object]:
        return {
            "form": self.form,
            "reason": self.reason,
            "max_epochs": self.max_epochs,
            "n_points": self.n_points,
            "n_dropped": self.n_dropped,
            "constants": self.constants(),
            "warnings": list(self.warnings),
        }

    def _law(self) -> LossLawFit | DataConstrainedFit:
        law = self.data_constrained or self.chinchilla
        assert law is not None
        return law


def choose_law(
    params: ArrayLike,
    tokens: ArrayLike,
    loss: ArrayLike,
    *,
    unique: ArrayLike | None,
    fresh_epochs: float = FRESH_EPOCHS,
    delta: float = 1e-3,
    grid: StartGrid = CHINCHILLA_GRID,
    base: LossLawFit | None = None,
) -> ChosenLaw:
    """Fit the law that matches the points' regime and say which and why.

    Every point within ``fresh_epochs`` (D / U): Chinchilla's law on all of them. Any point
    beyond: the data-constrained law; where it cannot be fitted (fewer than 5 fresh points),
    Chinchilla's law on the points within ``fresh_epochs`` only, the rest dropped and counted.
    Without ``unique`` (U not recorded) Chinchilla's law, with a warning that its fresh-data
    assumption went unchecked. The fresh-data law is never fitted to points beyond
    ``fresh_epochs``. ``base`` (Chinchilla constants fitted elsewhere, on fresh data) lets the
    data-constrained law be fitted where no point is fresh; it only fits R*_D and R*_N then.

    Raises:
        FitError: bad values, or too few points for any law.
    """
    n, d, loss_arr = (
        positive_finite(k, v) for k, v in (("params", params), ("tokens", tokens), ("loss", loss))
    )
    if not n.shape == d.shape == loss_arr.shape:
        raise FitError("params, tokens and loss differ in length")
    if unique is None:
        law = fit_loss_law(n, d, loss_arr, delta=delta, grid=grid)
        note = (
            "unique tokens were not recorded: Chinchilla's law assumes every token was "
            "fresh, and that could not be checked"
        )
        return ChosenLaw(
            "chinchilla", note, law, None, math.nan, int(n.size), 0, (note, *law.warnings)
        )
    u = positive_finite("unique", unique)
    epochs = d / u
    top = float(epochs.max())
    over = epochs > fresh_epochs
    if not over.any():
        law = fit_loss_law(n, d, loss_arr, delta=delta, grid=grid)
        reason = (
            f"every point within {fresh_epochs:g} epochs (at most {fmt_count(top)}): "
            "repeated tokens are worth nearly as much as fresh ones there, so "
            "Chinchilla's law"
        )
        return ChosenLaw("chinchilla", reason, law, None, top, int(n.size), 0, law.warnings)
    why = (
        f"{int(over.sum())} of {n.size} points beyond {fresh_epochs:g} epochs (up to "
        f"{fmt_count(top)}): a fresh-data law would count their repeated tokens as new"
    )
    try:
        dc = fit_data_constrained(n, d, u, loss_arr, delta=delta, grid=grid, base=base)
    except FitError as exc:
        keep = ~over
        if keep.sum() < 5:
            raise FitError(
                f"{why}; the data-constrained law cannot be fitted ({exc}), and "
                f"only {int(keep.sum())} points lie within {fresh_epochs:g} "
                f"epochs"
            ) from None
        law = fit_loss_law(n[keep], d[keep], loss_arr[keep], delta=delta, grid=grid)
        reason = (
            f"{why}; the data-constrained law cannot be fitted ({exc}), so Chinchilla's "
            f"law on the {int(keep.sum())} points within {fresh_epochs:g} epochs"
        )
        return ChosenLaw(
            "chinchilla",
            reason,
            law,
            None,
            top,
            int(n.size),
            int(over.sum()),
            (f"{int(over.sum())} points beyond {fresh_epochs:g} epochs left out", *law.warnings),
        )
    reason = f"{why}, so the data-constrained law of Muennighoff et al. 2023 ({dc.stages})"
    return ChosenLaw("data-constrained", reason, None, dc, top, int(n.size), 0, dc.warnings)
