"""One self-contained HTML page for a study: what ``python -m analysis.report`` does.

Summary, frontier, throughput, crossover, loss law, samples, epochs, failures and the commands
that made it, with figures embedded as base64 PNG. A section whose analysis cannot run on this
study (too few sizes, say) shows the reason instead; the page is written only when every section
is built.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from analysis.figures import plots
from analysis.fits.errors import FitError
from analysis.fits.loss_law import StartGrid
from analysis.load import DEFAULT_STORAGE, StudyData, load_study
from analysis.page.commands import report_commands
from analysis.page.parts import CSS, e, figure, kv_table, note, plain_table, pre, section, table
from analysis.page.sections import (
    curves_section,
    epoch_warnings,
    frontier_section,
    prediction_section,
    story,
)
from analysis.selection import check_budget, complete_trials, loss_points, vocab_note
from analysis.views.compare import compare_for, compare_text
from analysis.views.crossover import crossover_text, device_crossovers
from analysis.views.frontier import color_column
from analysis.views.scaling_law import grid_named, scaling_law_for, scaling_law_text
from study.errors import UsageError
from study.fileio import atomic_write_text
from study.fmt import fmt_count
from study.objective import BPB, LABELS
from study.outputs import REPORT_MARK, check_output

if TYPE_CHECKING:
    import pandas as pd


def run_report(
    *,
    storage: str | None = None,
    study_name: str | None = None,
    out: str | os.PathLike[str] = "report.html",
    budget: float | None = None,
    ratio: float = 20.0,
    top: int = 5,
    grid: str = "chinchilla",
    color_by: str | None = None,
    force: bool = False,
) -> str:
    """Write the study's HTML report to ``out``; returns one line saying where. ``color_by``:
    what the frontier's second figure is coloured by (as ``analysis.frontier --color-by``;
    default the positional scheme).

    Raises:
        UsageError: bad options or output path, or a study that cannot be read (nothing is
            written then).
    """
    out_path = check_output(out, what="--out", kind="html", force=force)
    assert out_path is not None
    start_grid = grid_named(grid)
    if top < 0:
        raise UsageError(f"--top must be >= 0, got {top}")
    if budget is not None:
        check_budget(budget)
    data = load_study(storage or DEFAULT_STORAGE, study_name)
    if color_by is not None:  # an unknown name is refused before anything is built
        color_column(complete_trials(data), color_by)
    labels = data.complete()["device_name"].dropna().astype(str)
    commands = report_commands(
        storage=data.storage,
        study_name=data.study_name,
        budget=budget,
        ratio=ratio,
        out=str(out),
        devices=sorted(set(labels)) or ["DEVICE"],
        color_by=color_by,
    )
    page = build_report(
        data,
        budget=budget,
        ratio=ratio,
        grid=start_grid,
        top=top,
        commands=commands,
        color_by=color_by or "pos",
    )
    atomic_write_text(out_path, page)
    return f"wrote {out_path} ({len(page) / 1e6:.2f} MB) for study {data.study_name!r}"


def build_report(
    data: StudyData,
    *,
    budget: float | None,
    ratio: float,
    grid: StartGrid,
    top: int,
    commands: Sequence[str],
    color_by: str = "pos",
) -> str:
    """The page as a string: a heading, then one section per analysis, in reading order."""
    trials = complete_trials(data)
    sections: list[tuple[str, Callable[[], list[str]]]] = [
        ("Summary", lambda: _summary(data, trials)),
        (
            "Frontier: held-out quality against size",
            lambda: frontier_section(data, budget=budget, ratio=ratio, color_by=color_by),
        ),
        (
            "Throughput and the Chinchilla crossover",
            lambda: _throughput(trials, budget=budget, ratio=ratio),
        ),
        ("Loss curves", lambda: curves_section(data)),
        (
            "Loss law L(N, D) and its prediction",
            lambda: _loss_law(data, trials, budget=budget, ratio=ratio, grid=grid),
        ),
        (
            "Predictions checked on held-out sizes",
            lambda: prediction_section(data, budget=budget, grid=grid),
        ),
        ("Positional scheme and MLP", lambda: _choices(data)),
        ("Samples from the best trials", lambda: _samples(data, trials, top=top)),
        ("Epochs per trial", lambda: _epochs(trials)),
        ("Trials that did not complete", lambda: _failures(data)),
        ("Commands that made this page", lambda: [pre("\n".join(commands))]),
    ]
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8">{REPORT_MARK}',
        f"<title>Study {e(data.study_name)}</title><style>{CSS}</style></head><body>",
        f"<h1>Five-minute study: {e(data.study_name)}</h1>",
        f"<p>Storage <code>{e(data.storage)}</code>, generated "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}.</p>",
    ]
    for title, build in sections:
        parts += section(title, build)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------
# Sections: each returns its HTML fragments, or raises UsageError to show the reason instead.


def _summary(data: StudyData, trials: pd.DataFrame) -> list[str]:
    states = data.trials["state"].value_counts().to_dict()
    devices = trials["device_label"].value_counts().to_dict()
    budgets = sorted(set(trials["budget"].dropna().astype(float)))
    rows = [
        ("trials", ", ".join(f"{v} {k.lower()}" for k, v in sorted(states.items()))),
        ("devices", ", ".join(f"{k} ({v})" for k, v in devices.items())),
        ("budgets (s)", ", ".join(f"{b:g}" for b in budgets) or "-"),
        ("direction", data.direction.lower()),
        ("objective", LABELS[data.objective]),  # what the trials' values measure, best first
        (
            "sizes (params)",
            f"{fmt_count(trials['params'].min())} to {fmt_count(trials['params'].max())}",
        ),
    ]
    from analysis.views.baseline import study_baseline, trials_beats_line

    beats = trials_beats_line(study_baseline(data), trials)
    rows.append(("n-gram baseline", beats or "none (the study's corpus cannot be read here)"))
    out = [kv_table(rows)]
    out += [note(w) for w in [*epoch_warnings(trials), vocab_note(trials)] if w]
    out.append("<h3>Best trials</h3>")
    best = trials.sort_values("value").head(10)
    out.append(
        table(
            best,
            [
                ("trial", "number", "d"),
                ("device", "device_label", "s"),
                ("params", "params", "count"),
                ("ppl", "val_ppl", ".3f"),
                ("bpb", "val_bpb", ".4f"),
                ("layers", "n_layer", "d"),
                ("d_model", "d_model", "d"),
                ("heads", "n_head", "d"),
                ("pos", "pos", "s"),
                ("mlp", "mlp", "s"),
                ("lr", "lr", ".3g"),
                ("tokens", "tokens_seen", "count"),
                ("tok/s", "tokens_per_second", "count"),
                ("epochs", "epochs", "count"),
            ],
        )
    )
    return out


def _throughput(trials: pd.DataFrame, *, budget: float | None, ratio: float) -> list[str]:
    done, skipped = device_crossovers(trials, budget=budget, ratio=ratio)
    out = [
        "<p>Steady-state tokens/s fitted as T(N) = c N<sup>-k</sup> per device; N* solves "
        f"T(N) &times; budget = {ratio:g} N, the size that sees {ratio:g} tokens per "
        "parameter in the budget. Intervals resample the trials (bootstrap).</p>"
    ]
    out += [note(f"no fit for {d}: {why}") for d, why in skipped.items()]
    if not done:
        return out
    fits = {d: o.fit for d, o in done.items()}
    points = {d: (o.params, o.tokens_per_second) for d, o in done.items()}
    out.append(figure(plots.throughput_figure(fits, points)))
    for device, o in done.items():
        out += [
            f"<h3>{e(device)}</h3>",
            pre(crossover_text(o)),
            figure(o.figure()),
        ]
    return out


def _loss_law(
    data: StudyData,
    trials: pd.DataFrame,
    *,
    budget: float | None,
    ratio: float,
    grid: StartGrid,
) -> list[str]:
    points = loss_points(data, trials)
    # End-of-training points only: mid-run points of an unannealed schedule are not end losses.
    points = points[points["source"].eq("final")].reset_index(drop=True)
    o = scaling_law_for(data, points, budget=budget, ratio=ratio, device=None, grid=grid)
    out = [
        "<p>Chinchilla Approach 3 on every complete trial's end-of-training point: Huber "
        "loss (&delta; = 10<sup>-3</sup>) on log loss, L-BFGS from a grid of starts. The "
        "predicted best size minimises L(N, T(N) &times; budget). Lines marked NOT TRUSTED "
        "say why the law is not to be read as a prediction.</p>",
        pre(scaling_law_text(o)),
        figure(o.figure()),
    ]
    rows = []
    for device, p in o.predictions.items():
        mine = trials[trials["device_label"] == device]
        best = mine.loc[mine["value"].idxmin()] if mine["value"].notna().any() else None
        rows.append(
            (
                device,
                f"{p.best.budget:g}",
                fmt_count(p.best.n_opt),
                fmt_count(p.crossover.crossover.n_star),
                f"{fmt_count(best['params'])} (trial {int(best['number'])})"
                if best is not None
                else "-",
                f"{p.best.n_opt / best['params']:.3g}" if best is not None else "-",
            )
        )
    if rows:
        out.append(
            plain_table(
                [
                    "device",
                    "budget (s)",
                    "loss-optimal N",
                    f"{ratio:g}x N*",
                    "best measured N",
                    "predicted / measured",
                ],
                rows,
            )
        )
    return out


def _samples(data: StudyData, trials: pd.DataFrame, *, top: int) -> list[str]:
    if data.samples.empty:
        return [note("the study stored no samples (table harness_sample)")]
    samples = data.samples.set_index("trial_number")
    rows: list[tuple[int, str, str, str, str]] = []
    for _, t in trials.sort_values("value").iterrows():
        if int(t["number"]) in samples.index and len(rows) < top:
            s = samples.loc[int(t["number"])]
            rows.append(
                (
                    int(t["number"]),
                    fmt_count(t["params"]),
                    f"{t['value']:.4f}" if data.objective == BPB else f"{t['value']:.3f}",
                    str(s["prompt"]),
                    story(str(s["text"])),
                )
            )
    head = (  # the trials ranked by the study's objective, and its value shown
        f"<tr><th>trial</th><th>params</th><th>{e(data.objective)}</th><th>prompt</th>"
        "<th>sample</th></tr>"
    )
    body = "".join(
        f"<tr><td>{n}</td><td>{p}</td><td>{v}</td><td class=text>{e(pr)}</td>"
        f"<td class=text>{e(tx)}</td></tr>"
        for n, p, v, pr, tx in rows
    )
    return [f"<table>{head}{body}</table>"]


def _choices(data: StudyData) -> list[str]:
    out = [
        "<p>Each choice's best and median trial, then the best of each at equal size (the same "
        "layers and width), since a sweep draws the choice together with size and learning "
        "rate.</p>"
    ]
    compared = 0
    for by in ("pos", "mlp", "cell"):
        if by == "cell" and compared < 2:
            break  # one of them never varied: the cells repeat the other
        try:
            comparisons = compare_for(data, by=by)
        except (UsageError, FitError) as exc:
            out.append(note(str(exc)))
            continue
        compared += 1
        out += [pre(compare_text(c)) for c in comparisons]
    return out


def _epochs(trials: pd.DataFrame) -> list[str]:
    out = []
    epochs = trials["epochs"].dropna()
    if not epochs.empty and epochs.max() > 1:
        out.append(
            note(
                f"{int((epochs > 1).sum())} of {len(trials)} trials saw the training data more "
                f"than once (up to {fmt_count(epochs.max())} epochs): their losses mix in repetition."
            )
        )
    out.append(
        table(
            trials.sort_values("params"),
            [
                ("trial", "number", "d"),
                ("device", "device_label", "s"),
                ("params", "params", "count"),
                ("tokens seen", "tokens_seen", "count"),
                ("epochs", "epochs", "count"),
                ("steps", "steps", "d"),
                ("train s", "train_seconds", ".1f"),
                ("ppl", "val_ppl", ".3f"),
            ],
        )
    )
    return out


def _failures(data: StudyData) -> list[str]:
    rest = data.trials[data.trials["state"] != "COMPLETE"]
    if rest.empty:
        return ["<p>None.</p>"]
    return [
        table(
            rest,
            [
                ("trial", "number", "d"),
                ("state", "state", "s"),
                ("params", "params", "count"),
                ("reason", "fail_reason", "s"),
            ],
        )
    ]
