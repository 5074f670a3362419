"""``analysis.selection``: which trials and points every analysis uses."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from analysis_db import BUDGET, make_study_db, url

from analysis.load import load_study
from analysis.selection import (
    budget_of,
    by_device,
    complete_trials,
    fmt_value,
    loss_points,
    metric_column,
    metric_values,
    on_device,
    open_source,
    throughput_points,
)
from study.errors import UsageError


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_db(tmp_path_factory.mktemp("study") / "study.db")


class Data:
    """The one method of StudyData that ``complete_trials`` calls, over a hand-made frame."""

    study_name = "s"

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def complete(self) -> pd.DataFrame:
        return self.frame


def test_cpu_thread_counts_do_not_split_a_device() -> None:
    frame = pd.DataFrame(
        {
            "device": ["cpu", "cpu", "cuda"],
            "device_name": [
                "cpu x86_64 (1 threads)",
                "cpu x86_64 (2 threads)",
                "NVIDIA H100 80GB HBM3",
            ],
        }
    )
    labels = complete_trials(Data(frame)).loc[:, "device_label"].tolist()  # type: ignore[arg-type]
    assert labels == ["cpu x86_64", "cpu x86_64", "NVIDIA H100 80GB HBM3"]


def test_device_label_falls_back_to_the_kind_and_no_trials_is_refused() -> None:
    frame = pd.DataFrame({"device": ["mps", None], "device_name": [None, None]})
    labels = complete_trials(Data(frame))["device_label"].tolist()  # type: ignore[arg-type]
    assert labels == ["mps", "unknown"]
    with pytest.raises(UsageError, match="study 's' has no complete trials yet"):
        complete_trials(Data(frame.iloc[:0]))  # type: ignore[arg-type]


@pytest.mark.slow
def test_by_device_matches_kind_or_label_case_blind(db: Path) -> None:
    trials = complete_trials(load_study(url(db)))
    groups = by_device(trials, None)
    assert list(groups) == ["NVIDIA H100 80GB HBM3", "cpu"]
    assert [len(g) for g in groups.values()] == [6, 18]
    assert list(by_device(trials, "CUDA")) == ["NVIDIA H100 80GB HBM3"]
    assert list(by_device(trials, "nvidia h100 80gb hbm3")) == ["NVIDIA H100 80GB HBM3"]
    assert len(on_device(trials, "cpu")) == 18 and on_device(trials, None) is trials
    with pytest.raises(
        UsageError,
        match=r"no complete trial ran on device 'tpu' \(devices: "
        r"NVIDIA H100 80GB HBM3, cpu\)",
    ):
        by_device(trials, "tpu")


def test_budget_is_the_one_the_trials_share_or_the_given_one() -> None:
    assert budget_of(pd.DataFrame({"budget": [300.0, 300.0, None]}), None) == 300.0
    assert budget_of(pd.DataFrame({"budget": [300.0, 60.0]}), 120) == 120.0
    with pytest.raises(UsageError, match=r"several budgets \(60, 300 s\); pick one with --budget"):
        budget_of(pd.DataFrame({"budget": [300.0, 60.0]}), None)
    with pytest.raises(UsageError, match="record no budget; give --budget"):
        budget_of(pd.DataFrame({"budget": [None]}), None)
    for bad in (0.0, -5.0, math.inf, math.nan):
        with pytest.raises(UsageError, match="--budget must be a positive number"):
            budget_of(pd.DataFrame({"budget": [300.0]}), bad)


def test_metric_values_fall_back_to_the_objective_for_perplexity_only() -> None:
    trials = pd.DataFrame(
        {"val_ppl": [10.0, math.nan], "val_bpb": [1.5, math.nan], "value": [11.0, 12.0]}
    )
    assert metric_column("bpb") == "val_bpb"
    assert metric_values(trials, "ppl").tolist() == [10.0, 12.0]
    bpb = metric_values(trials, "bpb").tolist()
    assert bpb[0] == 1.5 and math.isnan(bpb[1])
    with pytest.raises(UsageError, match="--metric must be one of ppl, bpb, got 'loss'"):
        metric_column("loss")


def test_trials_without_a_steady_state_rate_are_left_out() -> None:
    frame = pd.DataFrame(
        {
            "number": [0, 1, 2, 3, 4],
            "params": [1e5, 2e5, 4e5, 8e5, 1.6e6],
            "tokens_per_second": [3e4, 2.1e4, 0.0, 1.05e4, float("nan")],
        }
    )
    n, t, left_out = throughput_points(frame)
    assert n.tolist() == [1e5, 2e5, 8e5] and t.tolist() == [3e4, 2.1e4, 1.05e4]
    assert left_out == (2, 4)


def test_loss_points_are_finals_and_curves_and_max_epochs_leaves_out_repeated_data(
    db: Path,
) -> None:
    data = load_study(url(db), None)
    trials = complete_trials(data)
    every = loss_points(data, trials)
    # 24 finals + 24 * 5 curve points, less the one stored null.
    assert every["source"].value_counts().to_dict() == {"curve": 119, "final": 24}
    assert (every[["params", "tokens", "loss"]] > 0).all().all()
    fresh = loss_points(data, trials, max_epochs=1.0)
    assert 0 < len(fresh) < len(every)
    # The corpus of the synthetic study holds 5.3e6 tokens: no kept point saw more.
    assert fresh["tokens"].max() <= 5.3e6 * (1 + 1e-9)
    assert (every["tokens"] > 5.3e6).any()
    # A diffusion trial's loss is a bound: none of its points enter the law.
    bound = trials.assign(val_is_bound=trials["number"].eq(0))
    assert 0 not in set(loss_points(data, bound)["trial"])


def test_open_source_takes_a_csv_or_a_study_not_both(db: Path, tmp_path: Path) -> None:
    assert open_source(None, None, tmp_path / "points.csv") is None
    opened = open_source(url(db), None, None)
    assert opened is not None and opened.trials["budget"].max() == BUDGET
    with pytest.raises(UsageError, match="either --csv or --storage/--study-name, not both"):
        open_source(url(db), None, tmp_path / "points.csv")


def test_fmt_value_shows_missing_as_a_dash_and_keeps_text() -> None:
    assert fmt_value(None, "d") == "-" and fmt_value(math.nan, ".3g") == "-"
    assert fmt_value(4.0, "d") == "4" and fmt_value(0.00123456, ".3g") == "0.00123"
    assert fmt_value("rope", ".3g") == "rope"
