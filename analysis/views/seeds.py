"""The best configuration of a study, named only with its interval over seeds, and whether the
runner-up can be told apart from it: the closing lines of ``python -m analysis.compare``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from analysis.fits.groups import group_by_configuration, mean_interval, welch_test
from analysis.selection import METRICS, metric_column, metric_values

if TYPE_CHECKING:
    import pandas as pd

ALPHA = 0.05  # the Welch test's level


def best_configuration_text(trials: pd.DataFrame, *, metric: str) -> str | None:
    """Lines naming the best configuration (lowest mean of ``metric`` over its seeds) with its
    95% t interval and n, and the runner-up with Welch's t-test against it; None with fewer
    than two configurations."""
    column = metric_column(metric)
    frame = trials.copy()
    frame[column] = metric_values(frame, metric)
    groups = group_by_configuration(frame[frame[column].gt(0)], column)
    if len(groups) < 2:
        return None
    _, label = METRICS[metric]
    best, second = groups.iloc[0], groups.iloc[1]
    lines = [
        f"By configuration ({len(groups)} configurations, seeds grouped; {label}, mean over "
        "seeds):",
        f"best: {_describe(best)}",
        f"runner-up: {_describe(second)}",
    ]
    test = welch_test(best["values"], second["values"])
    if math.isnan(test.p):
        lines.append(
            "best and runner-up cannot be told apart: Welch's t-test needs at least 2 seeds "
            f"of each with some spread (n = {best['n']} and {second['n']}); re-run both with "
            "more seeds"
        )
    else:
        verdict = "distinguishable" if test.p < ALPHA else "not distinguishable"
        lines.append(
            f"best vs runner-up: {verdict} at p < {ALPHA:g} (Welch's t-test, t = {test.t:.3g}, "
            f"df = {test.df:.3g}, p = {test.p:.3g})"
        )
    return "\n".join(lines)


def _describe(row: pd.Series) -> str:
    ci = mean_interval(row["values"])
    spread = (
        f"95% interval [{ci.low:.4g}, {ci.high:.4g}], sd {row['sd']:.3g}"
        if row["n"] > 1
        else "one seed, no interval"
    )
    trials = ", ".join(str(t) for t in row["trials"])
    return f"{row['mean']:.4g} (n = {row['n']}, {spread}; trials {trials})"
