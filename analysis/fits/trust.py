"""Whether a fitted loss law can be read as a prediction: the checks ``analysis.predict`` applies,
in one place for ``analysis.scaling_law`` and its figure.

Pure: a fit and its inputs in, the reasons not to trust it out (empty: no reason found). A law
that fails any of these is still printed, with "NOT TRUSTED: why", never silently.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike

from analysis.fits.holdout import MIN_FIT_SIZES
from analysis.fits.law_choice import FRESH_EPOCHS
from analysis.fits.loss_law import LossLawFit
from analysis.fits.loss_optimum import LossOptimal
from study.fmt import fmt_count

# Exponents published for language models lie near 0.3 (Chinchilla: alpha 0.34, beta 0.28);
# one beyond 2 means a handful of points was fitted by a cliff, not a power law.
MAX_EXPONENT = 2.0


def untrusted_reasons(
    law: LossLawFit,
    *,
    params: ArrayLike,
    epochs: ArrayLike | None = None,
    optima: Iterable[tuple[str, LossOptimal]] = (),
    fresh_epochs: float = FRESH_EPOCHS,
) -> tuple[str, ...]:
    """Why ``law`` (the fresh-data Chinchilla form) is not to be trusted.

    Args:
        law: the fit.
        params: the sizes of the points it was fitted on (distinct sizes are counted).
        epochs: each point's epochs (tokens seen / unique training tokens); NaN where unknown.
        optima: (device, loss-optimal size) pairs predicted from the law.
        fresh_epochs: repetition beyond which data no longer count as fresh.
    """
    why = list(point_reasons(params=params, epochs=epochs, fresh_epochs=fresh_epochs))
    for name, value in (("alpha", law.alpha), ("beta", law.beta)):
        if not 0 < value <= MAX_EXPONENT:
            why.append(f"{name} = {value:.3g} is outside (0, {MAX_EXPONENT:g}]")
    if law.e_vanished:
        why.append(f"E = {law.E:.3g}: the irreducible loss ran to zero")
    if not law.converged:
        why.append("the winning L-BFGS start did not converge")
    for device, best in optima:
        if best.at_bound:
            why.append(f"the loss-optimal N on {device} sits on the search bound")
    return tuple(why)


def point_reasons(
    *, params: ArrayLike, epochs: ArrayLike | None, fresh_epochs: float = FRESH_EPOCHS
) -> tuple[str, ...]:
    """What the points alone say against any fresh-data law fitted on them: too few sizes,
    data repeated beyond ``fresh_epochs``."""
    why: list[str] = []
    sizes = int(np.unique(np.asarray(params, dtype=float)).size)
    if sizes < MIN_FIT_SIZES:
        why.append(f"only {sizes} distinct sizes; the law needs at least {MIN_FIT_SIZES}")
    if epochs is not None:
        e = np.asarray(epochs, dtype=float)
        over = int(np.sum(e > fresh_epochs))
        if over:
            why.append(
                f"{over} of {e.size} points saw their data more than {fresh_epochs:g} times "
                f"(up to {fmt_count(float(np.nanmax(e)))} epochs) and this law assumes fresh "
                "data (the data-constrained form of analysis.predict does not)"
            )
    return tuple(why)
