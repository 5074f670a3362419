"""Pure fits: throughput against size, the Chinchilla crossover, and the Pareto frontier.

The loss law L(N, D) lives in :mod:`analysis.fits.loss_law`, its data-constrained form in
:mod:`analysis.fits.data_constrained`; both share :func:`positive_finite` from here.

Everything here takes arrays and returns frozen result objects: no I/O, no prints, no plots.
Soft problems (a parameter at a bound, an optimiser that did not converge, an extrapolation)
come back in ``warnings``; inputs no fit can use raise :class:`~analysis.fits.errors.FitError`.

Notation: N is total parameters, D tokens seen, T(N) steady-state tokens per second, ``budget``
wall-clock training seconds, so a model of size N sees D(N) = T(N) * budget tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analysis.fits.errors import FitError
from study.fmt import fmt_count

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
        FitError: fewer than two distinct sizes, sizes spanning less than ``MIN_SIZE_SPAN``,
            or a non-positive or non-finite value.
    """
    n, t = _throughput_points(params, tokens_per_second, device=device)
    if not 0 < level < 1:
        raise FitError(f"level must be in (0, 1), got {level}")
    x, y = np.log(n), np.log(t)
    slope, intercept = _line(x, y)
    resid = y - (intercept + slope * x)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / total if total > 0 else 1.0

    boot_c, boot_k = _bootstrap_lines(x, y, n_boot=n_boot, seed=seed)

    warnings = _throughput_warnings(int(n.size), int(boot_k.size), n_boot=n_boot, slope=slope)
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


def _throughput_points(
    params: ArrayLike, tokens_per_second: ArrayLike, *, device: str | None
) -> tuple[FloatArray, FloatArray]:
    """The sizes and tokens/s as arrays, or FitError when no throughput fit can use them."""
    n = positive_finite("params", params)
    t = positive_finite("tokens_per_second", tokens_per_second)
    if n.shape != t.shape:
        raise FitError(f"params and tokens_per_second differ in length ({n.size} vs {t.size})")
    if np.unique(n).size < 2:
        raise FitError(
            f"a throughput fit needs at least two distinct model sizes, got {np.unique(n).size}"
            + (f" for device {device}" if device else "")
        )
    if n.max() < MIN_SIZE_SPAN * n.min():
        raise FitError(
            f"a throughput fit needs sizes spanning at least {MIN_SIZE_SPAN:g}x, got "
            f"{fmt_count(n.min())} to {fmt_count(n.max())}"
            + (f" on device {device}" if device else "")
            + " (a study at one size, such as the positions sweep, has no size axis)"
        )
    return n, t


def _throughput_warnings(n_points: int, n_kept: int, *, n_boot: int, slope: float) -> list[str]:
    """Soft problems of a throughput fit: few points, dropped resamples, no crossover."""
    warnings: list[str] = []
    if n_points < 4:
        warnings.append(f"only {n_points} points; the bootstrap interval is rough")
    if n_kept < 0.9 * n_boot:
        dropped = n_boot - n_kept
        warnings.append(f"{dropped} bootstrap resamples held one size and were dropped")
    if -slope <= -1:
        warnings.append(f"k = {-slope:.3g} <= -1: tokens/s grows faster than N, no crossover")
    return warnings


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
        raise FitError("params, tokens_per_second and devices differ in length")
    return {
        str(dev): fit_throughput(
            n[labels == dev],
            t[labels == dev],
            n_boot=n_boot,
            level=level,
            seed=seed,
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
        FitError: k <= -1 (tokens in budget never fall below ratio * N) or bad arguments.
    """
    if not (budget > 0 and ratio > 0 and c > 0):
        raise FitError(
            f"crossover needs positive c, budget and ratio (c={c}, budget={budget}, ratio={ratio})"
        )
    if 1 + k <= 0:
        raise FitError(f"no crossover: throughput exponent k = {k:.3g} <= -1")
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
            f"N* = {fmt_count(n_star)} lies outside the measured sizes "
            f"[{fmt_count(fit.n_min)}, {fmt_count(fit.n_max)}]: an extrapolation"
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


def positive_finite(name: str, values: ArrayLike) -> FloatArray:
    """``values`` as a flat float64 array.

    Raises:
        FitError: no values, or one that is not positive and finite (named by ``name``).
    """
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise FitError(f"{name}: no values")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise FitError(f"{name} must be positive and finite; value {i} is {float(arr[i])!r}")
    return arr


def _bootstrap_lines(
    x: FloatArray, y: FloatArray, *, n_boot: int, seed: int
) -> tuple[FloatArray, FloatArray]:
    """(c, k) of the log-log line through each of ``n_boot`` resamples with replacement,
    leaving out resamples that hold one size only (they have no slope)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    bx, by = x[idx], y[idx]  # (n_boot, n_points)
    bxm, bym = bx.mean(axis=1, keepdims=True), by.mean(axis=1, keepdims=True)
    sxx = ((bx - bxm) ** 2).sum(axis=1)
    ok = sxx > 1e-12 * max(1.0, float(x.var()))
    bslope = ((bx - bxm) * (by - bym)).sum(axis=1)[ok] / sxx[ok]
    bintercept = bym[ok, 0] - bslope * bxm[ok, 0]
    return np.exp(bintercept), -bslope


def _line(x: FloatArray, y: FloatArray) -> tuple[float, float]:
    xm, ym = x.mean(), y.mean()
    slope = float(((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum())
    return slope, float(ym - slope * xm)


def _quantiles(values: FloatArray, q: tuple[float, float], fallback: float) -> tuple[float, float]:
    if values.size == 0:
        return fallback, fallback
    low, high = np.quantile(values, q)
    return float(low), float(high)
