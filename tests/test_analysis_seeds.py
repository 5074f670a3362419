"""Trials of one configuration grouped over seeds: hand-computed mean, sd, Welch's test."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis.fits.groups import group_by_configuration, mean_interval, welch_test
from analysis.views.seeds import best_configuration_text


def _trials() -> pd.DataFrame:
    # Configuration A (d_model 64) ran with seeds 0, 1, 2; B (d_model 96) with seeds 0, 1;
    # C once. Same lr everywhere: only d_model tells them apart, the seed never does.
    rows = [
        (0, 64, 0, 1.0),
        (1, 96, 0, 1.5),
        (2, 64, 1, 1.2),
        (3, 96, 1, 1.7),
        (4, 64, 2, 1.4),
        (5, 128, 0, 2.0),
    ]
    return pd.DataFrame(
        {
            "number": [r[0] for r in rows],
            "state": "COMPLETE",
            "config.model.d_model": [r[1] for r in rows],
            "config.lr": 0.003,
            "config.seed": [r[2] for r in rows],
            "val_bpb": [r[3] for r in rows],
        }
    )


def test_group_mean_sd_n_by_hand() -> None:
    groups = group_by_configuration(_trials(), "val_bpb")
    assert list(groups["n"]) == [3, 2, 1]
    assert list(groups["trials"]) == [(0, 2, 4), (1, 3), (5,)]
    # A: mean (1.0 + 1.2 + 1.4) / 3 = 1.2; sd sqrt((0.04 + 0 + 0.04) / 2) = 0.2.
    assert groups.loc[0, "mean"] == pytest.approx(1.2)
    assert groups.loc[0, "sd"] == pytest.approx(0.2)
    # B: mean 1.6; sd sqrt((0.01 + 0.01) / 1) = 0.141421...
    assert groups.loc[1, "mean"] == pytest.approx(1.6)
    assert groups.loc[1, "sd"] == pytest.approx(math.sqrt(0.02))
    assert math.isnan(groups.loc[2, "sd"])


def test_welch_by_hand() -> None:
    # vx = 0.04 / 3, vy = 0.02 / 2; t = -0.4 / sqrt(vx + vy); Welch-Satterthwaite df.
    test = welch_test((1.0, 1.2, 1.4), (1.5, 1.7))
    vx, vy = 0.04 / 3, 0.01
    assert test.t == pytest.approx(-0.4 / math.sqrt(vx + vy))
    assert test.df == pytest.approx((vx + vy) ** 2 / (vx**2 / 2 + vy**2 / 1))
    from scipy import stats

    ref = stats.ttest_ind([1.0, 1.2, 1.4], [1.5, 1.7], equal_var=False)
    assert test.p == pytest.approx(ref.pvalue)
    assert math.isnan(welch_test((1.0,), (1.5, 1.7)).p)


def test_interval_by_hand() -> None:
    ci = mean_interval((1.0, 1.2, 1.4))
    half = 4.302652729911275 * 0.2 / math.sqrt(3)  # t(0.975, 2) x sd / sqrt(n)
    assert (ci.low, ci.high) == (pytest.approx(1.2 - half), pytest.approx(1.2 + half))
    assert math.isnan(mean_interval((1.0,)).low)


def test_best_configuration_text_states_the_test() -> None:
    text = best_configuration_text(_trials(), metric="bpb")
    assert text is not None
    assert "best: 1.2 (n = 3, 95% interval [" in text and "trials 0, 2, 4" in text
    assert "runner-up: 1.6 (n = 2" in text
    assert "not distinguishable at p < 0.05 (Welch's t-test" in text
    one_seed = _trials().drop(index=[2, 3, 4])
    text = best_configuration_text(one_seed, metric="bpb")
    assert text is not None and "cannot be told apart" in text
