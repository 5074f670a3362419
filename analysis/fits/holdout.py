"""Predictions checked on sizes the fit never saw: fit the loss law on part of a size ladder,
predict the final loss of the held-out sizes and the best size, and compare with what was
measured.

A law's prediction is trusted only as far as it comes true here. Where no fit can be trusted
(too few sizes, a degenerate exponent, the irreducible loss run to zero, the best size on the
search bound) the result says so instead of giving a number. Pure: arrays in, a frozen result
out, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analysis.fits.core import fit_throughput, positive_finite
from analysis.fits.errors import FitError
from analysis.fits.law_choice import FRESH_EPOCHS, ChosenLaw, choose_law
from analysis.fits.loss_law import CHINCHILLA_GRID, LossLawFit, StartGrid
from analysis.fits.loss_optimum import loss_optimal_n
from study.errors import first_line
from study.fmt import fmt_count

FloatArray = NDArray[np.float64]

MIN_FIT_SIZES = 3  # alpha and A need at least three sizes to be told apart from noise


@dataclass(frozen=True)
class HeldOutSize:
    """One held-out size: its measured final loss and, where the fit is trusted, the law's."""

    params: float
    tokens: float
    unique: float | None
    measured: float
    predicted: float | None
    relative_error: float | None  # (predicted - measured) / measured


@dataclass(frozen=True)
class BestSize:
    """The best size measured on the ladder against the law's picks.

    ``ladder_pick``: the ladder size with the lowest predicted final loss, each at the tokens
    it measured. ``optimum``: N minimising L(N, T(N) * budget) with T fitted on the fit sizes.
    A ``None`` pick has its reason in ``why_not``.
    """

    measured: float
    ladder_pick: float | None
    optimum: float | None
    optimum_loss: float | None
    why_not: tuple[str, ...] = ()


@dataclass(frozen=True)
class HoldoutResult:
    """What the fit on ``fit_sizes`` predicted for ``held_out`` and the best size, and whether
    it could be trusted (``untrusted`` lists why not; then no prediction is given)."""

    mode: str
    fit_sizes: tuple[float, ...]
    held_out: tuple[HeldOutSize, ...]
    best: BestSize
    law: ChosenLaw | None
    untrusted: tuple[str, ...]
    budget: float | None
    n_fit_points: int

    @property
    def trusted(self) -> bool:
        return not self.untrusted

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-ready data: numbers, strings, lists, ``None`` where no number is trusted."""
        return {
            "mode": self.mode,
            "trusted": self.trusted,
            "untrusted": list(self.untrusted),
            "fit_sizes": list(self.fit_sizes),
            "n_fit_points": self.n_fit_points,
            "held_out": [asdict(h) for h in self.held_out],
            "best": {**asdict(self.best), "why_not": list(self.best.why_not)},
            "law": self.law.as_dict() if self.law is not None else None,
            "budget": self.budget,
        }


@dataclass(frozen=True)
class _Sizes:
    """The ladder's final points averaged per size, in increasing size."""

    params: FloatArray
    tokens: FloatArray
    unique: FloatArray | None
    loss: FloatArray
    tokens_per_second: FloatArray | None


def holdout_check(
    params: ArrayLike,
    tokens: ArrayLike,
    loss: ArrayLike,
    *,
    final: ArrayLike,
    unique: ArrayLike | None = None,
    tokens_per_second: ArrayLike | None = None,
    budget: float | None = None,
    k: int = 2,
    around_best: bool = False,
    fresh_epochs: float = FRESH_EPOCHS,
    grid: StartGrid = CHINCHILLA_GRID,
    base: LossLawFit | None = None,
) -> HoldoutResult:
    """Fit :func:`~analysis.fits.law_choice.choose_law` on every point (curve and final) of all
    sizes but the held-out ones, and check its predictions on the held-out sizes' final points.

    Held out: the largest ``k`` sizes, or with ``around_best`` the measured best size and its
    better neighbour (the pair the optimum lies between). ``tokens_per_second`` (of the final
    points) and ``budget`` add the predicted optimum N; without them only the ladder pick.
    ``base``: Chinchilla constants from elsewhere for the data-constrained law (see
    :func:`~analysis.fits.law_choice.choose_law`).

    Raises:
        FitError: bad values or lengths, no final point, or ``k`` outside 1..sizes - 1.
    """
    n, d, loss_arr, is_final, u = _holdout_points(params, tokens, loss, final, unique)
    sizes = _per_size(n, d, loss_arr, u, is_final, tokens_per_second)
    held = _held_out(sizes, k=k, around_best=around_best)
    fit_mask = ~np.isin(n, sizes.params[held])
    fit_sizes = tuple(float(v) for v in np.delete(sizes.params, held))
    untrusted: list[str] = []
    law: ChosenLaw | None = None
    if len(fit_sizes) < MIN_FIT_SIZES:
        untrusted.append(
            f"only {len(fit_sizes)} sizes left to fit; the law needs at least {MIN_FIT_SIZES}"
        )
    else:
        try:
            law = choose_law(
                n[fit_mask],
                d[fit_mask],
                loss_arr[fit_mask],
                unique=None if u is None else u[fit_mask],
                fresh_epochs=fresh_epochs,
                grid=grid,
                base=base,
            )
        except FitError as exc:
            untrusted.append(f"no law could be fitted: {first_line(exc)}")
        else:
            untrusted.extend(_degenerate(law))
    trusted_law = law if not untrusted else None
    return HoldoutResult(
        mode="around-best" if around_best else f"largest-{k}",
        fit_sizes=fit_sizes,
        held_out=_predict_held(sizes, held, trusted_law),
        best=_best_size(sizes, held, trusted_law, budget),
        law=law,
        untrusted=tuple(untrusted),
        budget=budget,
        n_fit_points=int(fit_mask.sum()),
    )


def _holdout_points(
    params: ArrayLike,
    tokens: ArrayLike,
    loss: ArrayLike,
    final: ArrayLike,
    unique: ArrayLike | None,
) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.bool_], FloatArray | None]:
    """:func:`holdout_check`'s inputs as arrays of one length, or FitError."""
    n, d, loss_arr = (
        positive_finite(name, v)
        for name, v in (("params", params), ("tokens", tokens), ("loss", loss))
    )
    is_final = np.asarray(final, dtype=bool).ravel()
    u = None if unique is None else positive_finite("unique", unique)
    if not n.shape == d.shape == loss_arr.shape == is_final.shape or (
        u is not None and u.shape != n.shape
    ):
        raise FitError("params, tokens, loss, final (and unique) differ in length")
    return n, d, loss_arr, is_final, u


def _per_size(
    n: FloatArray,
    d: FloatArray,
    loss: FloatArray,
    u: FloatArray | None,
    final: NDArray[np.bool_],
    tokens_per_second: ArrayLike | None,
) -> _Sizes:
    """Mean final tokens, unique tokens, loss and tokens/s per distinct size."""
    if not final.any():
        raise FitError("no final point: the held-out check compares final losses")
    tps = None if tokens_per_second is None else np.asarray(tokens_per_second, dtype=np.float64)
    if tps is not None and tps.shape != n.shape:
        raise FitError("tokens_per_second differs in length from params")
    sizes = np.unique(n[final])

    def mean(values: FloatArray) -> FloatArray:
        return np.array([values[final & (n == s)].mean() for s in sizes])

    return _Sizes(
        params=sizes,
        tokens=mean(d),
        unique=None if u is None else mean(u),
        loss=mean(loss),
        tokens_per_second=None if tps is None else mean(tps),
    )


def _held_out(sizes: _Sizes, *, k: int, around_best: bool) -> NDArray[np.intp]:
    """Indices (into the sorted sizes) of the sizes the fit must not see."""
    count = sizes.params.size
    if around_best:
        if count < 2:
            raise FitError("holding out the sizes around the best needs at least 2 sizes")
        best = int(np.argmin(sizes.loss))
        neighbours = [i for i in (best - 1, best + 1) if 0 <= i < count]
        other = min(neighbours, key=lambda i: sizes.loss[i])
        return np.array(sorted((best, other)), dtype=np.intp)
    if not 1 <= k < count:
        raise FitError(f"k must be between 1 and the number of sizes - 1 ({count - 1}), got {k}")
    return np.arange(count - k, count, dtype=np.intp)


def _degenerate(law: ChosenLaw) -> tuple[str, ...]:
    """Why the fitted constants cannot be extrapolated, if they cannot."""
    if law.data_constrained is not None:
        return law.data_constrained.base.degenerate()
    assert law.chinchilla is not None
    return law.chinchilla.degenerate()


def _predict_held(
    sizes: _Sizes, held: NDArray[np.intp], law: ChosenLaw | None
) -> tuple[HeldOutSize, ...]:
    out = []
    for i in held:
        uniq = None if sizes.unique is None else float(sizes.unique[i])
        pred = None
        if law is not None:
            pred = float(law.predict(sizes.params[i], sizes.tokens[i], uniq))
        measured = float(sizes.loss[i])
        out.append(
            HeldOutSize(
                params=float(sizes.params[i]),
                tokens=float(sizes.tokens[i]),
                unique=uniq,
                measured=measured,
                predicted=pred,
                relative_error=None if pred is None else (pred - measured) / measured,
            )
        )
    return tuple(out)


def _best_size(
    sizes: _Sizes,
    held: NDArray[np.intp],
    law: ChosenLaw | None,
    budget: float | None,
) -> BestSize:
    measured = float(sizes.params[int(np.argmin(sizes.loss))])
    if law is None:
        return BestSize(measured, None, None, None, ("no trusted fit: see why above",))
    predicted = law.predict(sizes.params, sizes.tokens, sizes.unique)
    pick = float(sizes.params[int(np.argmin(predicted))])
    if sizes.tokens_per_second is None or budget is None:
        return BestSize(
            measured, pick, None, None, ("no tokens/s or budget given for the optimum",)
        )
    fit_idx = np.setdiff1d(np.arange(sizes.params.size), held)
    try:
        throughput = fit_throughput(
            sizes.params[fit_idx], sizes.tokens_per_second[fit_idx], n_boot=10
        )
    except FitError as exc:
        return BestSize(measured, pick, None, None, (f"throughput: {first_line(exc)}",))
    unique = None if sizes.unique is None else float(np.median(sizes.unique))
    opt = loss_optimal_n(law.surface(unique), throughput, budget=budget)
    if opt.at_bound:
        return BestSize(
            measured,
            pick,
            None,
            None,
            (
                f"the optimum sits on the search bound ({fmt_count(opt.n_opt)}): the law "
                f"has no interior best size",
            ),
        )
    loss = opt.loss if math.isfinite(opt.loss) else None
    return BestSize(measured, pick, opt.n_opt, loss, opt.warnings)
