"""Points coloured by a value: named in a legend while there are few values, on a colour scale
(a colour bar) when they are numbers of more values than a legend can name."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.colors import Normalize

# More distinct numeric values than this go on a colour bar (plots.COLORS has as many colours).
MAX_NAMED = 10


def is_number(value: object) -> bool:
    """Whether ``value`` is a finite number (numpy's included, booleans not)."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def value_scale(values: Sequence[object]) -> Normalize | None:
    """A colour scale for ``values`` when every one is a number (or missing) and they take more
    than ``MAX_NAMED`` distinct values: logarithmic where they are positive and span a decade
    or more. None: few values or words, each named in a legend."""
    from matplotlib.colors import LogNorm, Normalize

    found: list[float] = []
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, numbers.Real):  # numpy's numbers too
            return None
        if math.isfinite(float(v)):
            found.append(float(v))
    if len(set(found)) <= MAX_NAMED:
        return None
    lo, hi = min(found), max(found)
    return LogNorm(vmin=lo, vmax=hi) if lo > 0 and hi / lo >= 10 else Normalize(vmin=lo, vmax=hi)
