"""Held-out quality against size with its Pareto frontier: what ``python -m analysis.frontier``
does, and the frontier section of the report.

The frontier is the set of trials no smaller trial beats (``analysis.fits.core.pareto_frontier``);
each device's crossover N* is marked beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from analysis.figures import plots
from analysis.fits.core import pareto_frontier
from analysis.fits.groups import configuration_points
from analysis.load import DEFAULT_STORAGE, StudyData, load_study
from analysis.selection import (
    METRICS,
    PathArg,
    complete_trials,
    fmt_value,
    metric_column,
    metric_values,
    on_device,
    vocab_note,
)
from analysis.views.baseline import study_baseline, trials_beats_line
from analysis.views.crossover import CrossoverOutcome, device_crossovers
from study.errors import UsageError
from study.fmt import fmt_count
from study.outputs import check_output

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from analysis.views.baseline import Baselines

# --color-by name -> the trial column the point colours show; any other name is looked up
# among the swept parameters (color_column)
COLOR_BY = {
    "depth": "n_layer",
    "pos": "pos",
    "mlp": "mlp",
    "arch": "arch",
    "device": "device_label",
    "dropout": "config.model.dropout",
    "weight_decay": "config.weight_decay",
}
# Config fields no one sweeps to colour a frontier by (they are the same by construction).
_NOT_SWEPT = ("config.seed", "config.curve_eval_tokens")


def color_column(trials: pd.DataFrame, name: str) -> str:
    """The trial column ``--color-by name`` colours by: a name of ``COLOR_BY``, else a swept
    parameter: a config field (``lr``, ``n_head``, ``schedule``, ``model.norm``: the stored
    ``config.<name>`` or ``config.model.<name>``) or an Optuna parameter (``size``, ``cell``).

    Raises:
        UsageError: ``name`` is none of these (the message lists what the study sweeps).
    """
    if name in COLOR_BY and COLOR_BY[name] in trials:
        return COLOR_BY[name]
    for column in (f"config.{name}", f"config.model.{name}", f"param.{name}"):
        if column in trials and column not in _NOT_SWEPT:
            return column
    swept = sorted(
        c.removeprefix("config.").removeprefix("model.").removeprefix("param.")
        for c in trials.columns
        if c.startswith(("config.", "param."))
        and c not in _NOT_SWEPT
        and trials[c].astype(str).nunique() > 1
    )
    raise UsageError(
        f"--color-by must be one of {', '.join(COLOR_BY)} or a parameter the study sweeps "
        f"({', '.join(dict.fromkeys(swept)) or 'none'}), got {name!r}"
    )


# What the frontier's table shows of a configuration (its first trial's values).
_SHOWN = ("number", "n_layer", "d_model", "pos", "mlp", "lr")


@dataclass(frozen=True)
class FrontierOutcome:
    """The trials with the metric, their configurations (seeds grouped: the points drawn),
    which configurations form the frontier, and each device's N*."""

    metric: str
    color_by: str
    color_column: str  # the trial column the colours show (color_column)
    trials: pd.DataFrame  # complete trials with the metric, by params
    groups: pd.DataFrame  # analysis.fits.groups.configuration_points of params and the metric
    frontier: tuple[int, ...]  # row positions in ``groups``
    crossovers: dict[str, CrossoverOutcome]
    skipped: dict[str, str]  # device -> why it has no N*
    baseline: Baselines | None = None  # the n-gram baselines of the study's corpus

    def figure(self) -> Figure:
        column, label = METRICS[self.metric]
        line = None
        if self.baseline is not None:
            best = self.baseline.best()
            value = best.bpb if self.metric == "bpb" else best.ppl
            line = (value, f"best n-gram (order {best.order}) = {value:.4g}")
        g = self.groups
        return plots.frontier_figure(
            g["x"],
            g["y"],
            list(g[self.color_column]),
            list(self.frontier),
            metric_label=label,
            group_label=self.color_by,
            n_stars={
                d: plots.NStar(o.crossover.n_star, o.crossover.extrapolated)
                for d, o in self.crossovers.items()
            },
            numbers=list(g["trials"]),
            baseline=line,
            sd=g["sd"],
            seeds=list(g["seed_y"]),
        )


def frontier_for(
    data: StudyData,
    *,
    metric: str,
    color_by: str,
    budget: float | None,
    ratio: float,
    device: str | None,
    baseline: Baselines | None = None,
) -> FrontierOutcome:
    """The frontier of ``metric`` over the complete trials (of ``device`` only, if given),
    with the study's n-gram ``baseline`` to show beside it.

    Raises:
        UsageError: unknown metric or colouring, or no trial records both params and the metric.
    """
    column = metric_column(metric)
    trials = on_device(complete_trials(data), device)
    colors = color_column(trials, color_by)
    trials[column] = metric_values(trials, metric)
    trials = trials[trials["params"].gt(0) & trials[column].gt(0)].sort_values("params")
    trials = trials.reset_index(drop=True)
    if trials.empty:
        raise UsageError(f"no complete trial records both params and {column}")
    keep = tuple(dict.fromkeys((*_SHOWN, colors)))
    groups = configuration_points(trials, x="params", y=column, keep=keep)
    front = pareto_frontier(groups["x"], groups["y"])
    crossovers, skipped = device_crossovers(trials, budget=budget, ratio=ratio)
    return FrontierOutcome(
        metric,
        color_by,
        colors,
        trials,
        groups,
        tuple(int(i) for i in front),
        crossovers,
        skipped,
        baseline,
    )


def frontier_text(o: FrontierOutcome) -> str:
    """The frontier's trials as a table, smallest first, then each device's N* or why none."""
    column, label = METRICS[o.metric]
    rows = o.groups.iloc[list(o.frontier)]
    grouped = len(o.groups) < len(o.trials)
    of = (
        f"{len(o.groups)} configurations of {len(o.trials)} complete trials, seeds grouped"
        if grouped
        else f"{len(o.trials)} complete trials"
    )
    lines = [
        f"Pareto frontier of {label} ({len(rows)} of {of}):",
        f"{'trial':>6} {'params':>10} {column:>9} {'layers':>6} {'d_model':>7} "
        f"{'pos':>8} {'mlp':>7} {'lr':>9}",
    ]
    for _, r in rows.iterrows():
        lines.append(
            f"{int(r['number']):>6} {fmt_count(r['x']):>10} {r['y']:>9.4f} "
            f"{fmt_value(r['n_layer'], 'd'):>6} {fmt_value(r['d_model'], 'd'):>7} "
            f"{str(r['pos']):>8} {str(r['mlp']):>7} {fmt_value(r['lr'], '.3g'):>9}"
        )
    for _, r in rows[rows["n"].gt(1)].iterrows():
        lines.append(
            f"trial {int(r['number'])}: mean of {r['n']} seeds (trials "
            f"{', '.join(str(t) for t in r['trials'])}), sd {r['sd']:.3g}"
        )
    if rows["n"].gt(1).any():  # seeds repeated: is the best told apart from the runner-up?
        from analysis.views.seeds import best_configuration_text

        verdict = best_configuration_text(o.trials, metric=o.metric)
        lines += verdict.splitlines() if verdict else []
    for device, c in o.crossovers.items():
        beyond = " (extrapolated beyond the sizes measured)" if c.crossover.extrapolated else ""
        lines.append(
            f"N* ({c.crossover.ratio:g} tokens/param, {c.crossover.budget:g} s) "
            f"on {device}: {fmt_count(c.crossover.n_star)}{beyond}"
        )
    for device, why in o.skipped.items():
        lines.append(f"no N* for {device}: {why}")
    beats = trials_beats_line(o.baseline, o.trials)
    if beats is not None:
        lines.append(beats)
    note = vocab_note(o.trials) if o.metric == "ppl" else None
    return "\n".join(lines + ([note] if note else []))


def run_frontier(
    *,
    storage: str | None = None,
    study_name: str | None = None,
    plot_path: PathArg = None,
    force: bool = False,
    metric: str = "ppl",
    color_by: str = "depth",
    budget: float | None = None,
    ratio: float = 20.0,
    device: str | None = None,
    baseline: bool = True,
) -> str:
    """The metric against parameters with its Pareto frontier and N* marked; draws it to
    ``plot_path`` if given. With ``baseline`` the study's n-gram baselines (computed on demand,
    cached) are a line on the figure and a verdict in the text. Returns the text to print."""
    plot_out = check_output(plot_path, what="--plot", kind="figure", force=force)
    data = load_study(storage or DEFAULT_STORAGE, study_name)
    color_column(complete_trials(data), color_by)  # a name it cannot colour by: refused first
    outcome = frontier_for(
        data,
        metric=metric,
        color_by=color_by,
        budget=budget,
        ratio=ratio,
        device=device,
        baseline=study_baseline(data) if baseline else None,
    )
    if plot_out is not None:
        plots.save(outcome.figure(), plot_out)
    return frontier_text(outcome)
