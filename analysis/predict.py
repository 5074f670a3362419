"""``python -m analysis.predict``: are the loss law's predictions true on sizes it never saw?

The study must be a ladder: every size one network, its trials differing at most in learning
rate, weight decay, dropout and seed (a study that tried one size with two positional schemes
or MLPs is refused in one line); of each size the best configuration stands for it (lowest
mean final held-out loss over its seeds), its seeds' points all fitted. Per device, the law
that fits the study's regime (Chinchilla's, or the data-constrained form
where trials repeat their data more than 4 times; ``analysis.fits.law_choice.choose_law``) is
fitted on every point (final and curve) of all sizes but the largest ``--k`` (or, with
``--around-best``, the measured best size and its better neighbour). It then predicts each
held-out size's final held-out loss and the best size for the budget, against what was measured.
Where no fit can be trusted it says why instead of giving a number. ``--json`` writes the same.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

from analysis.args import add_device_arg, add_study_args, analysis_main, make_parser, setup_logging
from analysis.fits.errors import FitError
from analysis.fits.holdout import HoldoutResult, holdout_check
from analysis.fits.loss_law import LossLawFit, fit_loss_law
from analysis.load import DEFAULT_STORAGE, StudyData, load_study
from analysis.selection import (
    PathArg,
    SizePick,
    budget_of,
    by_device,
    complete_trials,
    ladder_trials,
    loss_points,
    open_source,
)
from analysis.views.scaling_law import grid_named
from study.errors import UsageError, first_line
from study.fileio import write_json
from study.fmt import fmt_count
from study.outputs import add_force_arg, check_output

if TYPE_CHECKING:
    import pandas as pd


def ladder_points(data: StudyData, trials: pd.DataFrame) -> pd.DataFrame:
    """:func:`~analysis.selection.loss_points` of ``trials`` with each point's trial's unique
    training tokens (``unique``: the stored ``unique_tokens``, else tokens seen / epochs; NaN
    when neither was recorded), whether it is the final point, and the trial's tokens/s."""
    import pandas as pd

    points = loss_points(data, trials)
    seen = pd.to_numeric(trials["tokens_seen"], errors="coerce")
    unique = seen / pd.to_numeric(trials["epochs"], errors="coerce")
    if "unique_tokens" in trials:
        unique = pd.to_numeric(trials["unique_tokens"], errors="coerce").fillna(unique)
    by_trial = trials.assign(unique=unique).set_index("number")
    points["unique"] = points["trial"].map(by_trial["unique"])
    points["tokens_per_second"] = points["trial"].map(by_trial["tokens_per_second"])
    points["final"] = points["source"].eq("final")
    return points


def predict_for(
    data: StudyData,
    *,
    device: str | None = None,
    budget: float | None = None,
    k: int = 2,
    around_best: bool = False,
    grid: str = "chinchilla",
    base: LossLawFit | None = None,
) -> dict[str, HoldoutResult | str]:
    """Per device label, the held-out check, or the one-line reason it could not run there
    (a ``k`` as large as that device's ladder, say). ``base``: Chinchilla constants for the
    data-constrained law where a device's points are all repeated (:func:`fresh_constants`).

    Raises:
        UsageError: ``k`` below 1, an unknown grid or device, or no complete trial.
    """
    if k < 1:
        raise UsageError(f"--k must be at least 1, got {k}")
    start_grid = grid_named(grid)
    out: dict[str, HoldoutResult | str] = {}
    for label, (frame, _) in ladders(data, device).items():
        points = ladder_points(data, frame)
        unique = points["unique"]
        try:
            out[label] = holdout_check(
                points["params"],
                points["tokens"],
                points["loss"],
                final=points["final"],
                unique=None if unique.isna().any() else unique,
                tokens_per_second=points["tokens_per_second"].fillna(0.0).clip(lower=0.0),
                budget=budget_of(frame, budget),
                k=k,
                around_best=around_best,
                grid=start_grid,
                base=base,
            )
        except (UsageError, FitError) as exc:
            out[label] = first_line(exc)
    return out


def ladders(
    data: StudyData, device: str | None = None
) -> dict[str, tuple[pd.DataFrame, tuple[SizePick, ...]]]:
    """Per device label, the trials the held-out check fits (the best configuration of each
    size, its seeds together: :func:`analysis.selection.ladder_trials`) and which stood for
    each size.

    Raises:
        UsageError: an unknown device, no complete trial, or trials that are not a ladder.
    """
    return {
        label: ladder_trials(frame, study=data.study_name, device=label)
        for label, frame in by_device(complete_trials(data), device).items()
    }


def picks_text(picks: tuple[SizePick, ...]) -> list[str]:
    """A line per size tried with more than one configuration or seed: which trials stand
    for it."""
    lines = []
    for p in picks:
        if p.configurations == 1 and len(p.trials) == 1:
            continue
        which = ", ".join(str(t) for t in p.trials)
        seeds = (
            f"trials {which} (mean of {len(p.trials)} seeds)"
            if len(p.trials) > 1
            else (f"trial {which}")
        )
        of = (
            f", best of {p.configurations} configurations (also tried: trials "
            f"{', '.join(str(t) for t in p.others)})"
            if p.configurations > 1
            else ""
        )
        lines.append(f"  size {fmt_count(p.params)}: {seeds}, loss {p.loss:.4f}{of}")
    return lines


def fresh_constants(data: StudyData, *, grid: str = "chinchilla") -> LossLawFit:
    """Chinchilla's law fitted on the points of ``data`` (every device) that saw their data
    at most once (D <= U).

    Raises:
        UsageError: U not recorded, or too few fresh points.
    """
    points = ladder_points(data, complete_trials(data))
    if points["unique"].isna().any():
        raise UsageError(f"study {data.study_name!r} does not record its trials' unique tokens")
    fresh = points[points["tokens"] <= points["unique"]]
    if len(fresh) < 5:
        raise UsageError(
            f"study {data.study_name!r} has {len(fresh)} points that saw their "
            f"data at most once; the base constants need at least 5"
        )
    return fit_loss_law(fresh["params"], fresh["tokens"], fresh["loss"], grid=grid_named(grid))


def _constant(name: str, value: float) -> str:
    """``name = value``: R*_D and R*_N count epochs, so read as counts (10k at their bound, not
    1e+04); E, A, B and the exponents are coefficients and keep four significant digits."""
    return f"{name} = {fmt_count(value) if name.endswith('_star') else format(value, '.4g')}"


def predict_text(
    results: dict[str, HoldoutResult | str],
    picks: dict[str, tuple[SizePick, ...]] | None = None,
) -> str:
    """What the command prints: per device the law, each held-out size and the best size;
    with ``picks``, first which trials stood for a size tried more than once."""
    lines: list[str] = []
    for label, res in results.items():
        lines.append(f"device {label}:")
        lines.extend(picks_text((picks or {}).get(label, ())))
        if isinstance(res, str):
            lines.append(f"  no check: {res}")
            continue
        sizes = ", ".join(fmt_count(s) for s in res.fit_sizes)
        lines.append(
            f"  fit on {len(res.fit_sizes)} sizes ({sizes}), {res.n_fit_points} "
            f"points (final and curve); held out: {res.mode}"
        )
        if res.law is not None:
            lines.append(f"  law: {res.law.form} - {res.law.reason}")
            constants = ", ".join(_constant(k, v) for k, v in res.law.constants().items())
            lines.append(f"  constants: {constants}")
            chinchilla = res.law.chinchilla or getattr(res.law.data_constrained, "base", None)
            if chinchilla is not None and chinchilla.screened_on:  # say how its starts ran
                lines.append(f"  starts: {chinchilla.search()}")
            lines.extend(f"  warning: {w}" for w in res.law.warnings)
        for why in res.untrusted:
            lines.append(f"  NOT TRUSTED: {why}")
        for h in res.held_out:
            shown = (
                "no prediction"
                if h.predicted is None or h.relative_error is None
                else f"predicted {h.predicted:.4f} ({h.relative_error:+.1%})"
            )
            lines.append(
                f"  N = {fmt_count(h.params)} (D = {fmt_count(h.tokens)}): measured "
                f"{h.measured:.4f}, {shown}"
            )
        b = res.best
        pick = "-" if b.ladder_pick is None else fmt_count(b.ladder_pick)
        opt = "-" if b.optimum is None else fmt_count(b.optimum)
        lines.append(
            f"  best size: measured {fmt_count(b.measured)}, law's ladder pick {pick}, "
            f"law's optimum {opt}"
        )
        lines.extend(f"    ({why})" for why in b.why_not)
    return "\n".join(lines)


def run_predict(
    *,
    storage: str | None = None,
    study_name: str | None = None,
    device: str | None = None,
    budget: float | None = None,
    k: int = 2,
    around_best: bool = False,
    grid: str = "chinchilla",
    base_study: str | None = None,
    json_path: PathArg = None,
    force: bool = False,
) -> str:
    """Check the output path, load, fit, then write ``json_path`` (if given); returns the text.

    Raises:
        UsageError: an unwritable output path or a study that cannot be read.
    """
    out = check_output(json_path, what="--json", kind="json", force=force)
    data = open_source(storage, study_name, None)
    assert data is not None  # no CSV form: a held-out check needs the ladder's trials
    base = None
    if base_study is not None:
        base = fresh_constants(load_study(storage or DEFAULT_STORAGE, base_study), grid=grid)
    picks = {label: p for label, (_, p) in ladders(data, device).items()}  # refused first
    results = predict_for(
        data, device=device, budget=budget, k=k, around_best=around_best, grid=grid, base=base
    )
    if out is not None:
        write_json(
            out,
            {
                "study": data.study_name,
                "base_study": base_study,
                "devices": {
                    label: {
                        **({"error": res} if isinstance(res, str) else res.as_dict()),
                        "sizes": [dataclasses.asdict(p) for p in picks[label]],
                    }
                    for label, res in results.items()
                },
            },
        )
    text = predict_text(results, picks)
    if base is not None:
        text = (
            f"Chinchilla constants for the data-constrained law: from study {base_study!r} "
            f"({base.n_points} fresh points)\n{text}"
        )
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "python -m analysis.predict",
        __doc__,
        examples=[
            "python -m analysis.predict --study-name ladder --device cpu",
            "python -m analysis.predict --k 1 --json predict.json",
            "python -m analysis.predict --around-best --budget 300 --grid coarse",
            "python -m analysis.predict --study-name repeated --base-study ladder",
        ],
    )
    add_study_args(parser)
    add_device_arg(parser)
    add_force_arg(parser)
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="training budget in seconds for the best-size prediction "
        "(default: the budget the device's trials share)",
    )
    parser.add_argument(
        "--k",
        type=int,
        default=2,
        metavar="K",
        help="hold out the largest K model sizes, fit on the rest (default 2)",
    )
    parser.add_argument(
        "--around-best",
        action="store_true",
        help="hold out the measured best size and its better neighbour "
        "instead of the largest K (default: off)",
    )
    parser.add_argument(
        "--grid",
        choices=("chinchilla", "coarse"),
        default="chinchilla",
        help="L-BFGS starts: Chinchilla's full grid or a 243-start subset (default chinchilla)",
    )
    parser.add_argument(
        "--base-study",
        default=None,
        metavar="NAME",
        help="fit Chinchilla's constants on this study's fresh points (same "
        "storage), for ladders whose every point repeats its data "
        "(default: fitted on the ladder's own fresh points)",
    )
    parser.add_argument(
        "--json",
        default=None,
        metavar="PATH",
        help="write per device the fit sizes, law, held-out losses (nats per "
        "token; measured, predicted, relative error) and best size as JSON",
    )
    return parser


@analysis_main
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    print(
        run_predict(
            storage=args.storage,
            study_name=args.study_name,
            device=args.device,
            budget=args.budget,
            k=args.k,
            around_best=args.around_best,
            grid=args.grid,
            base_study=args.base_study,
            json_path=args.json,
            force=args.force,
        )
    )


if __name__ == "__main__":
    main()
