"""Pure fits: throughput against size, the Chinchilla crossover, and the loss law L(N, D).

Everything here takes arrays and returns frozen result objects: no I/O, no prints, no plots.
Soft problems (a parameter at a bound, an optimiser that did not converge, an extrapolation)
come back in ``warnings``; inputs no fit can use raise :class:`~study.errors.UsageError`.

Notation: N is total parameters, D tokens seen, T(N) steady-state tokens per second, ``budget``
wall-clock training seconds, so a model of size N sees D(N) = T(N) * budget tokens.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from study.errors import UsageError

FloatArray = NDArray[np.float64]

# ---------------------------------------------------------------------------------------------
# Throughput: T(N) = c * N^-k
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThroughputFit:
    """tokens/s = c * N^-k, fitted by least squares on log T against log N.

    ``c_low``/``c_high`` and ``k_low``/``k_high`` bound a bootstrap interval at ``level``
    (resampling the points with replacement); ``boot_c``/``boot_k`` are the replicates, kept so
    that quantities derived from the fit (the crossover) get intervals from the same draws.
    """

    c: float
    k: float
    r2: float
    n_points: int
    n_min: float
    n_max: float
    c_low: float
    c_high: float
    k_low: float
    k_high: float
    level: float
    boot_c: tuple[float, ...] = field(repr=False)
    boot_k: tuple[float, ...] = field(repr=False)
    device: str | None = None
    warnings: tuple[str, ...] = ()

    def tokens_per_second(self, n: ArrayLike) -> FloatArray:
        return self.c * np.asarray(n, dtype=np.float64) ** -self.k


# Below this ratio of largest to smallest size, run-to-run noise in tokens/s outweighs the slope.
MIN_SIZE_SPAN = 1.5


def fit_throughput(
    params: ArrayLike,
    tokens_per_second: ArrayLike,
    *,
    n_boot: int = 1000,
    level: float = 0.9,
    seed: int = 0,
    device: str | None = None,
) -> ThroughputFit:
    """Fit T(N) = c * N^-k in log-log space, with a bootstrap interval on c and k.

    Raises:
        UsageError: fewer than two distinct sizes, sizes spanning less than ``MIN_SIZE_SPAN``,
            or a non-positive or non-finite value.
    """
    n = _positive_finite("params", params)
    t = _positive_finite("tokens_per_second", tokens_per_second)
    if n.shape != t.shape:
        raise UsageError(f"params and tokens_per_second differ in length ({n.size} vs {t.size})")
    if np.unique(n).size < 2:
        raise UsageError(
            f"a throughput fit needs at least two distinct model sizes, got {np.unique(n).size}"
            + (f" for device {device}" if device else "")
        )
    if n.max() < MIN_SIZE_SPAN * n.min():
        raise UsageError(
            f"a throughput fit needs sizes spanning at least {MIN_SIZE_SPAN:g}x, got "
            f"{n.min():.4g} to {n.max():.4g}" + (f" on device {device}" if device else "")
            + " (a study at one size, such as the positions sweep, has no size axis)"
        )
    if not 0 < level < 1:
        raise UsageError(f"level must be in (0, 1), got {level}")
    x, y = np.log(n), np.log(t)
    slope, intercept = _line(x, y)
    resid = y - (intercept + slope * x)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / total if total > 0 else 1.0

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n.size, size=(n_boot, n.size))
    bx, by = x[idx], y[idx]  # (n_boot, n_points)
    bxm, bym = bx.mean(axis=1, keepdims=True), by.mean(axis=1, keepdims=True)
    sxx = ((bx - bxm) ** 2).sum(axis=1)
    ok = sxx > 1e-12 * max(1.0, float(x.var()))  # a resample of one size has no slope
    bslope = ((bx - bxm) * (by - bym)).sum(axis=1)[ok] / sxx[ok]
    bintercept = bym[ok, 0] - bslope * bxm[ok, 0]
    boot_c, boot_k = np.exp(bintercept), -bslope

    warnings: list[str] = []
    if n.size < 4:
        warnings.append(f"only {n.size} points; the bootstrap interval is rough")
    if ok.sum() < 0.9 * n_boot:
        dropped = n_boot - int(ok.sum())
        warnings.append(f"{dropped} bootstrap resamples held one size and were dropped")
    if -slope <= -1:
        warnings.append(f"k = {-slope:.3g} <= -1: tokens/s grows faster than N, no crossover")
    q = ((1 - level) / 2, 1 - (1 - level) / 2)
    c_low, c_high = _quantiles(boot_c, q, float(np.exp(intercept)))
    k_low, k_high = _quantiles(boot_k, q, float(-slope))
    return ThroughputFit(
        c=float(np.exp(intercept)),
        k=float(-slope),
        r2=r2,
        n_points=int(n.size),
        n_min=float(n.min()),
        n_max=float(n.max()),
        c_low=c_low,
        c_high=c_high,
        k_low=k_low,
        k_high=k_high,
        level=level,
        boot_c=tuple(boot_c.tolist()),
        boot_k=tuple(boot_k.tolist()),
        device=device,
        warnings=tuple(warnings),
    )


def fit_throughput_by_device(
    params: ArrayLike,
    tokens_per_second: ArrayLike,
    devices: Sequence[str],
    *,
    n_boot: int = 1000,
    level: float = 0.9,
    seed: int = 0,
) -> dict[str, ThroughputFit]:
    """One :func:`fit_throughput` per distinct device label, in sorted label order."""
    n = np.asarray(params, dtype=np.float64)
    t = np.asarray(tokens_per_second, dtype=np.float64)
    labels = np.asarray(list(devices), dtype=object)
    if not n.shape == t.shape == labels.shape:
        raise UsageError("params, tokens_per_second and devices differ in length")
    return {
        str(dev): fit_throughput(
            n[labels == dev], t[labels == dev], n_boot=n_boot, level=level, seed=seed,
            device=str(dev),
        )
        for dev in sorted(set(labels.tolist()))
    }


# ---------------------------------------------------------------------------------------------
# Crossover: T(N) * budget = ratio * N
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Crossover:
    """The size N* whose tokens in ``budget`` seconds equal ``ratio`` * N* (20: Chinchilla)."""

    n_star: float
    tokens_at_n_star: float
    tokens_per_second_at_n_star: float
    n_star_low: float
    n_star_high: float
    level: float
    budget: float
    ratio: float
    c: float
    k: float
    extrapolated: bool
    warnings: tuple[str, ...] = ()


def crossover_n(c: float, k: float, *, budget: float, ratio: float) -> float:
    """Closed form: c * N^-k * budget = ratio * N  =>  N* = (c * budget / ratio)^(1 / (1 + k)).

    Raises:
        UsageError: k <= -1 (tokens in budget never fall below ratio * N) or bad arguments.
    """
    if not (budget > 0 and ratio > 0 and c > 0):
        raise UsageError(f"crossover needs positive c, budget and ratio (c={c}, "
                         f"budget={budget}, ratio={ratio})")
    if 1 + k <= 0:
        raise UsageError(f"no crossover: throughput exponent k = {k:.3g} <= -1")
    return float(math.exp((math.log(c) + math.log(budget) - math.log(ratio)) / (1 + k)))


def solve_crossover(fit: ThroughputFit, *, budget: float, ratio: float = 20.0) -> Crossover:
    """N* from the fit, with an interval from the fit's bootstrap replicates."""
    n_star = crossover_n(fit.c, fit.k, budget=budget, ratio=ratio)
    bc, bk = np.asarray(fit.boot_c), np.asarray(fit.boot_k)
    ok = 1 + bk > 0
    boot = np.exp((np.log(bc[ok]) + math.log(budget) - math.log(ratio)) / (1 + bk[ok]))
    q = ((1 - fit.level) / 2, 1 - (1 - fit.level) / 2)
    low, high = _quantiles(boot, q, n_star)
    warnings = list(fit.warnings)
    extrapolated = not fit.n_min <= n_star <= fit.n_max
    if extrapolated:
        warnings.append(
            f"N* = {n_star:.3g} lies outside the measured sizes "
            f"[{fit.n_min:.3g}, {fit.n_max:.3g}]: an extrapolation"
        )
    tps = float(fit.tokens_per_second(n_star))
    return Crossover(
        n_star=n_star,
        tokens_at_n_star=tps * budget,
        tokens_per_second_at_n_star=tps,
        n_star_low=low,
        n_star_high=high,
        level=fit.level,
        budget=float(budget),
        ratio=float(ratio),
        c=fit.c,
        k=fit.k,
        extrapolated=extrapolated,
        warnings=tuple(warnings),
    )


# ---------------------------------------------------------------------------------------------
# Loss law (Chinchilla Approach 3): L(N, D) = E + A / N^alpha + B / D^beta
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartGrid:
    """Initial values for L-BFGS, one run per point of the product grid.

    The default is the grid of Hoffmann et al. (2022) as given in issue 5, in the log-sum-exp
    parametrisation a = log A, b = log B, e = log E.
    """

    alpha: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
    beta: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
    e: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5)
    a: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
    b: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)

    def starts(self) -> FloatArray:
        """(n_starts, 5) array of (a, b, e, alpha, beta)."""
        grid = itertools.product(self.a, self.b, self.e, self.alpha, self.beta)
        return np.array(list(grid), dtype=np.float64).reshape(-1, 5)


CHINCHILLA_GRID = StartGrid()


@dataclass(frozen=True)
class LossLawFit:
    """L(N, D) = E + A / N^alpha + B / D^beta and the compute-optimal exponents.

    With compute C ~ 6 N D, the loss-optimal allocation scales as N_opt ~ C^a and
    D_opt ~ C^b with ``a = beta / (alpha + beta)`` and ``b = alpha / (alpha + beta)``.
    ``objective`` is the summed Huber loss at the optimum; ``converged`` is the optimiser's own
    verdict for the winning start.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    a: float
    b: float
    objective: float
    delta: float
    n_points: int
    n_starts: int
    n_converged: int
    converged: bool
    n_range: tuple[float, float]
    d_range: tuple[float, float]
    warnings: tuple[str, ...] = ()

    def predict(self, n: ArrayLike, d: ArrayLike) -> FloatArray:
        n_arr = np.asarray(n, dtype=np.float64)
        d_arr = np.asarray(d, dtype=np.float64)
        return self.E + self.A * n_arr**-self.alpha + self.B * d_arr**-self.beta

    def as_dict(self) -> dict[str, float]:
        """Exactly the published quantities: E, A, B, alpha, beta, a, b."""
        return {
            "E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta,
            "a": self.a, "b": self.b,
        }


class HuberLogLoss:
    """Summed Huber loss of LSE(a - alpha log N, b - beta log D, e) - log L, with its gradient.

    Called with ``theta`` = (a, b, e, alpha, beta); returns ``(value, gradient)`` as
    ``scipy.optimize.minimize(jac=True)`` wants. Vectorised over the points, and the gradient
    is exact: with residual r, psi = clip(r, -delta, delta) the Huber derivative and w1, w2, w3
    the softmax weights of the three LSE terms,
    d/da = sum psi w1, d/db = sum psi w2, d/de = sum psi w3,
    d/dalpha = -sum psi w1 log N, d/dbeta = -sum psi w2 log D.
    """

    def __init__(
        self, log_n: FloatArray, log_d: FloatArray, log_loss: FloatArray, *, delta: float
    ) -> None:
        n = log_n.size
        # Rows of d(t)/d(theta) for t = [a - alpha log N ; b - beta log D], stacked: (2n, 5).
        jac = np.zeros((2, n, 5))
        jac[0, :, 0], jac[0, :, 3] = 1.0, -log_n
        jac[1, :, 1], jac[1, :, 4] = 1.0, -log_d
        self._jac = jac.reshape(2 * n, 5)
        self._n = n
        self._log_loss = np.asarray(log_loss, dtype=np.float64)
        self._delta = float(delta)

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray]:
        n, delta = self._n, self._delta
        t = self._jac @ theta  # (2n,)
        pred = np.logaddexp(np.logaddexp(t[:n], t[n:]), theta[2])  # (n,) log of the law
        r = pred - self._log_loss
        psi = np.maximum(np.minimum(r, delta), -delta)
        # psi * (r - psi/2) is r^2/2 inside the band and delta * (|r| - delta/2) outside it.
        value = float(np.dot(psi, r - 0.5 * psi))
        t -= np.concatenate((pred, pred))
        w = np.exp(t, out=t)  # softmax weights of the N and D terms, (2n,)
        w[:n] *= psi
        w[n:] *= psi
        grad = w @ self._jac
        grad[2] = psi.sum() - grad[0] - grad[1]  # the three weights sum to one
        return value, grad


def fit_loss_law(
    params: ArrayLike,
    tokens: ArrayLike,
    loss: ArrayLike,
    *,
    delta: float = 1e-3,
    grid: StartGrid = CHINCHILLA_GRID,
    max_iter: int = 1000,
) -> LossLawFit:
    """Chinchilla Approach 3: Huber loss (``delta``) on log loss, summed over points, minimised
    by L-BFGS with exact gradients from every start of ``grid``; the lowest final objective wins.

    One process and one BLAS thread on purpose: the objective is a handful of numpy calls on a
    few hundred points, so the cost is per call; forked workers and threaded BLAS both measured
    slower.

    Raises:
        UsageError: fewer than 5 points, a non-positive or non-finite value, or no start giving
            a finite objective.
    """
    n = _positive_finite("params", params)
    d = _positive_finite("tokens", tokens)
    loss_arr = _positive_finite("loss", loss)
    if not n.shape == d.shape == loss_arr.shape:
        raise UsageError("params, tokens and loss differ in length")
    if n.size < 5:
        raise UsageError(f"the loss law has 5 parameters and needs at least 5 points, got {n.size}")
    if not delta > 0:
        raise UsageError(f"Huber delta must be positive, got {delta}")
    starts = grid.starts()
    if starts.size == 0:
        raise UsageError("the grid of starts is empty")
    best_f, best_x, best_ok, n_converged = _run_starts(
        starts, np.log(n), np.log(d), np.log(loss_arr), delta=float(delta), max_iter=max_iter
    )
    if best_x is None:
        raise UsageError("the loss-law fit gave no finite objective from any start")

    log_a, log_b, log_e, alpha, beta = (float(v) for v in best_x)
    warnings: list[str] = []
    if not best_ok:
        warnings.append("the winning start did not converge (L-BFGS stopped early)")
    for name, value in (("alpha", alpha), ("beta", beta)):
        if value <= 0:
            warnings.append(f"{name} = {value:.3g} <= 0: the data do not constrain its term, "
                            f"and the exponents a, b mean nothing")
    if math.exp(log_e) < 1e-3 * float(loss_arr.min()):
        warnings.append(f"E = {math.exp(log_e):.3g}: the irreducible loss ran to zero, the "
                        f"data do not pin it down")
    if np.unique(n).size < 3:
        warnings.append("fewer than 3 distinct sizes: alpha and A are poorly determined")
    if n.size < 20:
        warnings.append(f"only {n.size} points for 5 parameters")
    total = alpha + beta
    a_exp = beta / total if total != 0 else math.nan
    b_exp = alpha / total if total != 0 else math.nan
    return LossLawFit(
        E=_safe_exp(log_e),
        A=_safe_exp(log_a),
        B=_safe_exp(log_b),
        alpha=alpha,
        beta=beta,
        a=a_exp,
        b=b_exp,
        objective=best_f,
        delta=delta,
        n_points=int(n.size),
        n_starts=int(starts.shape[0]),
        n_converged=n_converged,
        converged=best_ok,
        n_range=(float(n.min()), float(n.max())),
        d_range=(float(d.min()), float(d.max())),
        warnings=tuple(warnings),
    )


def _run_starts(
    starts: FloatArray,
    log_n: FloatArray,
    log_d: FloatArray,
    log_loss: FloatArray,
    *,
    delta: float,
    max_iter: int,
) -> tuple[float, FloatArray | None, bool, int]:
    """L-BFGS from each start; returns (best objective, its theta, its success, n converged)."""
    from scipy.optimize import minimize

    objective = HuberLogLoss(log_n, log_d, log_loss, delta=delta)
    best_f, best_x, best_ok, n_ok = math.inf, None, False, 0
    with _one_blas_thread(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for x0 in starts:
            res = minimize(
                objective, x0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter}
            )
            n_ok += bool(res.success)
            if math.isfinite(res.fun) and np.all(np.isfinite(res.x)) and res.fun < best_f:
                best_f, best_x, best_ok = float(res.fun), np.array(res.x), bool(res.success)
    return best_f, best_x, best_ok, n_ok


# ---------------------------------------------------------------------------------------------
# Loss-optimal size for a budget: minimise L(N, T(N) * budget) over N
# ---------------------------------------------------------------------------------------------


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
    law: LossLawFit,
    throughput: ThroughputFit,
    *,
    budget: float,
    n_bounds: tuple[float, float] | None = None,
) -> LossOptimal:
    """Minimise L(N, T(N) * budget) over log N on ``n_bounds`` (1-D bounded minimisation).

    The default bounds reach 1000x beyond the sizes either fit saw, on both sides.
    """
    from scipy.optimize import minimize_scalar

    if not budget > 0:
        raise UsageError(f"budget must be positive, got {budget}")
    if n_bounds is None:
        lo_seen = min(law.n_range[0], throughput.n_min)
        hi_seen = max(law.n_range[1], throughput.n_max)
        n_bounds = (lo_seen / 1e3, hi_seen * 1e3)
    lo, hi = (float(v) for v in n_bounds)
    if not 0 < lo < hi:
        raise UsageError(f"n_bounds must satisfy 0 < low < high, got {n_bounds}")

    def objective(log_n: float) -> float:
        n_val = math.exp(log_n)
        return float(law.predict(n_val, throughput.tokens_per_second(n_val) * budget))

    res = minimize_scalar(
        objective, bounds=(math.log(lo), math.log(hi)), method="bounded",
        options={"xatol": 1e-6},
    )
    n_opt = float(math.exp(res.x))
    tps = float(throughput.tokens_per_second(n_opt))
    tokens = tps * budget
    warnings: list[str] = []
    at_bound = abs(res.x - math.log(lo)) < 1e-3 or abs(res.x - math.log(hi)) < 1e-3
    if at_bound:
        warnings.append(f"the optimum sits at the search bound ({n_opt:.3g}): no interior minimum")
    if not res.success:
        warnings.append("the 1-D minimisation did not converge")
    extrapolated = not (law.n_range[0] <= n_opt <= law.n_range[1])
    if extrapolated:
        warnings.append(
            f"N_opt = {n_opt:.3g} lies outside the sizes the loss law saw "
            f"[{law.n_range[0]:.3g}, {law.n_range[1]:.3g}]"
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


# ---------------------------------------------------------------------------------------------
# Frontier
# ---------------------------------------------------------------------------------------------


def pareto_frontier(params: ArrayLike, metric: ArrayLike) -> NDArray[np.intp]:
    """Indices of the points no smaller-or-equal model beats (lower metric is better),
    in increasing size: each one strictly improves on every smaller point."""
    n = np.asarray(params, dtype=np.float64)
    m = np.asarray(metric, dtype=np.float64)
    keep: list[int] = []
    best = math.inf
    for i in np.lexsort((m, n)):  # by size, ties broken by metric
        if math.isfinite(m[i]) and m[i] < best:
            keep.append(int(i))
            best = float(m[i])
    return np.array(keep, dtype=np.intp)


# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """L-BFGS-B makes thousands of tiny BLAS calls; a threaded OpenBLAS wakes its workers for
    each, which measured 7x slower on 2 busy cores (scipy bundles its own OpenBLAS, so an
    environment variable set after import cannot reach it)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only speed depends on it
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _positive_finite(name: str, values: ArrayLike) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise UsageError(f"{name}: no values")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise UsageError(f"{name} must be positive and finite; value {i} is {arr[i]!r}")
    return arr


def _line(x: FloatArray, y: FloatArray) -> tuple[float, float]:
    xm, ym = x.mean(), y.mean()
    slope = float(((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum())
    return slope, float(ym - slope * xm)


def _quantiles(values: FloatArray, q: tuple[float, float], fallback: float) -> tuple[float, float]:
    if values.size == 0:
        return fallback, fallback
    low, high = np.quantile(values, q)
    return float(low), float(high)


def _safe_exp(value: float) -> float:
    return math.exp(value) if value < 700 else math.inf
