"""The one number format a person reads: counts with k/M/G/T and three significant digits.

Used by the study's progress lines and every analysis text, table and plot axis, so a size
reads ``754k`` or ``1.23M`` wherever it appears. No imports beyond the standard library.
"""

from __future__ import annotations

import math

_SUFFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def fmt_count(n: float, *, digits: int = 3) -> str:
    """``n`` with ``digits`` significant digits and a k/M/G/T suffix.

    1234567 -> '1.23M', 754321 -> '754k', 42100 -> '42.1k', 950 -> '950', 12.5 -> '12.5',
    999_999 -> '1M' (rounded before the suffix is chosen, never '1e+03k'); NaN and None -> '-'.
    """
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    n = float(n)
    if math.isinf(n):
        return "inf" if n > 0 else "-inf"
    rounded = float(f"{n:.{digits}g}")  # round first: 999.9k must become 1M, not 1e+03k
    for scale, suffix in _SUFFIXES:
        if abs(rounded) >= scale:
            return f"{rounded / scale:.{digits}g}{suffix}"
    return f"{rounded:.{digits}g}"
