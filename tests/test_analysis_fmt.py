"""``study.fmt.fmt_count``: the one number format of analysis text, tables and plots."""

from __future__ import annotations

import math

import pytest

from study.fmt import fmt_count


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (754_321, "754k"),
        (1_234_567, "1.23M"),
        (42_100, "42.1k"),
        (950, "950"),
        (12.5, "12.5"),
        (7.257e5, "726k"),
        (3.1e9, "3.1G"),
        (2.5e12, "2.5T"),
        (999_999, "1M"),
        (999.6, "1k"),
        (-1_500_000, "-1.5M"),
        (0, "0"),
        (math.nan, "-"),
    ],
)
def test_counts_read_with_three_significant_digits_and_a_suffix(value: float, shown: str) -> None:
    assert fmt_count(value) == shown
