"""Figures for the analysis, drawn on matplotlib's Agg canvas (imported lazily, no pyplot state).

Each ``*_figure`` function takes fitted results and arrays and returns a Figure; ``render``
turns it into bytes and ``save`` writes those atomically.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from analysis.fits import Crossover, ThroughputFit
from analysis.loss_law import LossLawFit, LossOptimal
from study.fileio import atomic_write_bytes
from study.fmt import fmt_count

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def new_figure(*, width: float = 7.0, height: float = 4.5, ncols: int = 1) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    fig.subplots(1, ncols)
    return fig


def render(fig: Figure, fmt: str = "png") -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=120)
    return buf.getvalue()


def save(fig: Figure, path: str | os.PathLike[str]) -> None:
    atomic_write_bytes(path, render(fig, Path(path).suffix.lower().lstrip(".") or "png"))


def count_ticks(ax: Axes, *, x: bool = True, y: bool = False) -> None:
    """Tick labels of a count axis (parameters, tokens) in the one format: 754k, 1.23M."""
    fmt = _count_formatter()
    for on, axis in ((x, ax.xaxis), (y, ax.yaxis)):
        if on:
            axis.set_major_formatter(fmt)


def plain_log_ticks(ax: Axes) -> None:
    """Loss on a log y axis labelled 3.5, 4, 5 instead of 10^0.6."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)


def curves_figure(curves: pd.DataFrame) -> Figure:
    """Held-out (top) and training (bottom) loss against elapsed seconds (left) and tokens seen
    (right), one line per trial coloured by its size on a log scale (``curves``: columns
    ``trial``, ``params``, ``elapsed_s``, ``tokens``, ``train_loss``, ``val_loss``)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm

    fig = new_figure(width=11.0, height=7.5)
    fig.clear()
    axes = fig.subplots(2, 2, sharey="row")
    norm = LogNorm(vmin=float(curves["params"].min()), vmax=float(curves["params"].max()))
    if norm.vmin == norm.vmax:  # one size: any colour will do, but LogNorm needs a span
        norm = LogNorm(vmin=norm.vmin / 1.5, vmax=norm.vmax * 1.5)
    cmap = colormaps["viridis"]
    for row, (column, what) in enumerate((("val_loss", "held-out"), ("train_loss", "training"))):
        for col, (x, xlabel) in enumerate((("elapsed_s", "elapsed training seconds"),
                                           ("tokens", "tokens seen"))):
            ax: Axes = axes[row][col]
            for _, one in curves.groupby("trial", sort=True):
                one = one[one[column].gt(0) & one[x].gt(0)]
                if len(one):
                    ax.plot(one[x], one[column], color=cmap(norm(one["params"].iloc[0])),
                            linewidth=1.2, alpha=0.85, marker="." if len(one) < 4 else None)
            ax.set(xscale="log", yscale="log", xlabel=xlabel,
                   ylabel=f"{what} loss (nats/token)" if col == 0 else None)
            plain_log_ticks(ax)
            count_ticks(ax)
            if x == "elapsed_s":  # often under a decade: label 60, 200, 300 too
                ax.xaxis.set_minor_formatter(_count_formatter())
            ax.grid(True, which="both", alpha=0.3)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="parameters N")
    bar.ax.yaxis.set_major_formatter(_count_formatter())
    n = curves["trial"].nunique()
    fig.suptitle(f"Loss curves of {n} trial{'s' * (n != 1)}")
    return fig


def _count_formatter() -> FuncFormatter:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: fmt_count(v))


def _span(*values: float, pad: float = 2.0) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v) and v > 0]
    return min(finite) / pad, max(finite) * pad


def throughput_figure(
    fits: Mapping[str, ThroughputFit],
    points: Mapping[str, tuple[ArrayLike, ArrayLike]],
) -> Figure:
    """Measured tokens/s against N on log-log axes, one colour and fitted line per device."""
    fig = new_figure()
    ax: Axes = fig.axes[0]
    for i, (device, fit) in enumerate(fits.items()):
        color = _COLORS[i % len(_COLORS)]
        n, t = (np.asarray(v, dtype=float) for v in points[device])
        ax.scatter(n, t, s=18, color=color, alpha=0.7)
        grid = np.geomspace(fit.n_min / 1.5, fit.n_max * 1.5, 100)
        ax.plot(grid, fit.tokens_per_second(grid), color=color,
                label=f"{device}: {fit.c:.3g} N^-{fit.k:.3f} (R^2 {fit.r2:.3f})")
    ax.set(xscale="log", yscale="log", xlabel="parameters N", ylabel="tokens / s (steady state)",
           title="Throughput against model size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def crossover_figure(
    fit: ThroughputFit,
    cross: Crossover,
    *,
    params: ArrayLike,
    tokens_per_second: ArrayLike,
    label: str | None = None,
) -> Figure:
    """Tokens seen in the budget against N beside the ratio * N line, the crossing marked."""
    fig = new_figure()
    ax: Axes = fig.axes[0]
    n = np.asarray(params, dtype=float)
    t = np.asarray(tokens_per_second, dtype=float)
    lo, hi = _span(fit.n_min, fit.n_max, cross.n_star, cross.n_star_low, cross.n_star_high,
                   pad=1.5)
    grid = np.geomspace(lo, hi, 200)
    ax.scatter(n, t * cross.budget, s=18, color=_COLORS[0], alpha=0.7,
               label="measured tokens/s x budget")
    ax.plot(grid, fit.tokens_per_second(grid) * cross.budget, color=_COLORS[0],
            label=f"fit T(N) x {cross.budget:g} s, T = {fit.c:.3g} N^-{fit.k:.3f}")
    ax.plot(grid, cross.ratio * grid, color=_COLORS[1], linestyle="--",
            label=f"{cross.ratio:g} x N tokens")
    ax.axvspan(cross.n_star_low, cross.n_star_high, color=_COLORS[1], alpha=0.12,
               label=f"{cross.level:.0%} bootstrap interval")
    ax.plot([cross.n_star], [cross.tokens_at_n_star], marker="o", markersize=9,
            color="black", zorder=5)
    ax.annotate(f"N* = {cross.n_star:.3g}\n{cross.tokens_at_n_star:.3g} tokens",
                (cross.n_star, cross.tokens_at_n_star), textcoords="offset points",
                xytext=(10, -28), fontsize=9)
    title = "Chinchilla crossover" + (f" ({label})" if label else "")
    ax.set(xscale="log", yscale="log", xlabel="parameters N", ylabel="tokens seen in budget",
           title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def frontier_figure(
    params: ArrayLike,
    metric: ArrayLike,
    groups: Sequence[object],
    frontier: ArrayLike,
    *,
    metric_label: str,
    group_label: str,
    n_stars: Mapping[str, float] | None = None,
) -> Figure:
    """The metric (lower is better) against N on a log axis, points coloured by ``groups``,
    the Pareto frontier as a line and each device's crossover N* as a vertical line."""
    fig = new_figure()
    ax: Axes = fig.axes[0]
    n = np.asarray(params, dtype=float)
    m = np.asarray(metric, dtype=float)
    labels = np.asarray([_label(g) for g in groups], dtype=object)
    for i, g in enumerate(sorted(set(labels.tolist()), key=_natural)):
        sel = labels == g
        ax.scatter(n[sel], m[sel], s=24, color=_COLORS[i % len(_COLORS)], alpha=0.8,
                   label=f"{group_label} {g}")
    idx = np.asarray(frontier, dtype=int)
    if idx.size:
        ax.step(n[idx], m[idx], where="post", color="black", linewidth=1.5,
                label="Pareto frontier")
    for j, (device, n_star) in enumerate((n_stars or {}).items()):
        ax.axvline(n_star, color="0.3", linestyle=("--", ":", "-.")[j % 3],
                   label=f"N* {device} = {n_star:.3g}")
    ax.set(xscale="log", xlabel="parameters N", ylabel=metric_label,
           title=f"{metric_label} against model size")
    if m.size and np.nanmax(m) / max(np.nanmin(m), 1e-12) > 5:
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _pos: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def loss_law_figure(
    law: LossLawFit,
    *,
    params: ArrayLike,
    tokens: ArrayLike,
    loss: ArrayLike,
    predictions: Mapping[str, tuple[ThroughputFit, LossOptimal, Crossover]],
) -> Figure:
    """Left: loss against tokens, points and the law's curves for a few sizes. Right: for each
    device, the law's loss after the budget against N, the loss-optimal N and N* marked."""
    fig = new_figure(width=11.0, ncols=2 if predictions else 1)
    ax: Axes = fig.axes[0]
    n = np.asarray(params, dtype=float)
    d = np.asarray(tokens, dtype=float)
    y = np.asarray(loss, dtype=float)
    ln = np.log10(n)
    sc = ax.scatter(d, y, c=ln, s=10, cmap="viridis", alpha=0.7)
    fig.colorbar(sc, ax=ax, label="log10 N")
    d_grid = np.geomspace(d.min() / 1.5, d.max() * 1.5, 100)
    for size in np.unique(np.quantile(n, [0.0, 0.5, 1.0])):
        ax.plot(d_grid, law.predict(size, d_grid), color="black", linewidth=1, alpha=0.7)
        ax.annotate(f"N={size:.2g}", (d_grid[-1], float(law.predict(size, d_grid[-1]))),
                    fontsize=7)
    ax.set(xscale="log", xlabel="tokens seen D", ylabel="held-out loss (nats/token)",
           title=(f"L = {law.E:.3g} + {law.A:.3g}/N^{law.alpha:.3f}"
                  f" + {law.B:.3g}/D^{law.beta:.3f}"))
    ax.grid(True, which="both", alpha=0.3)
    if predictions:
        ax2: Axes = fig.axes[1]
        for i, (device, (fit, best, cross)) in enumerate(predictions.items()):
            color = _COLORS[i % len(_COLORS)]
            lo, hi = _span(best.n_opt, cross.n_star, law.n_range[0], law.n_range[1], pad=3.0)
            grid = np.geomspace(lo, hi, 200)
            ax2.plot(grid, law.predict(grid, fit.tokens_per_second(grid) * best.budget),
                     color=color, label=f"{device}, {best.budget:g} s")
            ax2.plot([best.n_opt], [best.loss], marker="o", color=color)
            ax2.annotate(f"loss-optimal {best.n_opt:.3g}", (best.n_opt, best.loss),
                         textcoords="offset points", xytext=(5, 8), fontsize=8)
            loss_star = float(law.predict(cross.n_star, cross.tokens_at_n_star))
            ax2.plot([cross.n_star], [loss_star], marker="x", markersize=9, color=color)
            ax2.annotate(f"{cross.ratio:g}x N* {cross.n_star:.3g}", (cross.n_star, loss_star),
                         textcoords="offset points", xytext=(5, -14), fontsize=8)
        ax2.set(xscale="log", xlabel="parameters N", ylabel="predicted loss after budget",
                title="Loss law's best size for the budget")
        ax2.grid(True, which="both", alpha=0.3)
        ax2.legend(fontsize=8)
    return fig


def _label(value: object) -> str:
    """Group labels: whole floats (pandas turns int columns with gaps into floats) as ints."""
    if isinstance(value, float):
        if math.isnan(value):
            return "unknown"
        if value.is_integer():
            return str(int(value))
    return "unknown" if value is None else str(value)


def _natural(value: str) -> tuple[int, float | str]:
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)
