"""Trials of one configuration as one point: mean, sd and n over seeds, and whether two
configurations can be told apart.

Pure: frames in, frames and frozen results out. A configuration is everything a trial's stored
config says except its seed, so re-runs of a configuration with other seeds group together and
nothing else does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    import pandas as pd

# Config fields that do not make a configuration: the seed is what repeats vary; the
# deprecated field is always None.
NOT_CONFIGURATION = ("config.seed", "config.curve_eval_tokens")


def configuration_keys(trials: pd.DataFrame) -> pd.Series:
    """One string per trial naming its configuration (its stored config without the seed)."""
    import pandas as pd

    cols = sorted(
        c for c in trials.columns if c.startswith("config.") and c not in NOT_CONFIGURATION
    )
    if not cols:  # no stored config: each trial is its own configuration
        return pd.Series([f"trial {n}" for n in trials["number"]], index=trials.index)
    keys = [
        "|".join(texts) if any(t != "-" for t in texts) else f"trial {number}"
        for texts, number in zip(
            ([_text(v) for v in row] for row in trials[cols].itertuples(index=False)),
            trials["number"],
            strict=True,
        )
    ]  # a trial that stored no config at all is a configuration of its own
    return pd.Series(keys, index=trials.index, dtype=object)


def _text(value: object) -> str:
    """A config value as key text; missing (None or NaN: a field an older trial lacked) as one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return repr(value)


def group_by_configuration(trials: pd.DataFrame, column: str) -> pd.DataFrame:
    """One row per configuration of the trials with a finite ``column``: ``key``, ``first``
    (its lowest trial number), ``n``, ``mean``, ``sd`` (sample sd, ddof 1; NaN for n = 1),
    ``values`` (a tuple) and ``trials`` (their numbers), best mean first."""
    import pandas as pd

    scored = trials[np.isfinite(pd.to_numeric(trials[column], errors="coerce"))].copy()
    scored["_key"] = configuration_keys(scored)
    rows = []
    for key, g in scored.groupby("_key", sort=False):
        values = g[column].astype(float).to_numpy()
        rows.append(
            {
                "key": key,
                "first": int(g["number"].min()),
                "n": int(values.size),
                "mean": float(values.mean()),
                "sd": float(values.std(ddof=1)) if values.size > 1 else math.nan,
                "values": tuple(float(v) for v in values),
                "trials": tuple(int(v) for v in g["number"]),
            }
        )
    out = pd.DataFrame(rows, columns=["key", "first", "n", "mean", "sd", "values", "trials"])
    return out.sort_values(["mean", "first"]).reset_index(drop=True)


def configuration_points(
    trials: pd.DataFrame, *, x: str, y: str, keep: Sequence[str] = ()
) -> pd.DataFrame:
    """What a figure draws for ``trials``: one point per configuration (its seeds grouped as
    :func:`group_by_configuration` groups them), among trials with a finite ``x`` and ``y``.

    Columns: ``key``; ``x`` and ``y``, the means of its trials' ``x`` and ``y``; ``sd`` of
    ``y`` (ddof 1, NaN for one seed); ``n``; ``trials`` (their numbers); ``seed_x`` and
    ``seed_y`` (each trial's ``x`` and ``y``, in the order of ``trials``); and each column of
    ``keep`` as the configuration's first trial has it. In increasing ``x``, then ``y``; each
    configuration's trials in increasing number.
    """
    import pandas as pd

    finite = trials[np.isfinite(pd.to_numeric(trials[x], errors="coerce"))]
    finite = finite.sort_values("number")  # each configuration's seeds in trial order
    groups = group_by_configuration(finite, y)
    by_number = finite.set_index("number", drop=False)
    rows = []
    for g in groups.itertuples(index=False):
        xs = tuple(float(by_number.at[t, x]) for t in g.trials)
        first = by_number.loc[g.first]
        rows.append(
            {
                "key": g.key,
                "x": float(np.mean(xs)),
                "y": g.mean,
                "sd": g.sd,
                "n": g.n,
                "trials": g.trials,
                "seed_x": xs,
                "seed_y": g.values,
                **{c: first[c] for c in keep},
            }
        )
    columns = ["key", "x", "y", "sd", "n", "trials", "seed_x", "seed_y", *keep]
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values(["x", "y"]).reset_index(drop=True)


def points_by_key(x: ArrayLike, y: ArrayLike, keys: Sequence[str]) -> pd.DataFrame:
    """Points (``x``, ``y``) grouped by ``keys`` (one per point: its configuration), as
    :func:`configuration_points` gives them: ``key``, ``x`` and ``y`` (means), ``sd`` of ``y``
    (ddof 1, NaN for one point), ``n``, ``seed_x``, ``seed_y``; in increasing ``x``."""
    import pandas as pd

    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rows = []
    for key in dict.fromkeys(keys):
        sel = np.asarray([k == key for k in keys])
        vx, vy = xs[sel], ys[sel]
        rows.append(
            {
                "key": key,
                "x": float(vx.mean()),
                "y": float(vy.mean()),
                "sd": float(vy.std(ddof=1)) if vy.size > 1 else math.nan,
                "n": int(vy.size),
                "seed_x": tuple(float(v) for v in vx),
                "seed_y": tuple(float(v) for v in vy),
            }
        )
    columns = ["key", "x", "y", "sd", "n", "seed_x", "seed_y"]
    return pd.DataFrame(rows, columns=columns).sort_values("x").reset_index(drop=True)


@dataclass(frozen=True)
class Interval:
    """A two-sided t interval of a mean (NaN bounds for n = 1)."""

    mean: float
    low: float
    high: float
    n: int
    level: float


def mean_interval(values: tuple[float, ...], *, level: float = 0.95) -> Interval:
    from scipy import stats

    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if v.size < 2:
        return Interval(mean, math.nan, math.nan, int(v.size), level)
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return Interval(mean, mean - half, mean + half, int(v.size), level)


@dataclass(frozen=True)
class Welch:
    """Welch's unequal-variance t-test of two means: t, its degrees of freedom, two-sided p
    (NaN where either side has fewer than 2 values or both have no spread)."""

    t: float
    df: float
    p: float


def welch_test(a: tuple[float, ...], b: tuple[float, ...]) -> Welch:
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 2 or y.size < 2:
        return Welch(math.nan, math.nan, math.nan)
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    if vx + vy == 0:
        return Welch(math.nan, math.nan, math.nan)
    from scipy import stats

    t = float((x.mean() - y.mean()) / math.sqrt(vx + vy))
    df = float((vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1)))
    return Welch(t, df, float(2 * stats.t.sf(abs(t), df)))
