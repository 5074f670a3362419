"""The held-out check drawn: final loss against size, the law fitted on the smaller sizes, the
points it was fitted on, and the held-out sizes as measured and as predicted."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from analysis.figures.plots import count_ticks, new_figure, plain_log_ticks
from analysis.fits.holdout import HoldoutResult
from study.fmt import fmt_count

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def size_points(finals: pd.DataFrame) -> pd.DataFrame:
    """The ladder's final points by size, as the figure draws them (one configuration per size,
    its seeds grouped): columns ``x`` (params), ``y`` (mean final loss), ``sd`` (ddof 1, NaN
    for one seed), ``n``, ``seed_x``, ``seed_y``; by size."""
    import pandas as pd

    rows = []
    for size, g in finals.groupby("params", sort=True):
        values = tuple(float(v) for v in g["loss"])
        rows.append(
            {
                "x": float(size),  # type: ignore[arg-type]
                "y": float(np.mean(values)),
                "sd": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
                "n": len(values),
                "seed_x": (float(size),) * len(values),  # type: ignore[arg-type]
                "seed_y": values,
            }
        )
    return pd.DataFrame(rows, columns=["x", "y", "sd", "n", "seed_x", "seed_y"])


def ladder_figure(finals: pd.DataFrame, result: HoldoutResult, *, label: str) -> Figure:
    """``finals``: the ladder's final points (columns ``params``, ``tokens``, ``loss``, and
    ``unique`` for the data-constrained law), drawn per size (:func:`size_points`: a size with
    several seeds at its mean with a +-1 sd bar, its seeds faint). The law's curve L(N, D(N)),
    with D(N) the ladder's tokens seen interpolated in log-log, is drawn only where the fit is
    trusted."""
    from analysis.figures.seeds import draw_configurations, seed_legend_entry

    fig = new_figure(width=7.5, height=4.8)
    ax: Axes = fig.axes[0]
    held = {h.params for h in result.held_out}
    sizes = size_points(finals)
    several = draw_configurations(
        ax,
        sizes[~sizes["x"].isin(held)],
        color="#1f77b4",
        size=28,
        label="fitted on (measured final loss)",
    )
    measured = sizes[sizes["x"].isin(held)]
    several |= draw_configurations(ax, measured, color="#d62728", size=0, zorder=4)
    ax.scatter(
        measured["x"],
        measured["y"],
        s=70,
        facecolors="none",
        edgecolors="#d62728",
        linewidths=1.8,
        zorder=4,
        label="held out: measured",
    )
    if several:
        seed_legend_entry(ax)
    pred = [(h.params, h.predicted) for h in result.held_out if h.predicted is not None]
    if pred:
        ax.scatter(
            [p for p, _ in pred],
            [v for _, v in pred],
            marker="x",
            s=60,
            color="#d62728",
            zorder=5,
            label="held out: predicted",
        )
    if result.law is not None and result.trusted:
        _law_curve(ax, finals, result)
    title = (
        f"Held-out check ({label})"
        if result.trusted
        else (f"Held-out check ({label}): no fit trusted")
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="parameters N",
        ylabel="final held-out loss (nats/token)",
        title=title,
    )
    count_ticks(ax)
    plain_log_ticks(ax)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _law_curve(ax: Axes, finals: pd.DataFrame, result: HoldoutResult) -> None:
    assert result.law is not None
    n, d = finals["params"].to_numpy(float), finals["tokens"].to_numpy(float)
    grid = np.geomspace(n.min() / 1.3, n.max() * 1.3, 100)
    if np.unique(n).size > 1:
        slope, icpt = np.polyfit(np.log(n), np.log(d), 1)  # D(N) along the ladder
        tokens = np.exp(icpt + slope * np.log(grid))
    else:
        tokens = np.full_like(grid, float(np.median(d)))
    unique = None
    if result.law.data_constrained is not None:
        unique = np.full_like(grid, float(finals["unique"].median()))
    top = max(result.fit_sizes) if result.fit_sizes else n.max()
    ax.plot(
        grid,
        result.law.predict(grid, tokens, unique),
        color="black",
        linewidth=1.2,
        label=f"{result.law.form} law fitted on N <= {fmt_count(top)}",
    )
    ax.axvline(top, color="0.5", linestyle=":", linewidth=1)
