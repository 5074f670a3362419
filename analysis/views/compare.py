"""Held-out quality by positional scheme, MLP or regularisation: which choice did better, and at
equal size.

A sweep draws the scheme together with size and learning rate, so the best trial of each scheme
mixes all three. The fairer reading is at equal size: for every model shape (architecture,
layers, width) that was tried with more than one choice, the best trial of each choice, and how
often each choice won there. Each device is compared on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from analysis.load import DEFAULT_STORAGE, StudyData, load_study
from analysis.selection import (
    METRICS,
    PathArg,
    by_device,
    complete_trials,
    fmt_value,
    metric_column,
    metric_values,
    vocab_note,
)
from study.errors import UsageError
from study.fileio import write_json
from study.outputs import check_output

if TYPE_CHECKING:
    import pandas as pd

COMPARE_BY = {
    "pos": "positional scheme",
    "mlp": "MLP",
    "cell": "positional scheme + MLP",
    "reg": "regularisation (weight decay, dropout)",
}
SHAPE = ("arch", "n_layer", "d_model")


@dataclass(frozen=True)
class Group:
    """One choice's trials: how many, the best (its study, trial, size and lr) and the median."""

    value: str
    trials: int
    best: float
    best_trial: int
    best_params: float
    best_lr: float
    median: float
    best_study: str


@dataclass(frozen=True)
class Comparison:
    """One device's comparison of the choices of ``by``."""

    device: str
    by: str
    metric: str
    groups: tuple[Group, ...]
    shapes: tuple[tuple[str, dict[str, float]], ...]  # (shape, best metric per choice tried)
    wins: dict[str, int]  # shapes at which each choice was the best
    studies: tuple[str, ...]  # the studies whose trials were compared

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "by": self.by,
            "metric": METRICS[self.metric][0],
            "studies": list(self.studies),
            "groups": [g.__dict__ for g in self.groups],
            "equal_size": [{"shape": s, "best": best} for s, best in self.shapes],
            "wins": self.wins,
        }


def compare_for(
    data: StudyData,
    *,
    by: str,
    metric: str = "ppl",
    device: str | None = None,
    also: Sequence[StudyData] = (),
) -> list[Comparison]:
    """Compare the values of ``by`` (pos, mlp, cell or reg) on each device of the study that
    tried more than one; a device that tried one only is left out. The complete trials of the
    studies ``also`` join in (a grid of regularisation settings against the ladder that ran
    without them, say), each trial named by its study.

    Raises:
        UsageError: unknown ``by`` or metric, a study without complete trials, or no device with
            two values of ``by`` among them.
    """
    import pandas as pd

    if by not in COMPARE_BY:
        raise UsageError(f"--by must be one of {', '.join(COMPARE_BY)}, got {by!r}")
    column = metric_column(metric)
    studies = [data, *also]
    names = tuple(dict.fromkeys(d.study_name for d in studies))
    if len(names) < len(studies):
        raise UsageError(f"a study is named twice among {', '.join(d.study_name for d in studies)}")
    trials = pd.concat(
        [complete_trials(d).assign(study=d.study_name) for d in studies], ignore_index=True
    )
    out, alike = [], []
    for label, frame in by_device(trials, device).items():
        frame = frame.copy()
        frame[column] = metric_values(frame, metric)
        frame["group"] = _group_values(frame, by)
        frame = frame[frame["group"].notna() & frame[column].gt(0)]
        if frame["group"].nunique() < 2:
            alike.append(f"{label} ({', '.join(sorted(set(frame['group']))) or 'none recorded'})")
        else:
            out.append(_compare(frame, label, by=by, metric=metric, column=column, studies=names))
    if not out:
        raise UsageError(
            f"no {COMPARE_BY[by]} to compare: each device's trials all have the "
            f"same one ({'; '.join(alike)})"
        )
    return out


def _group_values(frame: pd.DataFrame, by: str) -> pd.Series:
    if by == "cell":
        both = frame["pos"].notna() & frame["mlp"].notna()
        return (frame["pos"].astype(str) + "+" + frame["mlp"].astype(str)).where(both)
    if by == "reg":
        return _regularisation(frame)
    return frame[by].astype(str).where(frame[by].notna())


def _regularisation(frame: pd.DataFrame) -> pd.Series:
    """``wd<weight decay> do<dropout>`` of each trial, read from its stored config (trials with no
    config stored: none)."""
    import pandas as pd

    if "config.weight_decay" not in frame:
        return pd.Series(None, index=frame.index, dtype=object)
    decay = pd.to_numeric(frame["config.weight_decay"], errors="coerce")
    # Trials stored before dropout existed had none.
    dropout = (
        pd.to_numeric(frame["config.model.dropout"], errors="coerce").fillna(0.0)
        if "config.model.dropout" in frame
        else pd.Series(0.0, index=frame.index)
    )
    label = [f"wd{wd:g} do{do:g}" for wd, do in zip(decay, dropout, strict=True)]
    return pd.Series(label, index=frame.index, dtype=object).where(decay.notna())


def _compare(
    frame: pd.DataFrame, device: str, *, by: str, metric: str, column: str, studies: tuple[str, ...]
) -> Comparison:
    groups = []
    for value, g in frame.groupby("group", sort=True):
        best = g.loc[g[column].idxmin()]
        groups.append(
            Group(
                value=str(value),
                trials=len(g),
                best=float(best[column]),
                best_trial=int(best["number"]),
                best_params=float(best["params"]),
                best_lr=float(best["lr"]),
                median=float(g[column].median()),
                best_study=str(best["study"]),
            )
        )
    shapes = []
    wins = {g.value: 0 for g in groups}
    keyed = frame.dropna(subset=list(SHAPE))
    for key, g in keyed.groupby(list(SHAPE), sort=True):
        best = g.groupby("group")[column].min()
        if len(best) < 2:
            continue
        arch, n_layer, d_model = key
        shapes.append(
            (f"{arch} {int(n_layer)}x{int(d_model)}", {str(k): float(v) for k, v in best.items()})
        )
        wins[str(best.idxmin())] += 1
    shapes.sort(key=lambda s: min(s[1].values()))
    return Comparison(
        device,
        by,
        metric,
        tuple(sorted(groups, key=lambda g: g.best)),
        tuple(shapes),
        wins,
        studies,
    )


def compare_text(c: Comparison) -> str:
    _, label = METRICS[c.metric]
    n = sum(g.trials for g in c.groups)
    width = max(8, *(len(g.value) for g in c.groups))
    several = len(c.studies) > 1
    source = f" of {len(c.studies)} studies" if several else ""
    lines = [
        f"{label.capitalize()} by {COMPARE_BY[c.by]} on {c.device} ({n} complete trials{source}):",
        f"{c.by:>{width}} {'trials':>6} {'best':>9} {'trial':>6} {'params':>9} {'lr':>9} "
        f"{'median':>9}" + ("  study" if several else ""),
    ]
    for g in c.groups:
        lines.append(
            f"{g.value:>{width}} {g.trials:>6} {g.best:>9.4g} {g.best_trial:>6} "
            f"{g.best_params:>9.3g} {fmt_value(g.best_lr, '.3g'):>9} {g.median:>9.4g}"
            + (f"  {g.best_study}" if several else "")
        )
    if not c.shapes:
        lines.append(
            f"No model shape was tried with more than one {c.by}: the best trials above "
            f"differ in size and learning rate too."
        )
        return "\n".join(lines)
    values = [g.value for g in c.groups]
    lines += [
        "",
        f"Best at equal size ({len(c.shapes)} shape(s) tried with more than one "
        f"{c.by}; '-' where a choice was not tried):",
        f"{'shape':>14} " + " ".join(f"{v:>{width}}" for v in values),
    ]
    for shape, best in c.shapes:
        cells = (fmt_value(best.get(v, math.nan), ".4g") for v in values)
        lines.append(f"{shape:>14} " + " ".join(f"{cell:>{width}}" for cell in cells))
    ranked = sorted(((v, w) for v, w in c.wins.items() if w), key=lambda kv: (-kv[1], kv[0]))
    lines.append(
        "best at equal size: " + ", ".join(f"{v} at {w} of {len(c.shapes)}" for v, w in ranked)
    )
    return "\n".join(lines)


def run_compare(
    *,
    storage: str | None = None,
    study_name: str | None = None,
    by: str = "pos",
    metric: str = "ppl",
    device: str | None = None,
    json_path: PathArg = None,
    force: bool = False,
    also: Sequence[str] = (),
    baseline: bool = True,
) -> str:
    """The comparison's text for each device; ``json_path`` also gets it as JSON. The studies
    named in ``also`` (same storage) join the comparison. With ``baseline`` a last line says
    whether the study's best trial beats the best n-gram of its corpus (computed on demand,
    cached)."""
    json_out = check_output(json_path, what="--json", kind="json", force=force)
    data = load_study(storage or DEFAULT_STORAGE, study_name)
    more = [load_study(storage or DEFAULT_STORAGE, name) for name in also]
    comparisons = compare_for(data, by=by, metric=metric, device=device, also=more)
    if json_out is not None:
        write_json(
            json_out, {"study": data.study_name, "comparisons": [c.as_dict() for c in comparisons]}
        )
    text = "\n\n".join(compare_text(c) for c in comparisons)
    import pandas as pd

    from analysis.views.seeds import best_configuration_text

    # Seeds of a configuration may sit in another study (one run per seed): group over all.
    every = pd.concat([complete_trials(d) for d in [data, *more]], ignore_index=True)
    note = vocab_note(every) if metric == "ppl" else None
    if note is not None:
        text = f"{note}\n\n{text}"
    grouped = best_configuration_text(every, metric=metric)
    if grouped is not None:
        text += f"\n\n{grouped}"
    if baseline:
        from analysis.views.baseline import study_baseline, trials_beats_line

        beats = trials_beats_line(study_baseline(data), complete_trials(data))
        if beats is not None:
            text += f"\n\nstudy {data.study_name!r}: {beats}"
    return text
