"""Report sections beyond the fits' own: the frontier, the loss curves, the held-out check of the loss law's
predictions (``analysis.predict``'s functions), the repeated-data warning and the samples as
stories. Each section returns HTML fragments or raises UsageError to show the reason instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analysis.figures import plots
from analysis.figures.ladder_plot import ladder_figure
from analysis.fits.errors import FitError
from analysis.fits.law_choice import FRESH_EPOCHS
from analysis.fits.loss_law import StartGrid
from analysis.page.parts import e, figure, note, plain_table, pre
from analysis.predict import ladder_points, ladders, predict_for, predict_text
from analysis.views.curves import curve_points, curves_text
from analysis.views.frontier import frontier_for, frontier_text
from analysis.views.scaling_law import GRIDS
from study.errors import UsageError
from study.fmt import fmt_count

if TYPE_CHECKING:
    import pandas as pd

    from analysis.fits.holdout import HoldoutResult
    from analysis.load import StudyData

END_OF_STORY = "<|endoftext|>"


def story(text: str) -> str:
    """A sample cut at its first end-of-story marker: what follows it is another story."""
    return text.split(END_OF_STORY, 1)[0].rstrip()


def epoch_warnings(trials: pd.DataFrame) -> list[str]:
    """One line when trials saw their training data more than 4 times, else none."""
    epochs = trials["epochs"].dropna()
    over = epochs[epochs > FRESH_EPOCHS]
    if over.empty:
        return []
    return [
        f"Warning: {len(over)} of {len(trials)} trials saw their training data more than "
        f"{FRESH_EPOCHS:g} times (up to {fmt_count(over.max())} epochs). Beyond about "
        f"{FRESH_EPOCHS:g} epochs repeated tokens are worth less than fresh ones "
        "(Muennighoff et al. 2023): use a larger corpus (--max-stories) or read the "
        "data-constrained law's prediction."
    ]


def frontier_section(
    data: StudyData, *, budget: float | None, ratio: float, color_by: str = "pos"
) -> list[str]:
    """The frontier in perplexity and bits per byte (coloured by depth) beside the n-gram
    baselines, then the same points coloured by ``color_by``."""
    from analysis.views.baseline import study_baseline

    found = study_baseline(data)
    out = [
        "<p>Every configuration (its seeds grouped); the line joins those no smaller one beats. Bits per "
        "byte do not depend on the tokenizer, per-token perplexity does. The dashed line is "
        "the best interpolated Witten-Bell n-gram (orders 1-5) counted from the same training "
        "tokens and scored on the same held-out windows: a model above it is not worth its "
        "training.</p>"
        if found is not None
        else "<p>Every configuration (its seeds grouped); the line joins those no smaller one beats. Bits "
        "per byte do not depend on the tokenizer, per-token perplexity does. No n-gram "
        "baseline: the study's corpus cannot be read here.</p>"
    ]
    if found is not None:
        from analysis.views.baseline import format_baselines

        out.append(pre(format_baselines(found)))
    drawn = set()
    for metric in ("ppl", "bpb"):
        try:
            o = frontier_for(
                data,
                metric=metric,
                color_by="depth",
                budget=budget,
                ratio=ratio,
                device=None,
                baseline=found,
            )
        except (UsageError, FitError) as exc:
            out.append(note(str(exc)))
            continue
        drawn.add(metric)
        out += [figure(o.figure()), pre(frontier_text(o))]
    if "ppl" in drawn:
        again = frontier_for(
            data, metric="ppl", color_by=color_by, budget=budget, ratio=ratio, device=None
        )
        what = "positional scheme" if color_by == "pos" else e(color_by)
        out += [f"<p>The same points coloured by {what}:</p>", figure(again.figure())]
    return out


def curves_section(data: StudyData) -> list[str]:
    from analysis.views.baseline import study_baseline
    from analysis.views.curves import baseline_line

    curves = curve_points(data)
    return [
        "<p>Every complete trial's stored curve (held-out loss is measured on the same "
        "windows at every point); colour is the trial's size; the dashed line, where shown, is "
        "the best n-gram's held-out loss on the same windows.</p>",
        pre(curves_text(curves, data.study_name)),
        figure(plots.curves_figure(curves, baseline=baseline_line(study_baseline(data)))),
    ]


def prediction_section(data: StudyData, *, budget: float | None, grid: StartGrid) -> list[str]:
    grid_name = next((name for name, g in GRIDS.items() if g == grid), "chinchilla")
    chosen = ladders(data)  # a study that is not a ladder: the reason shown instead
    results = predict_for(data, budget=budget, grid=grid_name)
    out = [
        "<p>Per device the loss law is fitted on all but the two largest sizes (each size's "
        "best configuration, its seeds together) and predicts their final loss; a prediction is trusted only as far as it comes true here "
        "(<code>python -m analysis.predict</code>).</p>"
    ]
    for label, res in results.items():
        out.append(f"<h3>{e(label)}</h3>")
        frame, picks = chosen[label]
        if isinstance(res, str):
            out.append(note(f"no held-out check: {res}"))
            continue
        out.append(pre(predict_text({label: res}, {label: picks})))
        out += [note(f"no fit trusted: {why}") for why in res.untrusted]
        points = ladder_points(data, frame)
        out.append(figure(ladder_figure(points[points["final"]], res, label=label)))
        out.append(_held_out_table(res))
    return out


def _held_out_table(res: HoldoutResult) -> str:
    rows = [
        (
            fmt_count(h.params),
            fmt_count(h.tokens),
            f"{h.measured:.4f}",
            "-" if h.predicted is None else f"{h.predicted:.4f}",
            "-" if h.relative_error is None else f"{h.relative_error:+.1%}",
        )
        for h in res.held_out
    ]
    return plain_table(
        ["held-out N", "tokens seen", "measured loss", "predicted loss", "error"], rows
    )
