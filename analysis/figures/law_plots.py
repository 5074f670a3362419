"""Figures of the fitted laws: the Chinchilla crossover of one device and the loss law with its
best size per device. Labels go in legends beside the axes (never on the data, so none can
overlap another); a crossover outside the measured sizes is drawn and labelled as extrapolated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analysis.figures.plots import (
    COLORS,
    count_ticks,
    new_figure,
    outside_legend,
    plain_log_ticks,
    size_colorbar,
    span,
)
from analysis.fits.core import Crossover, ThroughputFit
from analysis.fits.loss_law import LossLawFit
from analysis.fits.loss_optimum import LossOptimal
from study.fmt import fmt_count

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure


def crossover_figure(
    fit: ThroughputFit,
    cross: Crossover,
    *,
    params: ArrayLike,
    tokens_per_second: ArrayLike,
    label: str | None = None,
    configurations: Sequence[str] | None = None,
) -> Figure:
    """Tokens seen in the budget against N beside the ratio * N line, the crossing marked; the
    fit is solid over the measured sizes and dashed beyond, an extrapolated N* hollow and
    labelled so. ``configurations`` (one per point): a configuration measured by several seeds
    drawn at its mean with a +-1 sd bar, each seed faint."""
    fig = new_figure(width=9.0)
    ax: Axes = fig.axes[0]
    n = np.asarray(params, dtype=float)
    t = np.asarray(tokens_per_second, dtype=float)
    lo, hi = span(fit.n_min, fit.n_max, cross.n_star, cross.n_star_low, cross.n_star_high, pad=1.5)
    _draw_throughput(ax, fit, cross, n=n, t=t, lo=lo, hi=hi, configurations=configurations)
    grid = np.geomspace(lo, hi, 200)
    ax.plot(
        grid,
        cross.ratio * grid,
        color=COLORS[1],
        linestyle="-.",
        label=f"{cross.ratio:g} x N tokens",
    )
    ax.axvspan(
        cross.n_star_low,
        cross.n_star_high,
        color=COLORS[1],
        alpha=0.12,
        label=f"{cross.level:.0%} bootstrap interval of N*",
    )
    _mark_n_star(ax, fit, cross)
    title = "Chinchilla crossover" + (f" ({label})" if label else "")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="parameters N",
        ylabel="tokens seen in budget",
        title=title,
    )
    count_ticks(ax, y=True)
    ax.grid(True, which="both", alpha=0.3)
    outside_legend(ax)
    return fig


def _draw_throughput(
    ax: Axes,
    fit: ThroughputFit,
    cross: Crossover,
    *,
    n: NDArray[np.float64],
    t: NDArray[np.float64],
    lo: float,
    hi: float,
    configurations: Sequence[str] | None = None,
) -> None:
    """The measured tokens in the budget (by configuration where ``configurations`` is
    given), and the fit: solid over the measured sizes, dashed out to ``lo`` and ``hi``."""
    from analysis.figures.seeds import draw_configurations, seed_legend_entry
    from analysis.fits.groups import points_by_key

    measured = "measured tokens/s x budget"
    if configurations is None:
        ax.scatter(n, t * cross.budget, s=18, color=COLORS[0], alpha=0.7, label=measured)
    elif draw_configurations(
        ax,
        points_by_key(n, t * cross.budget, list(configurations)),
        color=COLORS[0],
        size=18,
        label=measured,
    ):
        seed_legend_entry(ax)
    inside = np.geomspace(fit.n_min, fit.n_max, 100)
    ax.plot(
        inside,
        fit.tokens_per_second(inside) * cross.budget,
        color=COLORS[0],
        label=f"fit T(N) x {cross.budget:g} s, T = {fmt_count(fit.c)} N^-{fit.k:.3f}",
    )
    for part in (np.geomspace(lo, fit.n_min, 50), np.geomspace(fit.n_max, hi, 50)):
        ax.plot(
            part,
            fit.tokens_per_second(part) * cross.budget,
            color=COLORS[0],
            linestyle="--",
            linewidth=1,
        )


def _mark_n_star(ax: Axes, fit: ThroughputFit, cross: Crossover) -> None:
    """N* as a point (hollow and labelled when extrapolated, with a dashed vertical line)."""
    where = f"N* = {fmt_count(cross.n_star)} ({fmt_count(cross.tokens_at_n_star)} tokens)"
    if cross.extrapolated:
        ax.axvline(cross.n_star, color="black", linestyle="--", linewidth=1)
        where += f"\nextrapolated: measured sizes {fmt_count(fit.n_min)} to {fmt_count(fit.n_max)}"
    ax.plot(
        [cross.n_star],
        [cross.tokens_at_n_star],
        marker="o",
        markersize=9,
        linestyle="",
        color="black",
        markerfacecolor="white" if cross.extrapolated else "black",
        zorder=5,
        label=where,
    )


def loss_law_figure(
    law: LossLawFit,
    *,
    params: ArrayLike,
    tokens: ArrayLike,
    loss: ArrayLike,
    predictions: Mapping[str, tuple[ThroughputFit, LossOptimal, Crossover]],
    untrusted: Sequence[str] = (),
    groups: pd.DataFrame | None = None,
    n_opt_intervals: Mapping[str, tuple[float, float]] | None = None,
) -> Figure:
    """Left: loss against tokens, points coloured by size and the law's curves for a few sizes
    in the same colours. Right: for each device, the law's loss after the budget against N,
    the loss-optimal N (dot) and N* (cross, hollow where extrapolated) marked. ``untrusted``:
    why the law is not to be trusted, written across the figure. Loss axes go logarithmic
    where what they show spans more than a decade.

    ``groups`` (:func:`analysis.fits.groups.configuration_points` of the end-of-training
    points, x = tokens, y = loss, with ``params``): each configuration drawn at its mean with a
    +-1 sd bar and its seeds faint; ``params``, ``tokens`` and ``loss`` are then the other
    points (mid-run curve points), drawn one by one. ``n_opt_intervals``: device -> the
    bootstrap interval of its loss-optimal N, shaded on the right."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm

    fig = new_figure(width=13.0, height=5.0, ncols=2 if predictions else 1)
    panels = list(fig.axes)  # before the colorbar adds its own axes
    ax: Axes = panels[0]
    n, d, y = (np.asarray(v, dtype=float) for v in (params, tokens, loss))
    if groups is not None:  # the sizes and tokens of every point drawn, for the scales
        n = np.concatenate([n, groups["params"].to_numpy(float)])
        d = np.concatenate([d, *(np.asarray(v, dtype=float) for v in groups["seed_x"])])
    norm = LogNorm(vmin=n.min() / (1.5 if n.min() == n.max() else 1.0), vmax=n.max())
    cmap = colormaps["viridis"]
    _law_points(ax, params, tokens, loss, groups, norm=norm, cmap=cmap)
    size_colorbar(fig, ScalarMappable(norm=norm, cmap=cmap), ax)
    d_grid = np.geomspace(d.min() / 1.5, d.max() * 1.5, 100)
    for size in np.unique(np.quantile(n, [0.0, 0.5, 1.0])):
        ax.plot(
            d_grid,
            law.predict(size, d_grid),
            color=cmap(norm(size)),
            linewidth=1.5,
            label=f"law at N = {fmt_count(size)}",
        )
    ax.set(
        xscale="log",
        xlabel="tokens seen D",
        ylabel="held-out loss (nats/token)",
        title=(f"L = {law.E:.3g} + {law.A:.3g}/N^{law.alpha:.3f} + {law.B:.3g}/D^{law.beta:.3f}"),
    )
    count_ticks(ax)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")  # matplotlib places it where the fewest points are
    if predictions:
        _best_sizes(panels[1], law, predictions, n_opt_intervals or {})
    for panel in panels:
        _log_if_decades(panel)
    if untrusted:  # a suptitle: the layout engine makes room for it above the panels
        fig.suptitle(
            "\n".join(f"NOT TRUSTED: {why}" for why in untrusted),
            color="firebrick",
            fontsize=8,
            x=0.01,
            ha="left",
        )
    return fig


def _law_points(
    ax: Axes,
    params: ArrayLike,
    tokens: ArrayLike,
    loss: ArrayLike,
    groups: pd.DataFrame | None,
    *,
    norm: Normalize,
    cmap: Colormap,
) -> None:
    """The loss-law figure's points, coloured by size: one by one, and each configuration of
    ``groups`` at its mean over seeds with its bar and faint seeds."""
    from analysis.figures.seeds import draw_configurations, seed_legend_entry

    n = np.asarray(params, dtype=float)
    if n.size:
        ax.scatter(tokens, loss, c=n, norm=norm, cmap=cmap, s=10, alpha=0.7)
    if groups is None:
        return
    several = False
    for _, row in groups.iterrows():
        several |= draw_configurations(
            ax, groups.loc[[row.name]], color=cmap(norm(float(row["params"]))), size=22
        )
    if several:
        seed_legend_entry(ax)


def unfitted_figure(points: pd.DataFrame, *, untrusted: Sequence[str]) -> Figure:
    """The points a law could not be fitted on (loss against tokens, coloured by size) and
    why, so a figure asked for still says what happened."""
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm

    fig = new_figure(width=8.0, height=5.0)
    ax: Axes = fig.axes[0]
    n = np.asarray(points["params"], dtype=float)
    norm = LogNorm(vmin=n.min() / (1.5 if n.min() == n.max() else 1.0), vmax=n.max())
    sc = ax.scatter(points["tokens"], points["loss"], c=n, norm=norm, cmap=colormaps["viridis"])
    size_colorbar(fig, sc, ax)
    ax.set(xscale="log", xlabel="tokens seen D", ylabel="held-out loss (nats/token)")
    count_ticks(ax)
    _log_if_decades(ax)
    ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(
        "\n".join(f"NOT TRUSTED: {why}" for why in untrusted), color="firebrick", fontsize=9
    )
    return fig


def _log_if_decades(ax: Axes) -> None:
    """A logarithmic y axis where the data drawn span more than a decade."""
    values = [np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()]
    values += [np.asarray(c.get_offsets(), dtype=float)[:, 1] for c in ax.collections]
    ys = np.concatenate([v.ravel() for v in values]) if values else np.array([])
    ys = ys[np.isfinite(ys) & (ys > 0)]
    if ys.size and ys.max() / ys.min() > 10:
        ax.set_yscale("log")
        plain_log_ticks(ax)


def _best_sizes(
    ax: Axes,
    law: LossLawFit,
    predictions: Mapping[str, tuple[ThroughputFit, LossOptimal, Crossover]],
    intervals: Mapping[str, tuple[float, float]],
) -> None:
    for i, (device, (fit, best, cross)) in enumerate(predictions.items()):
        color = COLORS[i % len(COLORS)]
        lo, hi = span(best.n_opt, cross.n_star, law.n_range[0], law.n_range[1], pad=3.0)
        low, high = intervals.get(device, (math.nan, math.nan))
        if max(low, lo) < min(high, hi):  # shaded within the sizes drawn; the label says all
            ax.axvspan(
                max(low, lo),
                min(high, hi),
                color=color,
                alpha=0.12,
                label=f"  95% bootstrap interval: {fmt_count(low)} to {fmt_count(high)}",
            )
        grid = np.geomspace(lo, hi, 200)
        ax.plot(
            grid,
            law.predict(grid, fit.tokens_per_second(grid) * best.budget),
            color=color,
            label=f"{device}, {best.budget:g} s",
        )
        ax.plot(
            [best.n_opt],
            [best.loss],
            marker="o",
            linestyle="",
            color=color,
            label=f"  loss-optimal N = {fmt_count(best.n_opt)}",
        )
        loss_star = float(law.predict(cross.n_star, cross.tokens_at_n_star))
        extra = " (extrapolated)" if cross.extrapolated else ""
        ax.plot(
            [cross.n_star],
            [loss_star],
            marker="X",
            markersize=9,
            linestyle="",
            color=color,
            markerfacecolor="white" if cross.extrapolated else color,
            label=f"  {cross.ratio:g}x N* = {fmt_count(cross.n_star)}{extra}",
        )
    ax.set(
        xscale="log",
        xlabel="parameters N",
        ylabel="predicted loss after budget",
        title="Loss law's best size for the budget",
    )
    count_ticks(ax)
    ax.grid(True, which="both", alpha=0.3)
    outside_legend(ax)
