"""Pure fit of the loss law L(N, D) = E + A / N^alpha + B / D^beta (Chinchilla Approach 3); the
size it predicts is best when every size trains for the same wall-clock budget is in
:mod:`analysis.fits.loss_optimum`.

Arrays in, frozen results out: no I/O, no prints, no plots. Soft problems (a degenerate
exponent, an optimiser that did not converge, an optimum at the search bound) come back in
``warnings``; inputs no fit can use raise :class:`~analysis.fits.errors.FitError`. The law assumes
every token is fresh; :mod:`analysis.fits.data_constrained` holds its form for repeated data.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analysis.fits.core import positive_finite
from analysis.fits.errors import FitError

FloatArray = NDArray[np.float64]

# ---------------------------------------------------------------------------------------------
# Loss law (Chinchilla Approach 3): L(N, D) = E + A / N^alpha + B / D^beta
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartGrid:
    """Initial values for L-BFGS, one run per point of the product grid.

    The default is the grid of Hoffmann et al. (2022, Approach 3), with e reaching 1.5: 5,400
    starts in the log-sum-exp parametrisation a = log A, b = log B, e = log E. It reproduces
    Epoch AI's replication (tests/test_analysis_loss_law.py).
    """

    alpha: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
    beta: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
    e: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5)
    a: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
    b: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
    # starts beyond the product grid, each (a, b, e, alpha, beta): a known optimum, say
    extra: tuple[tuple[float, float, float, float, float], ...] = ()

    def starts(self) -> FloatArray:
        """(n_starts, 5) array of (a, b, e, alpha, beta): ``extra`` first, then the grid."""
        grid = [*self.extra, *itertools.product(self.a, self.b, self.e, self.alpha, self.beta)]
        return np.array(grid, dtype=np.float64).reshape(-1, 5)


CHINCHILLA_GRID = StartGrid()

# A fit on more points than this screens its starts (``_run_starts``): every start takes
# SCREEN_STEPS L-BFGS steps on SCREEN_POINTS of the points, spread over sizes and tokens, and the
# REFINE best distinct ones run to convergence on all of them. Each start of the full grid costs
# about 60 objective calls whatever the points, so a 500-trial study's 5,000 points took minutes;
# screened, a fit costs about the same at any size. Measured against the full grid: on Epoch
# AI's Chinchilla points and on fits of end-of-training and curve points of real and generated
# studies (418 to 5,258 points) the screened winner was the full grid's (objective within 1e-9);
# on end-of-training points alone of a generated 500-trial study, whose objective is a flat
# valley (each trial's tokens follow its size), it lands elsewhere in the valley (objective within
# 1e-5, E within 2%). Fits on fewer points, where the valleys are flatter still, keep every start.
SCREEN_POINTS = 256
SCREEN_STEPS = 10
REFINE = 128


class LossSurface(Protocol):
    """What :func:`~analysis.fits.loss_optimum.loss_optimal_n` needs of a law: a loss for (N, D), and the sizes it saw."""

    @property
    def n_range(self) -> tuple[float, float]: ...

    def predict(self, n: ArrayLike, d: ArrayLike) -> FloatArray: ...


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
    e_vanished: bool = False  # E fitted below 1/1000 of the lowest loss
    screened_on: int = 0  # points the starts were screened on (0: each ran on every point)

    def search(self) -> str:
        """How the starts were run, for the texts that show a fit."""
        text = f"best of {self.n_starts} L-BFGS starts"
        if self.screened_on:
            return (
                f"{text}, each screened by {SCREEN_STEPS} steps on {self.screened_on} of the "
                f"{self.n_points} points and the {REFINE} best distinct run on all "
                f"({self.n_converged} converged)"
            )
        return f"{text} ({self.n_converged} converged)"

    def predict(self, n: ArrayLike, d: ArrayLike) -> FloatArray:
        n_arr = np.asarray(n, dtype=np.float64)
        d_arr = np.asarray(d, dtype=np.float64)
        return self.E + self.A * n_arr**-self.alpha + self.B * d_arr**-self.beta

    def degenerate(self) -> tuple[str, ...]:
        """Why the constants cannot be extrapolated: an exponent that is not positive, or an
        irreducible loss run to zero; empty when neither."""
        why = [
            f"{name} = {value:.3g} <= 0: a degenerate exponent"
            for name, value in (("alpha", self.alpha), ("beta", self.beta))
            if not value > 0
        ]
        if self.e_vanished:
            why.append(f"E = {self.E:.3g}: the irreducible loss ran to zero")
        return tuple(why)

    def as_dict(self) -> dict[str, float]:
        """Exactly the published quantities: E, A, B, alpha, beta, a, b."""
        return {
            "E": self.E,
            "A": self.A,
            "B": self.B,
            "alpha": self.alpha,
            "beta": self.beta,
            "a": self.a,
            "b": self.b,
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
        value, psi = huber(pred - self._log_loss, delta=delta)
        t -= np.concatenate((pred, pred))
        w = np.exp(t, out=t)  # softmax weights of the N and D terms, (2n,)
        w[:n] *= psi
        w[n:] *= psi
        grad = w @ self._jac
        grad[2] = psi.sum() - grad[0] - grad[1]  # the three weights sum to one
        return value, grad


def huber(residual: FloatArray, *, delta: float) -> tuple[float, FloatArray]:
    """Summed Huber loss of ``residual`` and its derivative psi = clip(r, -delta, delta)."""
    psi = np.maximum(np.minimum(residual, delta), -delta)  # cheaper than np.clip per call
    # psi * (r - psi/2) is r^2/2 inside the band and delta * (|r| - delta/2) outside it.
    return float(np.dot(psi, residual - 0.5 * psi)), psi


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
    On more than ``SCREEN_POINTS`` points the starts are screened first (see ``SCREEN_POINTS``;
    the result's ``screened_on`` says so).

    One process and one BLAS thread on purpose: the objective is a handful of numpy calls on a
    few hundred points, so the cost is per call; forked workers and threaded BLAS both measured
    slower.

    Raises:
        FitError: fewer than 5 points, a non-positive or non-finite value, or no start giving
            a finite objective.
    """
    n = positive_finite("params", params)
    d = positive_finite("tokens", tokens)
    loss_arr = positive_finite("loss", loss)
    if not n.shape == d.shape == loss_arr.shape:
        raise FitError("params, tokens and loss differ in length")
    if n.size < 5:
        raise FitError(f"the loss law has 5 parameters and needs at least 5 points, got {n.size}")
    if not delta > 0:
        raise FitError(f"Huber delta must be positive, got {delta}")
    starts = grid.starts()
    if starts.size == 0:
        raise FitError("the grid of starts is empty")
    best_f, best_x, best_ok, n_converged, screened_on = _run_starts(
        starts, np.log(n), np.log(d), np.log(loss_arr), delta=float(delta), max_iter=max_iter
    )
    if best_x is None:
        raise FitError("the loss-law fit gave no finite objective from any start")

    log_a, log_b, log_e, alpha, beta = (float(v) for v in best_x)
    e_vanished = math.exp(log_e) < 1e-3 * float(loss_arr.min())
    warnings = _law_warnings(
        alpha,
        beta,
        math.exp(log_e),
        e_vanished=e_vanished,
        converged=best_ok,
        n_points=n.size,
        n_sizes=np.unique(n).size,
    )
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
        e_vanished=e_vanished,
        screened_on=screened_on,
    )


def _law_warnings(
    alpha: float,
    beta: float,
    e: float,
    *,
    e_vanished: bool,
    converged: bool,
    n_points: int,
    n_sizes: int,
) -> list[str]:
    """The soft problems of a loss-law fit, worst first."""
    warnings: list[str] = []
    if not converged:
        warnings.append("the winning start did not converge (L-BFGS stopped early)")
    for name, value in (("alpha", alpha), ("beta", beta)):
        if value <= 0:
            warnings.append(
                f"{name} = {value:.3g} <= 0: the data do not constrain its term, "
                f"and the exponents a, b mean nothing"
            )
    if e_vanished:
        warnings.append(
            f"E = {e:.3g}: the irreducible loss ran to zero, the data do not pin it down"
        )
    if n_sizes < 3:
        warnings.append("fewer than 3 distinct sizes: alpha and A are poorly determined")
    if n_points < 20:
        warnings.append(f"only {n_points} points for 5 parameters")
    return warnings


def _run_starts(
    starts: FloatArray,
    log_n: FloatArray,
    log_d: FloatArray,
    log_loss: FloatArray,
    *,
    delta: float,
    max_iter: int,
) -> tuple[float, FloatArray | None, bool, int, int]:
    """L-BFGS from each start (screened first on more than ``SCREEN_POINTS`` points); returns
    (best objective, its theta, its success, n converged, points screened on or 0)."""
    from scipy.optimize import minimize

    objective = HuberLogLoss(log_n, log_d, log_loss, delta=delta)
    best_f, best_x, best_ok, n_ok = math.inf, None, False, 0
    with _one_blas_thread(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        screened_on = 0
        if log_n.size > SCREEN_POINTS:
            keep = _spread(log_n, log_d, SCREEN_POINTS)
            screen = HuberLogLoss(log_n[keep], log_d[keep], log_loss[keep], delta=delta)
            starts, screened_on = _screen(starts, screen), SCREEN_POINTS
        for x0 in starts:
            res = minimize(
                objective, x0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter}
            )
            n_ok += bool(res.success)
            if math.isfinite(res.fun) and np.all(np.isfinite(res.x)) and res.fun < best_f:
                best_f, best_x, best_ok = float(res.fun), np.array(res.x), bool(res.success)
    return best_f, best_x, best_ok, n_ok, screened_on


def _spread(log_n: FloatArray, log_d: FloatArray, count: int) -> NDArray[np.intp]:
    """Indices of ``count`` points spread evenly over the points ordered by size, then tokens."""
    order = np.lexsort((log_d, log_n))
    return order[np.linspace(0, order.size - 1, count).round().astype(np.intp)]


def _screen(starts: FloatArray, screen: HuberLogLoss) -> FloatArray:
    """Where the ``REFINE`` best of ``starts`` get to in ``SCREEN_STEPS`` L-BFGS steps on the
    ``screen`` objective, at most one per basin (E, alpha and beta to one decimal)."""
    from scipy.optimize import minimize

    reached = []
    for x0 in starts:
        res = minimize(screen, x0, jac=True, method="L-BFGS-B", options={"maxiter": SCREEN_STEPS})
        if math.isfinite(res.fun) and np.all(np.isfinite(res.x)):
            reached.append((float(res.fun), res.x))
    reached.sort(key=lambda fx: fx[0])
    picked: dict[tuple[float, ...], FloatArray] = {}
    for _, x in reached:
        picked.setdefault(tuple(np.round(x[2:], 1)), x)
        if len(picked) == REFINE:
            break
    return np.array(list(picked.values()), dtype=np.float64).reshape(-1, 5)


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


def _safe_exp(value: float) -> float:
    return math.exp(value) if value < 700 else math.inf
