"""Which trials and which points an analysis uses: the one place every command selects from.

A study is read by ``analysis.load``; the functions here turn its frames into what the fits take
(complete trials with one label per device, the budget they share, a metric's values, the
(params, tokens/s) and (params, tokens, loss) points) and say in one line, as a UsageError, why a
selection is empty or ambiguous.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.load import DEFAULT_STORAGE, StudyData, load_study
from study.errors import UsageError
from study.fmt import fmt_count
from study.objective import PPL

if TYPE_CHECKING:
    import pandas as pd

PathArg = str | os.PathLike[str] | None

# metric name -> (trial column, label for text and figures)
METRICS = {"ppl": ("val_ppl", "held-out perplexity"), "bpb": ("val_bpb", "held-out bits per byte")}


def open_source(storage: str | None, study_name: str | None, csv: PathArg) -> StudyData | None:
    """The study to read, or None when the input is a CSV file (given alone).

    Raises:
        UsageError: both a CSV and a storage or study name were given, or the study cannot be read.
    """
    if csv is not None:
        if storage is not None or study_name is not None:
            raise UsageError("give either --csv or --storage/--study-name, not both")
        return None
    return load_study(storage or DEFAULT_STORAGE, study_name)


def complete_trials(data: StudyData) -> pd.DataFrame:
    """Complete trials with a ``device_label`` column (the device's name, else its kind).

    Raises:
        UsageError: the study has no complete trial.
    """
    frame = data.complete().copy()
    if frame.empty:
        raise UsageError(f"study {data.study_name!r} has no complete trials yet")
    name = frame["device_name"].where(frame["device_name"].notna(), frame["device"])
    # Early 0.1.0 trainers named a CPU with the thread count it happened to run on, which the
    # thread tuner now picks per run: one machine, one label.
    label = name.fillna("unknown").astype(str).str.replace(r" \(\d+ threads?\)$", "", regex=True)
    frame["device_label"] = label
    return frame


def by_device(frame: pd.DataFrame, device: str | None) -> dict[str, pd.DataFrame]:
    """Trials grouped by device label, in label order; ``device`` keeps those whose device kind
    or device label is it (case-insensitive).

    Raises:
        UsageError: no trial ran on ``device``.
    """
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


def on_device(frame: pd.DataFrame, device: str | None) -> pd.DataFrame:
    """The trials of ``frame`` that ran on ``device`` (all of them when it is None)."""
    if device is None:
        return frame
    import pandas as pd

    return pd.concat(list(by_device(frame, device).values()))


def budget_of(frame: pd.DataFrame, budget: float | None) -> float:
    """``budget`` if given, else the one budget the trials share.

    Raises:
        UsageError: ``budget`` is not a positive number, or it is None and the trials record no
            budget or several.
    """
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
    """``budget`` as a float if it is a positive finite number of seconds; UsageError if not."""
    if not (math.isfinite(budget) and budget > 0):
        raise UsageError(f"--budget must be a positive number of seconds, got {budget}")
    return float(budget)


def metric_column(metric: str) -> str:
    """The trial column that holds ``metric`` (``ppl`` or ``bpb``); UsageError for another."""
    if metric not in METRICS:
        raise UsageError(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}")
    return METRICS[metric][0]


def metric_values(trials: pd.DataFrame, metric: str) -> pd.Series:
    """``metric`` for each trial; one missing from the attributes is the trial's value where
    that value measures it (its study's ``objective`` column, perplexity where none is
    recorded: ``study.objective``)."""
    values = trials[metric_column(metric)]
    if "objective" not in trials:  # a CSV written before the column: perplexity
        return values.fillna(trials["value"]) if metric == PPL else values
    return values.fillna(trials["value"].where(trials["objective"].fillna(PPL).eq(metric)))


VOCAB_COLUMN = "config.model.vocab_size"


def vocab_note(trials: pd.DataFrame) -> str | None:
    """The note line a table or figure of per-token loss or perplexity over ``trials`` carries
    when they span several vocabularies (None for one): a vocabulary's tokens are not another's,
    so those numbers do not compare across vocabularies; bits per byte do."""
    import pandas as pd

    if VOCAB_COLUMN not in trials:
        return None
    vocabs = sorted({int(v) for v in pd.to_numeric(trials[VOCAB_COLUMN], errors="coerce").dropna()})
    if len(vocabs) < 2:
        return None
    return (
        f"note: these trials use {len(vocabs)} vocabularies ({', '.join(map(str, vocabs))}): "
        f"per-token loss and perplexity do not compare across vocabularies, bits per byte do "
        f"(--metric bpb)"
    )


def throughput_points(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """(params, tokens/s) of the trials that measured a steady-state rate, and the numbers of
    those that did not (too few steps in the budget to leave the warm-up)."""
    ok = frame["params"].gt(0) & frame["tokens_per_second"].gt(0)
    left_out = tuple(int(v) for v in frame.loc[~ok, "number"])
    return (
        frame.loc[ok, "params"].to_numpy(float),
        frame.loc[ok, "tokens_per_second"].to_numpy(float),
        left_out,
    )


def throughput_configurations(frame: pd.DataFrame) -> tuple[str, ...]:
    """The configuration (stored config less the seed) of each point
    :func:`throughput_points` returns, in its order: a configuration's seeds measure its
    throughput again."""
    from analysis.fits.groups import configuration_keys

    ok = frame["params"].gt(0) & frame["tokens_per_second"].gt(0)
    return tuple(str(k) for k in configuration_keys(frame[ok]))


def loss_points(
    data: StudyData, trials: pd.DataFrame, *, max_epochs: float | None = None
) -> pd.DataFrame:
    """(params, tokens, loss, trial, source) for the loss law: each trial's final point and its
    curve points with a held-out loss, all positive and finite. Trials whose loss is only a bound
    (diffusion) are left out. With ``max_epochs``, points that had seen the training tokens more
    often than that are left out too: L(N, D) describes fresh data, and repeated data (a small
    corpus on a fast device) make held-out loss rise with D instead of fall."""
    import pandas as pd

    exact = trials[trials["val_is_bound"].ne(True)]
    finals = pd.DataFrame(
        {
            "params": exact["params"],
            "tokens": exact["tokens_seen"],
            "loss": exact["val_loss"],
            "trial": exact["number"],
            "source": "final",
        }
    )
    curves = data.curves.merge(
        exact[["number", "params"]], left_on="trial_number", right_on="number", how="inner"
    )
    curves = pd.DataFrame(
        {
            "params": curves["params"],
            "tokens": curves["tokens"],
            "loss": curves["val_loss"],
            "trial": curves["trial_number"],
            "source": "curve",
        }
    )
    points = pd.concat([finals, curves], ignore_index=True)
    for col in ("params", "tokens", "loss"):
        points[col] = pd.to_numeric(points[col], errors="coerce")
    keep = points[["params", "tokens", "loss"]].gt(0).all(axis=1) & np.isfinite(
        points[["params", "tokens", "loss"]]
    ).all(axis=1)
    if max_epochs is not None:
        per_epoch = pd.to_numeric(exact["tokens_seen"], errors="coerce") / pd.to_numeric(
            exact["epochs"], errors="coerce"
        )
        corpus = dict(zip(exact["number"], per_epoch, strict=False))
        epochs = points["tokens"] / points["trial"].map(corpus)
        keep &= epochs.le(max_epochs) | epochs.isna()
    return points[keep].reset_index(drop=True)


def fmt_value(value: Any, spec: str) -> str:
    """``value`` in ``spec`` (``d`` rounds to an integer, ``count`` reads 754k or 1.23M as
    everywhere a person reads a count); "-" when it is missing, and ``str`` of it when it is
    not a number."""
    try:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        if spec == "count":
            return fmt_count(float(value))
        return format(int(value) if spec == "d" else float(value), spec)
    except (TypeError, ValueError):
        return str(value)


# ---------------------------------------------------------------------------------------------
# Ladders: one network per size

# How a network is trained: what trials of one size of a ladder may differ in besides the seed
# (a learning rate set per rung, a regularisation grid). Every other config field is the network.
TRAINING_KNOBS = (
    "config.lr",
    "config.muon_lr",
    "config.weight_decay",
    "config.muon_weight_decay",
    "config.model.dropout",
)


@dataclass(frozen=True)
class SizePick:
    """The configuration that stands for one size of a ladder: the one with the lowest mean
    final held-out loss over its seeds (``trials``), of ``configurations`` tried there."""

    params: float
    trials: tuple[int, ...]
    loss: float  # mean final held-out loss (nats/token) of ``trials``
    configurations: int
    others: tuple[int, ...]  # the trials of the configurations not picked


def ladder_trials(
    frame: pd.DataFrame, *, study: str, device: str
) -> tuple[pd.DataFrame, tuple[SizePick, ...]]:
    """The trials of ``frame`` (one device's complete trials) that a law of size is fitted on:
    per size, the best configuration's trials (seeds grouped, by mean final held-out loss).

    A ladder is a set of trials in which every size is one network: trials of one size (sizes
    within 1% of each other count as one, since the law cannot tell them apart) differ at most
    in how it is trained (``TRAINING_KNOBS``: learning rate, weight decay, dropout) and in their
    seed, and there are at least two sizes. The sweeps ``ladder*`` and ``regularise``
    make ladders; a grid of positional schemes at one shape, or a search that tried one size
    with two MLPs, does not: which network stands for the size would be a choice the law
    cannot see.

    Raises:
        UsageError: the trials are not a ladder (one line: the size and the field that differs).
    """
    from analysis.fits.groups import NOT_CONFIGURATION, configuration_keys

    exact = frame["val_is_bound"].ne(True) if "val_is_bound" in frame else True
    scored = frame[exact & frame["val_loss"].gt(0)].copy()
    sizes = sorted(set(scored["params"].dropna().astype(float)))
    if len(sizes) < 2:
        raise UsageError(
            f"study {study!r} is not a ladder on {device}: its trials with a held-out loss "
            f"have {len(sizes)} size{'s' * (len(sizes) != 1)}, a law of size needs several"
        )
    network = [
        c
        for c in scored.columns
        if c.startswith("config.") and c not in NOT_CONFIGURATION and c not in TRAINING_KNOBS
    ]
    scored["_key"] = configuration_keys(scored)
    for low, high in _rungs(sizes):  # sizes within 1% of each other are one size of the law
        at = scored[scored["params"].astype(float).between(low, high)]
        _one_network(at, network, study=study, device=device)
    picks = []
    for size in sizes:
        at = scored[scored["params"].astype(float) == size]
        means = at.groupby("_key", sort=False)["val_loss"].mean()
        firsts = at.groupby("_key", sort=False)["number"].min()
        best = min(means.index, key=lambda k: (float(means[k]), int(firsts[k])))
        chosen = at[at["_key"] == best]
        picks.append(
            SizePick(
                params=size,
                trials=tuple(int(t) for t in sorted(chosen["number"])),
                loss=float(means[best]),
                configurations=int(means.size),
                others=tuple(int(t) for t in sorted(at.loc[at["_key"] != best, "number"])),
            )
        )
    keep = {t for p in picks for t in p.trials}
    return frame[frame["number"].isin(keep)], tuple(picks)


def _rungs(sizes: list[float], *, within: float = 1.01) -> list[tuple[float, float]]:
    """``sizes`` (sorted) as runs of sizes each within ``within`` of the run's smallest."""
    rungs: list[tuple[float, float]] = []
    for size in sizes:
        if rungs and size <= rungs[-1][0] * within:
            rungs[-1] = (rungs[-1][0], size)
        else:
            rungs.append((size, size))
    return rungs


def _one_network(at: pd.DataFrame, network: list[str], *, study: str, device: str) -> None:
    """UsageError unless the trials ``at`` one size share every network field."""
    low, high = (fmt_count(float(v)) for v in (at["params"].min(), at["params"].max()))
    size = low if low == high else f"{low}-{high}"
    for column in network:
        values = sorted(set(at[column].map(lambda v: "-" if v is None or v != v else str(v))))
        if len(values) > 1:
            raise UsageError(
                f"study {study!r} is not a ladder on {device}: its size {size} holds "
                f"{len(values)} networks "
                f"({column.removeprefix('config.')} is {', '.join(values)}); a law of size "
                "needs one network per size, its trials differing only in learning rate, "
                "weight decay, dropout or seed"
            )
