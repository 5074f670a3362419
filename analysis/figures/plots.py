"""Figures for the analysis, drawn on matplotlib's Agg canvas (imported lazily, no pyplot state).

Each ``*_figure`` function takes fitted results and arrays and returns a Figure; ``render``
turns it into bytes and ``save`` writes those atomically.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analysis.fits.core import ThroughputFit
from study.fileio import atomic_write_bytes
from study.fmt import fmt_count

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.cm import ScalarMappable
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

# Round elapsed times for a seconds axis: each at least 1.5x the one before, so labels never meet.
_SECONDS = (1, 2, 5, 10, 20, 30, 60, 120, 180, 300, 600, 1200, 1800, 3600, 7200)
COLORS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


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
    fmt = count_formatter()
    for on, axis in ((x, ax.xaxis), (y, ax.yaxis)):
        if on:
            axis.set_major_formatter(fmt)


def plain_log_ticks(ax: Axes) -> None:
    """Loss on a log y axis labelled 3.5, 4, 5 instead of 10^0.6."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)


def curves_figure(curves: pd.DataFrame, *, baseline: tuple[float, str] | None = None) -> Figure:
    """Held-out (top) and training (bottom) loss against elapsed seconds (left) and tokens seen
    (right), one line per trial coloured by its size on a log scale (``curves``: columns
    ``trial``, ``params``, ``elapsed_s``, ``tokens``, ``train_loss``, ``val_loss``);
    ``baseline`` (held-out nats/token, label: the best n-gram) a horizontal line on the
    held-out row."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import NullFormatter

    fig = new_figure(width=11.0, height=7.5)
    fig.clear()
    axes = fig.subplots(2, 2, sharey="row")
    lo, hi = float(curves["params"].min()), float(curves["params"].max())
    if lo == hi:  # one size: any colour will do, but LogNorm needs a span
        lo, hi = lo / 1.5, hi * 1.5
    norm = LogNorm(vmin=lo, vmax=hi)
    cmap = colormaps["viridis"]
    for row, (column, what) in enumerate((("val_loss", "held-out"), ("train_loss", "training"))):
        for col, (x, xlabel) in enumerate(
            (("elapsed_s", "elapsed training seconds"), ("tokens", "tokens seen"))
        ):
            ax: Axes = axes[row][col]
            for _, one in curves.groupby("trial", sort=True):
                one = one[one[column].gt(0) & one[x].gt(0)]
                if len(one):
                    ax.plot(
                        one[x],
                        one[column],
                        color=cmap(norm(one["params"].iloc[0])),
                        linewidth=1.2,
                        alpha=0.85,
                        marker="." if len(one) < 4 else None,
                    )
            if baseline is not None and row == 0:
                ax.axhline(baseline[0], color="firebrick", linestyle="--", label=baseline[1])
                ax.legend(fontsize=8, loc="upper right")
            ax.set(
                xscale="log",
                yscale="log",
                xlabel=xlabel,
                ylabel=f"{what} loss (nats/token)" if col == 0 else None,
            )
            plain_log_ticks(ax)
            count_ticks(ax)
            if x == "elapsed_s":  # often under a decade: a few round seconds, spaced apart
                lo, hi = float(curves[x].min()), float(curves[x].max())
                ax.set_xticks([t for t in _SECONDS if lo * 0.95 <= t <= hi * 1.05] or [lo, hi])
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.grid(True, which="both", alpha=0.3)
    size_colorbar(fig, ScalarMappable(norm=norm, cmap=cmap), axes)
    n = curves["trial"].nunique()
    fig.suptitle(f"Loss curves of {n} trial{'s' * (n != 1)}")
    return fig


def size_colorbar(fig: Figure, mappable: ScalarMappable, axes: Axes | Iterable[Axes]) -> None:
    """A colorbar of parameters N on a log scale, five ticks labelled 754k, 1.23M (a log
    colorbar's own minor labels crowd each other when the sizes span under two decades)."""
    bar = fig.colorbar(mappable, ax=axes, label="parameters N")
    norm = mappable.norm
    assert norm.vmin is not None and norm.vmax is not None
    ticks = [float(t) for t in np.geomspace(norm.vmin, norm.vmax, 5)]
    bar.ax.minorticks_off()
    bar.set_ticks(ticks, labels=[fmt_count(t) for t in ticks])


def count_formatter() -> FuncFormatter:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: fmt_count(v))


def span(*values: float, pad: float = 2.0) -> tuple[float, float]:
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
        color = COLORS[i % len(COLORS)]
        n, t = (np.asarray(v, dtype=float) for v in points[device])
        ax.scatter(n, t, s=18, color=color, alpha=0.7)
        grid = np.geomspace(fit.n_min / 1.5, fit.n_max * 1.5, 100)
        ax.plot(
            grid,
            fit.tokens_per_second(grid),
            color=color,
            label=f"{device}: {fmt_count(fit.c)} N^-{fit.k:.3f} (R^2 {fit.r2:.3f})",
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="parameters N",
        ylabel="tokens / s (steady state)",
        title="Throughput against model size",
    )
    count_ticks(ax, y=True)
    ax.grid(True, which="both", alpha=0.3)
    outside_legend(ax)
    return fig


@dataclass(frozen=True)
class NStar:
    """A device's crossover size as the frontier marks it: outside the measured sizes it is
    an extrapolation and drawn as one (dashed, labelled)."""

    n_star: float
    extrapolated: bool


def frontier_figure(
    params: ArrayLike,
    metric: ArrayLike,
    groups: Sequence[object],
    frontier: ArrayLike,
    *,
    metric_label: str,
    group_label: str,
    n_stars: Mapping[str, NStar] | None = None,
    numbers: Sequence[int | tuple[int, ...]] | None = None,
    baseline: tuple[float, str] | None = None,
    sd: ArrayLike | None = None,
    seeds: Sequence[Sequence[float]] | None = None,
) -> Figure:
    """The metric (lower is better) against N on a log axis, points coloured by ``groups``,
    the Pareto frontier as a line, the best point starred and named (its trial number, or
    numbers, from ``numbers``), each device's crossover N* as a vertical line and ``baseline``
    (value, label: the best n-gram) as a horizontal one. A point is a configuration: with
    ``seeds`` (each point's values over its seeds) and ``sd``, one with several seeds is drawn
    at its mean with a +-1 sd bar and its seeds faint beside it. Labels live in a legend
    beside the axes, so none overlaps a point or another label."""
    from analysis.figures.seeds import seed_legend_entry

    fig = new_figure(width=8.5)
    ax: Axes = fig.axes[0]
    points = _points_frame(params, metric, sd, seeds)
    n, m = points["x"].to_numpy(float), points["y"].to_numpy(float)
    several = _draw_coloured(fig, ax, points, groups, group_label=group_label)
    if several:
        seed_legend_entry(ax)
    idx = np.asarray(frontier, dtype=int)
    if idx.size:
        ax.step(n[idx], m[idx], where="post", color="black", linewidth=1.5, label="Pareto frontier")
    _mark_best(ax, n, m, numbers)
    _mark_n_stars(ax, n_stars or {})
    if baseline is not None:  # the best n-gram: a model above it is not worth its training
        ax.axhline(baseline[0], color="firebrick", linestyle="--", label=baseline[1])
    ax.set(
        xscale="log",
        xlabel="parameters N",
        ylabel=metric_label,
        title=f"{metric_label} against model size",
    )
    count_ticks(ax)
    if m.size and np.nanmax(m) / max(np.nanmin(m), 1e-12) > 5:
        ax.set_yscale("log")
        plain_log_ticks(ax)
    ax.grid(True, which="both", alpha=0.3)
    outside_legend(ax)
    return fig


def _draw_coloured(
    fig: Figure, ax: Axes, points: pd.DataFrame, groups: Sequence[object], *, group_label: str
) -> bool:
    """The points coloured by ``groups``: one legend entry per value, or where the values are
    numbers of more than a legend can name, a colour bar below the axes. Returns whether any
    point had several seeds."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm

    from analysis.figures.colours import is_number, value_scale
    from analysis.figures.seeds import draw_configurations

    several = False
    scale = value_scale(list(groups))
    if scale is not None:
        cmap = colormaps["viridis"]
        for i, value in enumerate(groups):
            color = cmap(scale(float(value))) if is_number(value) else "0.6"  # type: ignore[arg-type]
            several |= draw_configurations(ax, points.iloc[[i]], color=color)
        bar = fig.colorbar(
            ScalarMappable(norm=scale, cmap=cmap), ax=ax, location="bottom", label=group_label
        )
        assert scale.vmin is not None and scale.vmax is not None
        ticks = np.linspace(scale.vmin, scale.vmax, 5)
        if isinstance(scale, LogNorm):  # a log bar's own minor labels crowd each other
            ticks = np.geomspace(scale.vmin, scale.vmax, 5)
            bar.ax.minorticks_off()
        bar.set_ticks([float(t) for t in ticks], labels=[f"{t:.3g}" for t in ticks])
        return several
    labels = np.asarray([_label(g) for g in groups], dtype=object)
    for i, g in enumerate(sorted(set(labels.tolist()), key=_natural)):
        several |= draw_configurations(
            ax, points[labels == g], color=COLORS[i % len(COLORS)], label=f"{group_label} {g}"
        )
    return several


def _points_frame(
    params: ArrayLike,
    metric: ArrayLike,
    sd: ArrayLike | None,
    seeds: Sequence[Sequence[float]] | None,
) -> pd.DataFrame:
    """The points as :func:`analysis.figures.seeds.draw_configurations` takes them (one seed
    each where ``seeds`` is not given)."""
    import pandas as pd

    x = np.asarray(params, dtype=float)
    y = np.asarray(metric, dtype=float)
    values = [tuple(v) for v in seeds] if seeds is not None else [(v,) for v in y]
    return pd.DataFrame(
        {
            "x": x,
            "y": y,
            "sd": np.full(x.size, np.nan) if sd is None else np.asarray(sd, dtype=float),
            "n": [len(v) for v in values],
            "seed_x": [(xi,) * len(v) for xi, v in zip(x, values, strict=True)],
            "seed_y": values,
        }
    )


def _mark_best(
    ax: Axes,
    n: NDArray[np.float64],
    m: NDArray[np.float64],
    numbers: Sequence[int | tuple[int, ...]] | None,
) -> None:
    """The best point (lowest metric) as a gold star, named by its trial number (or, for a
    configuration of several seeds, its trials and that the value is their mean) if given."""
    if not (m.size and np.isfinite(m).any()):
        return
    b = int(np.nanargmin(m))
    name = ""
    if numbers is not None:
        which = list(numbers)[b]
        if isinstance(which, tuple) and len(which) > 1:
            name = f"trials {', '.join(str(t) for t in which)} (mean of {len(which)}), "
        else:
            name = f"trial {which[0] if isinstance(which, tuple) else int(which)}, "
    ax.scatter(
        [n[b]],
        [m[b]],
        marker="*",
        s=260,
        color="gold",
        edgecolors="black",
        zorder=5,
        label=f"best: {name}N = {fmt_count(n[b])}, {m[b]:.4g}",
    )


def _mark_n_stars(ax: Axes, n_stars: Mapping[str, NStar]) -> None:
    """Each device's crossover N* as a vertical line, dashed and labelled when extrapolated."""
    for j, (device, star) in enumerate(n_stars.items()):
        style, note = ("--", " (extrapolated)") if star.extrapolated else ((":", "-.")[j % 2], "")
        ax.axvline(
            star.n_star,
            color="0.3",
            linestyle=style,
            label=f"N* {device} = {fmt_count(star.n_star)}{note}",
        )


def outside_legend(ax: Axes) -> None:
    """The legend to the right of the axes: it can cover no point, line or other label."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


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
