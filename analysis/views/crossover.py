"""Throughput per device and the Chinchilla crossover N*: what ``python -m analysis.crossover``
does, and the per-device crossovers the frontier, the loss-law prediction and the report use.

The fits themselves are pure (``analysis.fits.core``); this module picks their points from a study or
a CSV file, words the result and writes the files asked for. ``run_crossover`` checks its output
paths first, then loads and fits, and only then writes, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from analysis.figures import law_plots, plots
from analysis.fits.core import Crossover, ThroughputFit, fit_throughput, solve_crossover
from analysis.fits.errors import FitError
from analysis.load import read_csv
from analysis.selection import (
    PathArg,
    budget_of,
    by_device,
    check_budget,
    complete_trials,
    open_source,
    throughput_configurations,
    throughput_points,
)
from study.errors import UsageError
from study.fileio import write_json
from study.fmt import fmt_count
from study.outputs import check_output

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class CrossoverOutcome:
    """One device's throughput fit, its crossover and the points it was fitted on."""

    device: str
    fit: ThroughputFit
    crossover: Crossover
    params: tuple[float, ...]
    tokens_per_second: tuple[float, ...]
    left_out: tuple[int, ...] = ()  # trial numbers without a steady-state rate
    configurations: tuple[str, ...] = ()  # each point's configuration (none from a CSV)

    def figure(self) -> Figure:
        """Tokens seen in the budget against N with the crossover (a configuration's seeds at
        their mean, +-1 sd, each seed faint)."""
        return law_plots.crossover_figure(
            self.fit,
            self.crossover,
            params=self.params,
            tokens_per_second=self.tokens_per_second,
            label=self.device,
            configurations=self.configurations or None,
        )

    def as_dict(self) -> dict[str, Any]:
        c, f = self.crossover, self.fit
        return {
            "n_star": c.n_star,
            "tokens_at_n_star": c.tokens_at_n_star,
            "c": f.c,
            "k": f.k,
            "n_star_low": c.n_star_low,
            "n_star_high": c.n_star_high,
            "tokens_per_second_at_n_star": c.tokens_per_second_at_n_star,
            "budget": c.budget,
            "ratio": c.ratio,
            "level": c.level,
            "r2": f.r2,
            "c_low": f.c_low,
            "c_high": f.c_high,
            "k_low": f.k_low,
            "k_high": f.k_high,
            "n_points": f.n_points,
            "device": self.device,
            "extrapolated": c.extrapolated,
            "warnings": list(c.warnings),
            "left_out_trials": list(self.left_out),
        }


def crossover_for(
    device: str,
    params: np.ndarray,
    tps: np.ndarray,
    *,
    budget: float,
    ratio: float,
    n_boot: int = 1000,
    seed: int = 0,
    left_out: tuple[int, ...] = (),
    configurations: tuple[str, ...] = (),
) -> CrossoverOutcome:
    """Fit tokens/s = c N^-k on (``params``, ``tps``) and solve T(N) * budget = ratio * N."""
    fit = fit_throughput(params, tps, n_boot=n_boot, seed=seed, device=device)
    cross = solve_crossover(fit, budget=budget, ratio=ratio)
    return CrossoverOutcome(
        device,
        fit,
        cross,
        tuple(params.tolist()),
        tuple(tps.tolist()),
        left_out,
        configurations,
    )


def device_crossovers(
    trials: pd.DataFrame, *, budget: float | None, ratio: float, device: str | None = None
) -> tuple[dict[str, CrossoverOutcome], dict[str, str]]:
    """A crossover per device where one can be computed, and the reason where not."""
    done: dict[str, CrossoverOutcome] = {}
    skipped: dict[str, str] = {}
    for label, frame in by_device(trials, device).items():
        try:
            n, t, left_out = throughput_points(frame)
            done[label] = crossover_for(
                label,
                n,
                t,
                budget=budget_of(frame, budget),
                ratio=ratio,
                left_out=left_out,
                configurations=throughput_configurations(frame),
            )
        except (UsageError, FitError) as exc:
            skipped[label] = str(exc)
    return done, skipped


def crossover_text(o: CrossoverOutcome) -> str:
    """The fit, N* and its interval, and every warning, one fact a line."""
    f, c = o.fit, o.crossover
    pct = f"{c.level:.0%}"
    lines = [
        f"device: {o.device} ({f.n_points} points, sizes {fmt_count(f.n_min)} to "
        f"{fmt_count(f.n_max)})",
        f"throughput fit: tokens/s = {fmt_count(f.c)} * N^-{f.k:.4f}  (R^2 {f.r2:.4f}; {pct} "
        f"interval c {fmt_count(f.c_low)} to {fmt_count(f.c_high)}, k {f.k_low:.4f} to "
        f"{f.k_high:.4f})",
        f"budget {c.budget:g} s, ratio {c.ratio:g} tokens per parameter",
        f"N* = {fmt_count(c.n_star)} parameters ({pct} interval {fmt_count(c.n_star_low)} to "
        f"{fmt_count(c.n_star_high)})",
        f"tokens at N*: {fmt_count(c.tokens_at_n_star)} at "
        f"{fmt_count(c.tokens_per_second_at_n_star)} tokens/s",
    ]
    lines += [f"warning: {w}" for w in c.warnings]
    if o.left_out:
        lines.append(
            f"warning: left out trial(s) {', '.join(map(str, o.left_out))}: no "
            f"steady-state tokens/s recorded (too few steps in the budget)"
        )
    return "\n".join(lines)


def run_crossover(
    *,
    storage: str | None = None,
    study_name: str | None = None,
    csv: PathArg = None,
    budget: float | None = None,
    ratio: float = 20.0,
    device: str | None = None,
    json_path: PathArg = None,
    plot_path: PathArg = None,
    throughput_plot_path: PathArg = None,
    force: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
) -> str:
    """Solve T(N) * budget = ratio * N from a study's trials or a CSV of
    ``params,tokens_per_second``; write ``json_path``, ``plot_path`` (tokens in budget against
    N) and ``throughput_plot_path`` (the throughput fit) if given. Returns the text to print.

    Raises:
        UsageError: bad options or paths, or data the fit cannot use (nothing is written then).
    """
    json_out = check_output(json_path, what="--json", kind="json", force=force)
    plot_out = check_output(plot_path, what="--plot", kind="figure", force=force)
    throughput_out = check_output(
        throughput_plot_path, what="--throughput-plot", kind="figure", force=force
    )
    if not (math.isfinite(ratio) and ratio > 0):
        raise UsageError(f"--ratio must be a positive number, got {ratio}")
    data = open_source(storage, study_name, csv)
    if data is None:
        assert csv is not None
        outcome = _csv_crossover(csv, budget, ratio, device=device, n_boot=n_boot, seed=seed)
    else:
        groups = by_device(complete_trials(data), device)
        if len(groups) > 1:
            raise UsageError(
                f"study {data.study_name!r} ran on several devices, pick one with --device: "
                + ", ".join(groups)
            )
        label, frame = next(iter(groups.items()))
        n, t, left_out = throughput_points(frame)
        outcome = crossover_for(
            label,
            n,
            t,
            budget=budget_of(frame, budget),
            ratio=ratio,
            n_boot=n_boot,
            seed=seed,
            left_out=left_out,
            configurations=throughput_configurations(frame),
        )
    if json_out is not None:
        write_json(json_out, outcome.as_dict())
    _save_figures(outcome, plot_out=plot_out, throughput_out=throughput_out)
    return crossover_text(outcome)


def _csv_crossover(
    csv: str | os.PathLike[str],
    budget: float | None,
    ratio: float,
    *,
    device: str | None,
    n_boot: int,
    seed: int,
) -> CrossoverOutcome:
    """The crossover of a CSV of ``params,tokens_per_second`` (``--csv``; needs ``--budget``)."""
    if budget is None:
        raise UsageError("--budget is required with --csv")
    points = read_csv(csv, ("params", "tokens_per_second"))
    return crossover_for(
        device or "csv",
        points["params"].to_numpy(),
        points["tokens_per_second"].to_numpy(),
        budget=check_budget(budget),
        ratio=ratio,
        n_boot=n_boot,
        seed=seed,
    )


def _save_figures(
    o: CrossoverOutcome, *, plot_out: Path | None, throughput_out: Path | None
) -> None:
    if throughput_out is not None:
        plots.save(
            plots.throughput_figure({o.device: o.fit}, {o.device: (o.params, o.tokens_per_second)}),
            throughput_out,
        )
    if plot_out is not None:
        plots.save(o.figure(), plot_out)
