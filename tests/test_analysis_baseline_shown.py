"""The n-gram baseline where answers are shown: the verdict line and the figures' lines."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.figures import plots
from analysis.views.baseline import Baselines, OrderScore, Protocol, trials_beats_line


def _baselines(bpb: float) -> Baselines:
    scores = (
        OrderScore(order=1, nll=5.0, ppl=148.0, bpb=2.0, seconds=0.1),
        OrderScore(order=4, nll=2.9, ppl=18.0, bpb=bpb, seconds=0.1),
    )
    return Baselines(
        method="interpolated Witten-Bell",
        protocol=Protocol("sample", None, 4096, 256, 65536),
        corpus="sample",
        train_tokens=100,
        targets=10,
        bytes=40,
        scores=scores,
        count_seconds=0.5,
    )


TRIALS = pd.DataFrame({"number": [3, 7, 9], "val_bpb": [1.30, 0.90, float("nan")]})


def test_best_trial_beats_by_the_relative_gap() -> None:
    line = trials_beats_line(_baselines(1.0), TRIALS)
    assert line is not None
    assert line.startswith("best trial 7 (0.9000 bits per byte) beats the best n-gram")
    assert "order 4, 1.0000 bits per byte" in line and "by 10.0%" in line


def test_best_trial_that_does_not_beat_says_so() -> None:
    line = trials_beats_line(_baselines(0.8), TRIALS)
    assert line is not None and "does not beat" in line and "12.5% worse" in line


def test_no_line_without_baseline_or_bpb() -> None:
    assert trials_beats_line(None, TRIALS) is None
    assert trials_beats_line(_baselines(1.0), TRIALS.drop(columns="val_bpb")) is None


def test_figures_draw_the_baseline_line() -> None:
    fig = plots.frontier_figure(
        [1e5, 2e5],
        [1.2, 1.1],
        [1, 2],
        [0, 1],
        metric_label="bpb",
        group_label="depth",
        baseline=(1.05, "best n-gram (order 4) = 1.05"),
    )
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "best n-gram (order 4) = 1.05" in labels
    curves = pd.DataFrame(
        {
            "trial": [0, 0],
            "params": [1e5, 1e5],
            "elapsed_s": [10.0, 20.0],
            "tokens": [1e5, 2e5],
            "train_loss": [3.0, 2.5],
            "val_loss": [3.1, 2.6],
        }
    )
    fig = plots.curves_figure(curves, baseline=(2.4, "best n-gram"))
    panels = [ax for ax in fig.axes if ax.get_lines()]  # the colorbar's axes draw no line
    ys = [[np.asarray(line.get_ydata())[0] for line in ax.get_lines()] for ax in panels]
    assert [row.count(2.4) for row in ys] == [1, 1, 0, 0]  # held-out row only
