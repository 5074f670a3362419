"""The choice between Chinchilla's fresh-data law and the data-constrained law of repeated data
(:mod:`analysis.fits.data_constrained`) for a study's points, by how often they saw their data.

Arrays in, frozen results out; unusable input raises :class:`~analysis.fits.errors.FitError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analysis.fits.core import positive_finite
from analysis.fits.data_constrained import (
    DataConstrainedFit,
    DataConstrainedSurface,
    fit_data_constrained,
)
from analysis.fits.errors import FitError
from analysis.fits.loss_law import CHINCHILLA_GRID, LossLawFit, StartGrid, fit_loss_law
from study.fmt import fmt_count

FloatArray = NDArray[np.float64]

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
        return _fresh_points_only(
            n,
            d,
            loss_arr,
            over,
            why=why,
            exc=exc,
            top=top,
            fresh_epochs=fresh_epochs,
            delta=delta,
            grid=grid,
        )
    reason = f"{why}, so the data-constrained law of Muennighoff et al. 2023 ({dc.stages})"
    return ChosenLaw("data-constrained", reason, None, dc, top, int(n.size), 0, dc.warnings)


def _fresh_points_only(
    n: FloatArray,
    d: FloatArray,
    loss_arr: FloatArray,
    over: NDArray[np.bool_],
    *,
    why: str,
    exc: FitError,
    top: float,
    fresh_epochs: float,
    delta: float,
    grid: StartGrid,
) -> ChosenLaw:
    """Chinchilla's law on the points within ``fresh_epochs`` when the data-constrained law
    could not be fitted (``exc``); the rest dropped and counted."""
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
