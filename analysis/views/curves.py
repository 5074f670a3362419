"""Loss curves of a study's trials: what ``python -m analysis.curves`` draws and the report
shows. Each trial's stored curve (``harness_curve``: elapsed seconds, tokens seen, training
and held-out loss per point) joined with the trial's size."""

from __future__ import annotations

from typing import TYPE_CHECKING

from analysis.figures import plots
from analysis.load import StudyData
from analysis.selection import PathArg, complete_trials, on_device, open_source, vocab_note
from analysis.views.baseline import Baselines, study_baseline, trials_beats_line
from study.errors import UsageError
from study.fmt import fmt_count
from study.outputs import check_output

if TYPE_CHECKING:
    import pandas as pd


def curve_points(data: StudyData, *, device: str | None = None) -> pd.DataFrame:
    """Columns ``trial``, ``params``, ``elapsed_s``, ``tokens``, ``train_loss``, ``val_loss``:
    every curve point of the complete trials (of ``device``, if given) that record their size.

    Raises:
        UsageError: the study has no complete trial, none on ``device``, or no curve points.
    """
    import pandas as pd

    trials = on_device(complete_trials(data), device)
    trials = trials[trials["params"].gt(0)]
    merged = data.curves.merge(
        trials[["number", "params"]], left_on="trial_number", right_on="number", how="inner"
    )
    if merged.empty:
        raise UsageError(
            f"study {data.study_name!r} stored no loss curves for its complete "
            "trials (table harness_curve)"
        )
    out = pd.DataFrame({"trial": merged["trial_number"], "params": merged["params"]})
    for col in ("elapsed_s", "tokens", "train_loss", "val_loss"):
        out[col] = pd.to_numeric(merged[col], errors="coerce")
    return out.sort_values(["trial", "elapsed_s"]).reset_index(drop=True)


def curves_text(curves: pd.DataFrame, study_name: str) -> str:
    """One line: how many trials and points, and the sizes they span."""
    n = curves["trial"].nunique()
    return (
        f"study {study_name!r}: {n} trials, {len(curves)} curve points, sizes "
        f"{fmt_count(curves['params'].min())} to {fmt_count(curves['params'].max())}"
    )


def run_curves(
    *,
    storage: str | None = None,
    study_name: str | None = None,
    plot_path: PathArg = "curves.png",
    force: bool = False,
    device: str | None = None,
    baseline: bool = True,
) -> str:
    """Draw the study's loss curves to ``plot_path``, with the best n-gram of the study's corpus
    as a line (``baseline``: computed on demand, cached); returns what to print (where it went).

    Raises:
        UsageError: an unwritable path or a figure format other than png/svg/pdf, or a study
            without curves (nothing is written then).
    """
    out = check_output(plot_path, what="--plot", kind="figure", force=force)
    if out is None:
        raise UsageError("--plot needs a path")
    data = open_source(storage, study_name, None)
    assert data is not None  # no CSV form
    curves = curve_points(data, device=device)
    found = study_baseline(data) if baseline else None
    plots.save(plots.curves_figure(curves, baseline=baseline_line(found)), out)
    text = curves_text(curves, data.study_name)
    trials = on_device(complete_trials(data), device)
    beats, note = trials_beats_line(found, trials), vocab_note(trials)  # losses per token
    return "\n".join([text, *([beats] if beats else []), *([note] if note else []), f"wrote {out}"])


def baseline_line(found: Baselines | None) -> tuple[float, str] | None:
    """The best n-gram as a held-out loss line (nats/token) and its label."""
    if found is None:
        return None
    best = found.best()
    return best.nll, f"best n-gram (order {best.order}), {best.nll:.3f}"
