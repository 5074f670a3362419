"""What each analysis command does, importable and testable without a subprocess.

Every ``run_*`` function checks its output paths first, then loads, fits, and only then writes,
so a failure leaves nothing half-written. Each returns the text its CLI prints.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.fits import (
    CHINCHILLA_GRID,
    Crossover,
    LossLawFit,
    LossOptimal,
    StartGrid,
    ThroughputFit,
    fit_loss_law,
    fit_throughput,
    loss_optimal_n,
    pareto_frontier,
    solve_crossover,
)
from analysis.load import DEFAULT_STORAGE, StudyData, load_study, read_csv
from analysis.output import FIGURE_FORMATS, check_output, write_json
from study.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

PathArg = str | os.PathLike[str] | None

# A 3^5 subset of the Chinchilla grid, for quick looks and tests; results can differ from the
# full grid where the objective has several basins.
COARSE_GRID = StartGrid(
    alpha=(0.0, 0.5, 1.0), beta=(0.0, 0.5, 1.0), e=(-1.0, 0.0, 1.0), a=(0.0, 10.0, 20.0),
    b=(0.0, 10.0, 20.0),
)
GRIDS = {"chinchilla": CHINCHILLA_GRID, "coarse": COARSE_GRID}
METRICS = {"ppl": ("val_ppl", "held-out perplexity"), "bpb": ("val_bpb", "held-out bits per byte")}
COLOR_BY = {
    "depth": "n_layer", "pos": "pos", "mlp": "mlp", "arch": "arch", "device": "device_label",
}


# ---------------------------------------------------------------------------------------------
# Selecting trials
# ---------------------------------------------------------------------------------------------


def open_source(storage: str | None, study_name: str | None, csv: PathArg) -> StudyData | None:
    """The study to read, or None when the input is a CSV file (given alone)."""
    if csv is not None:
        if storage is not None or study_name is not None:
            raise UsageError("give either --csv or --storage/--study-name, not both")
        return None
    return load_study(storage or DEFAULT_STORAGE, study_name)


def complete_trials(data: StudyData) -> pd.DataFrame:
    """Complete trials with a device label; raises when there are none."""
    frame = data.complete().copy()
    if frame.empty:
        raise UsageError(f"study {data.study_name!r} has no complete trials yet")
    name = frame["device_name"].where(frame["device_name"].notna(), frame["device"])
    # Trainers before 0.1.1 named a CPU with the thread count it happened to run on, which a
    # CPU trial now picks per run: one machine, one label.
    label = name.fillna("unknown").astype(str).str.replace(r" \(\d+ threads?\)$", "", regex=True)
    frame["device_label"] = label
    return frame


def by_device(frame: pd.DataFrame, device: str | None) -> dict[str, pd.DataFrame]:
    """Trials grouped by device label; ``device`` keeps those whose device or device name is
    it (case-insensitive)."""
    if device is not None:
        want = device.casefold()
        keep = (frame["device_label"].str.casefold() == want) | (
            frame["device"].astype(str).str.casefold() == want
        )
        if not keep.any():
            have = ", ".join(sorted(set(frame["device_label"])))
            raise UsageError(f"no complete trial ran on device {device!r} (devices: {have})")
        frame = frame[keep]
    return {str(k): g for k, g in frame.groupby("device_label", sort=True)}


def budget_of(frame: pd.DataFrame, budget: float | None) -> float:
    """``budget`` if given, else the one budget the trials share."""
    if budget is not None:
        return check_budget(budget)
    values = sorted(set(frame["budget"].dropna().astype(float)))
    if not values:
        raise UsageError("the trials record no budget; give --budget")
    if len(values) > 1:
        shown = ", ".join(f"{v:g}" for v in values)
        raise UsageError(f"the trials ran with several budgets ({shown} s); pick one with --budget")
    return values[0]


def check_budget(budget: float) -> float:
    if not (math.isfinite(budget) and budget > 0):
        raise UsageError(f"--budget must be a positive number of seconds, got {budget}")
    return float(budget)


def metric_column(metric: str) -> str:
    """The trial column that holds ``metric`` (``ppl`` or ``bpb``)."""
    if metric not in METRICS:
        raise UsageError(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}")
    return METRICS[metric][0]


def metric_values(trials: pd.DataFrame, metric: str) -> pd.Series:
    """``metric`` for each trial; a perplexity missing from the attributes is the trial's
    value (the study's objective)."""
    values = trials[metric_column(metric)]
    return values.fillna(trials["value"]) if metric == "ppl" else values


def throughput_points(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """(params, tokens/s) of the trials that measured a steady-state rate, and the numbers of
    those that did not (too few steps in the budget to leave the warm-up)."""
    ok = frame["params"].gt(0) & frame["tokens_per_second"].gt(0)
    left_out = tuple(int(v) for v in frame.loc[~ok, "number"])
    return (frame.loc[ok, "params"].to_numpy(float),
            frame.loc[ok, "tokens_per_second"].to_numpy(float), left_out)


def loss_points(
    data: StudyData, trials: pd.DataFrame, *, max_epochs: float | None = None
) -> pd.DataFrame:
    """(params, tokens, loss, trial, source) for the loss law: each trial's final point and its
    curve points with a held-out loss. Trials whose loss is only a bound (diffusion) are left
    out. With ``max_epochs``, points that had seen the training tokens more often than that are
    left out too: L(N, D) describes fresh data, and repeated data (a small corpus on a fast
    device) make held-out loss rise with D instead of fall."""
    import pandas as pd

    exact = trials[trials["val_is_bound"].ne(True)]
    finals = pd.DataFrame({
        "params": exact["params"], "tokens": exact["tokens_seen"], "loss": exact["val_loss"],
        "trial": exact["number"], "source": "final",
    })
    curves = data.curves.merge(
        exact[["number", "params"]], left_on="trial_number", right_on="number", how="inner"
    )
    curves = pd.DataFrame({
        "params": curves["params"], "tokens": curves["tokens"], "loss": curves["val_loss"],
        "trial": curves["trial_number"], "source": "curve",
    })
    points = pd.concat([finals, curves], ignore_index=True)
    for col in ("params", "tokens", "loss"):
        points[col] = pd.to_numeric(points[col], errors="coerce")
    keep = points[["params", "tokens", "loss"]].gt(0).all(axis=1) & np.isfinite(
        points[["params", "tokens", "loss"]]).all(axis=1)
    if max_epochs is not None:
        per_epoch = pd.to_numeric(exact["tokens_seen"], errors="coerce") / pd.to_numeric(
            exact["epochs"], errors="coerce")
        corpus = dict(zip(exact["number"], per_epoch, strict=False))
        epochs = points["tokens"] / points["trial"].map(corpus)
        keep &= epochs.le(max_epochs) | epochs.isna()
    return points[keep].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Crossover
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrossoverOutcome:
    device: str
    fit: ThroughputFit
    crossover: Crossover
    params: tuple[float, ...]
    tokens_per_second: tuple[float, ...]
    left_out: tuple[int, ...] = ()  # trial numbers without a steady-state rate

    def as_dict(self) -> dict[str, Any]:
        c, f = self.crossover, self.fit
        return {
            "n_star": c.n_star, "tokens_at_n_star": c.tokens_at_n_star, "c": f.c, "k": f.k,
            "n_star_low": c.n_star_low, "n_star_high": c.n_star_high,
            "tokens_per_second_at_n_star": c.tokens_per_second_at_n_star, "budget": c.budget,
            "ratio": c.ratio, "level": c.level, "r2": f.r2, "c_low": f.c_low,
            "c_high": f.c_high, "k_low": f.k_low, "k_high": f.k_high, "n_points": f.n_points,
            "device": self.device, "extrapolated": c.extrapolated, "warnings": list(c.warnings),
            "left_out_trials": list(self.left_out),
        }


def crossover_for(
    device: str, params: np.ndarray, tps: np.ndarray, *, budget: float, ratio: float,
    n_boot: int = 1000, seed: int = 0, left_out: tuple[int, ...] = (),
) -> CrossoverOutcome:
    fit = fit_throughput(params, tps, n_boot=n_boot, seed=seed, device=device)
    cross = solve_crossover(fit, budget=budget, ratio=ratio)
    return CrossoverOutcome(device, fit, cross, tuple(params.tolist()), tuple(tps.tolist()),
                            left_out)


def crossover_text(o: CrossoverOutcome) -> str:
    f, c = o.fit, o.crossover
    pct = f"{c.level:.0%}"
    lines = [
        f"device: {o.device} ({f.n_points} points, sizes {f.n_min:.3g} to {f.n_max:.3g})",
        f"throughput fit: tokens/s = {f.c:.4g} * N^-{f.k:.4f}  (R^2 {f.r2:.4f}; {pct} interval"
        f" c {f.c_low:.3g} to {f.c_high:.3g}, k {f.k_low:.4f} to {f.k_high:.4f})",
        f"budget {c.budget:g} s, ratio {c.ratio:g} tokens per parameter",
        f"N* = {c.n_star:.4g} parameters ({pct} interval {c.n_star_low:.4g} to "
        f"{c.n_star_high:.4g})",
        f"tokens at N*: {c.tokens_at_n_star:.4g} at {c.tokens_per_second_at_n_star:.4g} tokens/s",
    ]
    lines += [f"warning: {w}" for w in c.warnings]
    if o.left_out:
        lines.append(f"warning: left out trial(s) {', '.join(map(str, o.left_out))}: no "
                     f"steady-state tokens/s recorded (too few steps in the budget)")
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
    n_boot: int = 1000,
    seed: int = 0,
) -> str:
    """Solve T(N) * budget = ratio * N from a study's trials or a CSV of
    ``params,tokens_per_second``; write ``json_path``, ``plot_path`` (tokens in budget against
    N) and ``throughput_plot_path`` (the throughput fit) if given."""
    json_out = check_output(json_path, what="--json")
    plot_out = check_output(plot_path, what="--plot", suffixes=FIGURE_FORMATS)
    throughput_out = check_output(throughput_plot_path, what="--throughput-plot",
                                  suffixes=FIGURE_FORMATS)
    if not (math.isfinite(ratio) and ratio > 0):
        raise UsageError(f"--ratio must be a positive number, got {ratio}")
    data = open_source(storage, study_name, csv)
    if data is None:
        assert csv is not None
        if budget is None:
            raise UsageError("--budget is required with --csv")
        points = read_csv(csv, ("params", "tokens_per_second"))
        label = device or "csv"
        outcome = crossover_for(
            label, points["params"].to_numpy(), points["tokens_per_second"].to_numpy(),
            budget=check_budget(budget), ratio=ratio, n_boot=n_boot, seed=seed,
        )
    else:
        groups = by_device(complete_trials(data), device)
        if len(groups) > 1:
            raise UsageError(
                f"study {data.study_name!r} ran on several devices, pick one with --device: "
                + ", ".join(groups)
            )
        label, frame = next(iter(groups.items()))
        n, t, left_out = throughput_points(frame)
        outcome = crossover_for(label, n, t, budget=budget_of(frame, budget), ratio=ratio,
                                n_boot=n_boot, seed=seed, left_out=left_out)
    if json_out is not None:
        write_json(json_out, outcome.as_dict())
    if throughput_out is not None or plot_out is not None:
        from analysis import plots
    if throughput_out is not None:
        plots.save(plots.throughput_figure(
            {outcome.device: outcome.fit},
            {outcome.device: (outcome.params, outcome.tokens_per_second)}), throughput_out)
    if plot_out is not None:
        plots.save(plots.crossover_figure(outcome.fit, outcome.crossover,
                                          params=outcome.params,
                                          tokens_per_second=outcome.tokens_per_second,
                                          label=outcome.device), plot_out)
    return crossover_text(outcome)


def device_crossovers(
    trials: pd.DataFrame, *, budget: float | None, ratio: float, device: str | None = None
) -> tuple[dict[str, CrossoverOutcome], dict[str, str]]:
    """A crossover per device where one can be computed, and the reason where not."""
    done: dict[str, CrossoverOutcome] = {}
    skipped: dict[str, str] = {}
    for label, frame in by_device(trials, device).items():
        try:
            n, t, left_out = throughput_points(frame)
            done[label] = crossover_for(label, n, t, budget=budget_of(frame, budget), ratio=ratio,
                                        left_out=left_out)
        except UsageError as exc:
            skipped[label] = str(exc)
    return done, skipped


# ---------------------------------------------------------------------------------------------
# Frontier
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrontierOutcome:
    metric: str
    color_by: str
    trials: pd.DataFrame  # complete trials with the metric, by params
    frontier: tuple[int, ...]  # row positions in ``trials``
    crossovers: dict[str, CrossoverOutcome]
    skipped: dict[str, str]

    def figure(self) -> Any:
        from analysis import plots

        column, label = METRICS[self.metric]
        return plots.frontier_figure(
            self.trials["params"], self.trials[column], self.trials[COLOR_BY[self.color_by]],
            list(self.frontier), metric_label=label, group_label=self.color_by,
            n_stars={d: o.crossover.n_star for d, o in self.crossovers.items()},
        )


def frontier_for(
    data: StudyData, *, metric: str, color_by: str, budget: float | None, ratio: float,
    device: str | None,
) -> FrontierOutcome:
    column = metric_column(metric)
    if color_by not in COLOR_BY:
        raise UsageError(f"--color-by must be one of {', '.join(COLOR_BY)}, got {color_by!r}")
    trials = complete_trials(data)
    if device is not None:
        trials = pd_concat(by_device(trials, device).values())
    trials[column] = metric_values(trials, metric)
    trials = trials[trials["params"].gt(0) & trials[column].gt(0)].sort_values("params")
    trials = trials.reset_index(drop=True)
    if trials.empty:
        raise UsageError(f"no complete trial records both params and {column}")
    front = pareto_frontier(trials["params"], trials[column])
    crossovers, skipped = device_crossovers(trials, budget=budget, ratio=ratio)
    return FrontierOutcome(metric, color_by, trials, tuple(int(i) for i in front), crossovers,
                           skipped)


def frontier_text(o: FrontierOutcome) -> str:
    column, label = METRICS[o.metric]
    rows = o.trials.iloc[list(o.frontier)]
    lines = [f"Pareto frontier of {label} ({len(rows)} of {len(o.trials)} complete trials):",
             f"{'trial':>6} {'params':>10} {column:>9} {'layers':>6} {'d_model':>7} "
             f"{'pos':>8} {'mlp':>7} {'lr':>9}"]
    for _, r in rows.iterrows():
        lines.append(
            f"{int(r['number']):>6} {r['params']:>10.4g} {r[column]:>9.4f} "
            f"{fmt_value(r['n_layer'], 'd'):>6} {fmt_value(r['d_model'], 'd'):>7} "
            f"{str(r['pos']):>8} {str(r['mlp']):>7} {fmt_value(r['lr'], '.3g'):>9}"
        )
    for device, c in o.crossovers.items():
        lines.append(f"N* ({c.crossover.ratio:g} tokens/param, {c.crossover.budget:g} s) "
                     f"on {device}: {c.crossover.n_star:.4g}")
    for device, why in o.skipped.items():
        lines.append(f"no N* for {device}: {why}")
    return "\n".join(lines)


def run_frontier(
    *,
    storage: str | None = None,
    study_name: str | None = None,
    plot_path: PathArg = None,
    metric: str = "ppl",
    color_by: str = "depth",
    budget: float | None = None,
    ratio: float = 20.0,
    device: str | None = None,
) -> str:
    """The metric against parameters with its Pareto frontier and N* marked."""
    plot_out = check_output(plot_path, what="--plot", suffixes=FIGURE_FORMATS)
    data = load_study(storage or DEFAULT_STORAGE, study_name)
    outcome = frontier_for(data, metric=metric, color_by=color_by, budget=budget, ratio=ratio,
                           device=device)
    if plot_out is not None:
        from analysis import plots

        plots.save(outcome.figure(), plot_out)
    return frontier_text(outcome)


# ---------------------------------------------------------------------------------------------
# Loss law
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    device: str
    crossover: CrossoverOutcome
    best: LossOptimal


@dataclass(frozen=True)
class ScalingLawOutcome:
    law: LossLawFit
    points: pd.DataFrame
    predictions: dict[str, Prediction]
    skipped: dict[str, str]

    def figure(self) -> Any:
        from analysis import plots

        return plots.loss_law_figure(
            self.law, params=self.points["params"], tokens=self.points["tokens"],
            loss=self.points["loss"],
            predictions={d: (p.crossover.fit, p.best, p.crossover.crossover)
                         for d, p in self.predictions.items()},
        )


def scaling_law_for(
    data: StudyData | None,
    points: pd.DataFrame,
    *,
    budget: float | None,
    ratio: float,
    device: str | None,
    grid: StartGrid,
) -> ScalingLawOutcome:
    law = fit_loss_law(points["params"], points["tokens"], points["loss"], grid=grid)
    predictions: dict[str, Prediction] = {}
    skipped: dict[str, str] = {}
    if data is not None:
        crossovers, skipped = device_crossovers(complete_trials(data), budget=budget,
                                                ratio=ratio, device=device)
        for label, cross in crossovers.items():
            best = loss_optimal_n(law, cross.fit, budget=cross.crossover.budget)
            predictions[label] = Prediction(label, cross, best)
    return ScalingLawOutcome(law, points, predictions, skipped)


def scaling_law_text(o: ScalingLawOutcome) -> str:
    law = o.law
    sources = o.points["source"].value_counts().to_dict() if "source" in o.points else {}
    counted = ", ".join(f"{v} {k}" for k, v in sorted(sources.items()))
    lines = [
        f"loss law L(N, D) = E + A/N^alpha + B/D^beta on {law.n_points} points"
        + (f" ({counted})" if counted else "")
        + f", Huber delta {law.delta:g}, best of {law.n_starts} L-BFGS starts "
        f"({law.n_converged} converged)",
        f"E = {law.E:.4f}", f"A = {law.A:.4g}", f"B = {law.B:.4g}",
        f"alpha = {law.alpha:.4f}", f"beta = {law.beta:.4f}",
        f"a = {law.a:.4f}  (N_opt ~ C^a)", f"b = {law.b:.4f}  (D_opt ~ C^b)",
    ]
    lines += [f"warning: {w}" for w in law.warnings]
    for label, p in o.predictions.items():
        c, b = p.crossover.crossover, p.best
        lines.append(
            f"{label}, budget {b.budget:g} s: loss-optimal N = {b.n_opt:.4g} "
            f"(predicted loss {b.loss:.4f}, {b.tokens:.4g} tokens, {b.tokens_per_param:.3g} "
            f"tokens/param) vs {c.ratio:g}x heuristic N* = {c.n_star:.4g}"
        )
        lines += [f"warning ({label}): {w}" for w in b.warnings]
    for label, why in o.skipped.items():
        lines.append(f"no prediction for {label}: {why}")
    return "\n".join(lines)


def run_scaling_law(
    *,
    storage: str | None = None,
    study_name: str | None = None,
    csv: PathArg = None,
    budget: float | None = None,
    ratio: float = 20.0,
    device: str | None = None,
    json_path: PathArg = None,
    plot_path: PathArg = None,
    grid: str = "chinchilla",
    max_epochs: float | None = None,
) -> str:
    """Fit the loss law on a study's points (finals and curves) or a CSV of
    ``params,tokens,loss``; on a study, predict the loss-optimal size per device."""
    json_out = check_output(json_path, what="--json")
    plot_out = check_output(plot_path, what="--plot", suffixes=FIGURE_FORMATS)
    if grid not in GRIDS:
        raise UsageError(f"--grid must be one of {', '.join(GRIDS)}, got {grid!r}")
    data = open_source(storage, study_name, csv)
    if data is None:
        assert csv is not None
        points = read_csv(csv, ("params", "tokens", "loss"))
        if budget is not None or device is not None:
            raise UsageError("--budget and --device need a study (a CSV has no throughput)")
    else:
        if max_epochs is not None and max_epochs <= 0:
            raise UsageError(f"--max-epochs must be positive, got {max_epochs:g}")
        points = loss_points(data, complete_trials(data), max_epochs=max_epochs)
        if points.empty:
            raise UsageError("no loss points left to fit (all beyond --max-epochs?)")
    outcome = scaling_law_for(data, points, budget=budget, ratio=ratio, device=device,
                              grid=GRIDS[grid])
    if json_out is not None:
        write_json(json_out, outcome.law.as_dict())
    if plot_out is not None:
        from analysis import plots

        plots.save(outcome.figure(), plot_out)
    return scaling_law_text(outcome)


# ---------------------------------------------------------------------------------------------


def pd_concat(frames: Any) -> pd.DataFrame:
    import pandas as pd

    return pd.concat(list(frames))


def fmt_value(value: Any, spec: str) -> str:
    """``value`` in ``spec``; "-" when it is missing."""
    try:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return format(int(value) if spec == "d" else float(value), spec)
    except (TypeError, ValueError):
        return str(value)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def run_report(
    *,
    storage: str | None = None,
    study_name: str | None = None,
    out: str | os.PathLike[str] = "report.html",
    budget: float | None = None,
    ratio: float = 20.0,
    top: int = 5,
    grid: str = "chinchilla",
) -> str:
    """Write the study's HTML report to ``out``; returns one line saying where."""
    from analysis.output import atomic_write_text
    from analysis.report_html import build_report, report_commands

    out_path = check_output(out, what="--out", suffixes=("html", "htm"))
    assert out_path is not None
    if grid not in GRIDS:
        raise UsageError(f"--grid must be one of {', '.join(GRIDS)}, got {grid!r}")
    if top < 0:
        raise UsageError(f"--top must be >= 0, got {top}")
    if budget is not None:
        check_budget(budget)
    data = load_study(storage or DEFAULT_STORAGE, study_name)
    labels = data.complete()["device_name"].dropna().astype(str)
    commands = report_commands(storage=data.storage, study_name=data.study_name,
                               budget=budget, ratio=ratio, out=str(out),
                               devices=sorted(set(labels)) or ["DEVICE"])
    page = build_report(data, budget=budget, ratio=ratio, grid=GRIDS[grid], top=top,
                        commands=commands)
    atomic_write_text(out_path, page)
    return f"wrote {out_path} ({len(page) / 1e6:.2f} MB) for study {data.study_name!r}"
