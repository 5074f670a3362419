"""Trials of one configuration drawn as one point: the mean over its seeds with an error bar of
one standard deviation, and each seed as a small faint point behind it (the rows of
``analysis.fits.groups.configuration_points``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.typing import ColorType

# The legend entry that says what the bars and the faint points are.
SEED_LABEL = "mean over seeds, bar: \u00b11 sd; faint: each seed"


def draw_configurations(
    ax: Axes,
    groups: pd.DataFrame,
    *,
    color: ColorType,
    label: str | None = None,
    size: float = 24,
    zorder: float = 3,
) -> bool:
    """Each row of ``groups`` (columns ``x``, ``y``, ``sd``, ``n``, ``seed_x``, ``seed_y``) as
    one point at its mean, labelled ``label``; a configuration with several seeds gets an error
    bar of +-1 sd and its seeds as small faint points. Returns whether any had several seeds."""
    x = groups["x"].to_numpy(float)
    y = groups["y"].to_numpy(float)
    ax.scatter(x, y, s=size, color=color, alpha=0.8, label=label, zorder=zorder)
    multi = groups[groups["n"].gt(1)]
    if multi.empty:
        return False
    ax.errorbar(
        multi["x"].to_numpy(float),
        multi["y"].to_numpy(float),
        yerr=multi["sd"].to_numpy(float),
        fmt="none",
        ecolor=color,
        elinewidth=1.0,
        capsize=3,
        alpha=0.8,
        zorder=zorder,
    )
    ax.scatter(
        np.concatenate([np.asarray(v, dtype=float) for v in multi["seed_x"]]),
        np.concatenate([np.asarray(v, dtype=float) for v in multi["seed_y"]]),
        s=max(size / 3, 6),
        color=color,
        alpha=0.3,
        linewidths=0,
        zorder=zorder - 0.5,
    )
    return True


def seed_legend_entry(ax: Axes) -> None:
    """A legend entry (an empty error bar) saying what the bars and faint points show."""
    ax.errorbar(
        [np.nan], [np.nan], yerr=[np.nan], fmt="o", color="0.3", ms=4, capsize=3, label=SEED_LABEL
    )
