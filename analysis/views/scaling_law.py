"""The loss law L(N, D) fitted on a study, and the loss-optimal size it predicts per device: what
``python -m analysis.scaling_law`` does, and the loss-law section of the report.

The fit is Chinchilla Approach 3 (``analysis.fits.loss_law.fit_loss_law``); the prediction minimises
L(N, T(N) * budget) with each device's throughput fit (``analysis.views.crossover``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from analysis.figures import law_plots, plots
from analysis.fits.errors import FitError
from analysis.fits.groups import configuration_keys, configuration_points
from analysis.fits.law_bootstrap import LawBootstrap, bootstrap_loss_law
from analysis.fits.loss_law import CHINCHILLA_GRID, LossLawFit, StartGrid, fit_loss_law
from analysis.fits.loss_optimum import LossOptimal, loss_optimal_n
from analysis.fits.trust import point_reasons, untrusted_reasons
from analysis.load import StudyData, read_csv
from analysis.selection import PathArg, complete_trials, loss_points, open_source, vocab_note
from analysis.views.crossover import CrossoverOutcome, device_crossovers
from study.errors import UsageError
from study.fileio import write_json
from study.fmt import fmt_count
from study.outputs import check_output

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd
    from matplotlib.figure import Figure

# A 3^5 subset of the Chinchilla grid, for quick looks and tests; results can differ from the
# full grid where the objective has several basins.
COARSE_GRID = StartGrid(
    alpha=(0.0, 0.5, 1.0),
    beta=(0.0, 0.5, 1.0),
    e=(-1.0, 0.0, 1.0),
    a=(0.0, 10.0, 20.0),
    b=(0.0, 10.0, 20.0),
)
GRIDS = {"chinchilla": CHINCHILLA_GRID, "coarse": COARSE_GRID}
BOOTSTRAP_SEED = 0  # the resamples' generator: the same study gives the same intervals
BOOTSTRAP_DEFAULT = 200


def grid_named(name: str) -> StartGrid:
    """The L-BFGS start grid called ``name`` (``--grid``); UsageError for an unknown one."""
    if name not in GRIDS:
        raise UsageError(f"--grid must be one of {', '.join(GRIDS)}, got {name!r}")
    return GRIDS[name]


@dataclass(frozen=True)
class Prediction:
    """One device's loss-optimal size beside its ratio-heuristic crossover."""

    device: str
    crossover: CrossoverOutcome
    best: LossOptimal


@dataclass(frozen=True)
class ScalingLawOutcome:
    """The law, the points it was fitted on, a prediction per device and why any is missing."""

    law: LossLawFit
    points: pd.DataFrame
    predictions: dict[str, Prediction]
    skipped: dict[str, str]
    untrusted: tuple[str, ...] = ()  # why the law is not to be read as a prediction
    # the end-of-training points by configuration, seeds grouped (configuration_points)
    groups: pd.DataFrame | None = None
    bootstrap: LawBootstrap | None = None  # intervals over resampled configurations
    no_bootstrap: str | None = None  # why a bootstrap asked for gave none

    def as_dict(self) -> dict[str, object]:
        """What ``--json`` writes: the law's seven numbers, and where a bootstrap was asked for,
        its intervals (or why there are none) under ``bootstrap``."""
        out: dict[str, object] = dict(self.law.as_dict())
        if self.bootstrap is not None:
            out["bootstrap"] = self.bootstrap.as_dict()
        elif self.no_bootstrap is not None:
            out["bootstrap"] = {"error": self.no_bootstrap}
        return out

    def figure(self) -> Figure:
        others = self.points
        if self.groups is not None and "source" in self.points:
            others = self.points[self.points["source"].ne("final")]
        return law_plots.loss_law_figure(
            self.law,
            params=others["params"],
            tokens=others["tokens"],
            loss=others["loss"],
            groups=self.groups,
            predictions={
                d: (p.crossover.fit, p.best, p.crossover.crossover)
                for d, p in self.predictions.items()
            },
            untrusted=self.untrusted,
            n_opt_intervals={} if self.bootstrap is None else self.bootstrap.n_opt,
        )


def scaling_law_for(
    data: StudyData | None,
    points: pd.DataFrame,
    *,
    budget: float | None,
    ratio: float,
    device: str | None,
    grid: StartGrid,
    bootstrap: int = 0,
) -> ScalingLawOutcome:
    """Fit the law on ``points`` (params, tokens, loss); with a study, predict per device.
    ``bootstrap``: resamples of the configurations for the intervals of the constants and the
    loss-optimal N (0: none; seed :data:`BOOTSTRAP_SEED`)."""
    law = fit_loss_law(points["params"], points["tokens"], points["loss"], grid=grid)
    predictions: dict[str, Prediction] = {}
    skipped: dict[str, str] = {}
    if data is not None:
        crossovers, skipped = device_crossovers(
            complete_trials(data), budget=budget, ratio=ratio, device=device
        )
        for label, cross in crossovers.items():
            best = loss_optimal_n(law, cross.fit, budget=cross.crossover.budget)
            predictions[label] = Prediction(label, cross, best)
    untrusted = untrusted_reasons(
        law,
        params=points["params"],
        epochs=None if data is None else point_epochs(points, complete_trials(data)),
        optima=[(d, p.best) for d, p in predictions.items()],
    )
    trials = None if data is None else complete_trials(data)
    groups = final_groups(points, trials)
    boot, why = None, None
    if bootstrap > 0:
        try:
            boot = bootstrap_loss_law(
                points["params"],
                points["tokens"],
                points["loss"],
                groups=point_configurations(points, trials),
                law=law,
                n_boot=bootstrap,
                seed=BOOTSTRAP_SEED,
                throughputs={d: (p.crossover.fit, p.best.budget) for d, p in predictions.items()},
            )
        except FitError as exc:
            why = str(exc)
    return ScalingLawOutcome(law, points, predictions, skipped, untrusted, groups, boot, why)


def point_configurations(points: pd.DataFrame, trials: pd.DataFrame | None) -> list[str]:
    """Each point's configuration (its trial's stored config less the seed), the unit the
    bootstrap resamples; a CSV's points (no trials) are each their own."""
    if trials is None or "trial" not in points:
        return [f"point {i}" for i in range(len(points))]
    keys = dict(zip(trials["number"], configuration_keys(trials), strict=True))
    return [keys.get(t, f"trial {t}") for t in points["trial"]]


def final_groups(points: pd.DataFrame, trials: pd.DataFrame | None) -> pd.DataFrame:
    """The end-of-training points by configuration (their trials' stored config less the seed;
    :func:`analysis.fits.groups.configuration_points`, x = tokens, y = loss, with params); a
    CSV's points (no trials) are each their own."""
    finals = points[points["source"].eq("final")] if "source" in points else points
    if trials is None or "trial" not in finals:
        frame = finals.assign(number=range(len(finals)))
    else:
        config = [c for c in trials.columns if c.startswith("config.")]
        frame = finals.rename(columns={"trial": "number"}).merge(
            trials[["number", *config]], on="number", how="left"
        )
    return configuration_points(frame, x="tokens", y="loss", keep=("params",))


def point_epochs(points: pd.DataFrame, trials: pd.DataFrame) -> pd.Series:
    """Each point's epochs: its tokens over its trial's unique training tokens (the stored
    ``unique_tokens``, else tokens seen / epochs; NaN when neither was recorded)."""
    import pandas as pd

    seen = pd.to_numeric(trials["tokens_seen"], errors="coerce")
    unique = seen / pd.to_numeric(trials["epochs"], errors="coerce")
    if "unique_tokens" in trials:
        unique = pd.to_numeric(trials["unique_tokens"], errors="coerce").fillna(unique)
    per_trial = pd.Series(unique.to_numpy(), index=trials["number"].to_numpy())
    return points["tokens"] / points["trial"].map(per_trial)


def scaling_law_text(o: ScalingLawOutcome) -> str:
    """The law's parameters and exponents, each device's prediction, and every warning."""
    law = o.law
    sources = o.points["source"].value_counts().to_dict() if "source" in o.points else {}
    counted = ", ".join(
        f"{v} {'end-of-training' if k == 'final' else 'mid-run curve'}"
        for k, v in sorted(sources.items(), key=lambda kv: kv[0] != "final")
    )
    lines = [
        f"loss law L(N, D) = E + A/N^alpha + B/D^beta on {law.n_points} points"
        + (f" ({counted})" if counted else "")
        + f", Huber delta {law.delta:g}, {law.search()}",
        f"E = {law.E:.4f}",
        f"A = {law.A:.4g}",
        f"B = {law.B:.4g}",
        f"alpha = {law.alpha:.4f}",
        f"beta = {law.beta:.4f}",
        f"a = {law.a:.4f}  (N_opt ~ C^a)",
        f"b = {law.b:.4f}  (D_opt ~ C^b)",
    ]
    lines += _bootstrap_lines(o)
    lines += [f"NOT TRUSTED: {why}" for why in o.untrusted]
    lines += [f"warning: {w}" for w in law.warnings]
    for label, p in o.predictions.items():
        c, b = p.crossover.crossover, p.best
        lines.append(
            f"{label}, budget {b.budget:g} s: loss-optimal N = {fmt_count(b.n_opt)} "
            f"(predicted loss {b.loss:.4f}, {fmt_count(b.tokens)} tokens, "
            f"{fmt_count(b.tokens_per_param)} tokens/param) vs {c.ratio:g}x heuristic N* = "
            f"{fmt_count(c.n_star)}"
        )
        lines += [f"warning ({label}): {w}" for w in b.warnings]
    for label, why in o.skipped.items():
        lines.append(f"no prediction for {label}: {why}")
    return "\n".join(lines)


def _bootstrap_lines(o: ScalingLawOutcome) -> list[str]:
    """The bootstrap's intervals, one constant a line, or why there are none."""
    if o.no_bootstrap is not None:
        return [f"no bootstrap interval: {o.no_bootstrap}"]
    b = o.bootstrap
    if b is None:
        return []
    pct = f"{b.level:.0%}"
    lines = [
        f"bootstrap: {pct} percentile intervals over {b.n_fitted} of {b.n_boot} resamples of "
        f"{b.n_groups} configurations (seeds and curve points of one drawn together; seed "
        f"{b.seed})"
    ]
    for name, (low, high) in b.constants.items():
        lines.append(f"  {name} in [{low:.4g}, {high:.4g}]")
    for device, (low, high) in b.n_opt.items():
        bound = b.n_opt_at_bound.get(device, 0)
        on = f"; {bound} on the search bound" if bound else ""
        lines.append(f"  loss-optimal N on {device} in [{fmt_count(low)}, {fmt_count(high)}]{on}")
    return lines


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
    force: bool = False,
    grid: str = "chinchilla",
    max_epochs: float | None = None,
    curve_points: bool = False,
    bootstrap: int = 0,
) -> str:
    """Fit the loss law on a study's end-of-training points (with ``curve_points`` its
    mid-run curve points too) or a CSV of ``params,tokens,loss``; on a study, predict the
    loss-optimal size per device and check whether the law can be trusted
    (:func:`analysis.fits.trust.untrusted_reasons`: printed and drawn as NOT TRUSTED, not an
    error). ``bootstrap`` resamples of the configurations give intervals of the constants and
    of the loss-optimal N (0: none). Writes the law's seven numbers (and the intervals) to
    ``json_path`` and the figure to ``plot_path`` if given; returns the text to print.

    Raises:
        UsageError: bad options or paths, or no points to fit (nothing is written then).
    """
    json_out = check_output(json_path, what="--json", kind="json", force=force)
    plot_out = check_output(plot_path, what="--plot", kind="figure", force=force)
    start_grid = grid_named(grid)
    if bootstrap < 0:
        raise UsageError(f"--bootstrap must be 0 (off) or a number of resamples, got {bootstrap}")
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
        if not curve_points:  # mid-run points of an unannealed schedule are not end losses
            points = points[points["source"].eq("final")].reset_index(drop=True)
        if points.empty:
            raise UsageError("no loss points left to fit (all beyond --max-epochs?)")
    try:
        outcome = scaling_law_for(
            data,
            points,
            budget=budget,
            ratio=ratio,
            device=device,
            grid=start_grid,
            bootstrap=bootstrap,
        )
    except (UsageError, FitError) as exc:
        if data is None:  # a CSV's points are the user's input: too few is bad input
            raise
        return _unfitted(data, points, exc, plot_out)
    if json_out is not None:
        write_json(json_out, outcome.as_dict())
    if plot_out is not None:
        plots.save(outcome.figure(), plot_out)
    note = None if data is None else vocab_note(complete_trials(data))  # a law of loss per token
    return scaling_law_text(outcome) + (f"\n{note}" if note else "")


def _unfitted(data: StudyData, points: pd.DataFrame, exc: Exception, plot_out: Path | None) -> str:
    """A study too small to fit is an answer, not an error: say so, as for a bad fit."""
    why = (
        f"no law could be fitted: {exc}",
        *point_reasons(params=points["params"], epochs=point_epochs(points, complete_trials(data))),
    )
    if plot_out is not None:
        plots.save(law_plots.unfitted_figure(points, untrusted=why), plot_out)
    return "\n".join(
        [f"loss law L(N, D) on {len(points)} points"] + [f"NOT TRUSTED: {w}" for w in why]
    )
