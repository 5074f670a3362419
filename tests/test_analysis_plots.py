"""The figures as a person reads them: no label drawn over another, the best trial named, an
extrapolated N* drawn as one, counts in the one format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from analysis_db import make_study_db, url
from matplotlib.figure import Figure

from analysis.figures import law_plots, plots
from analysis.figures.ladder_plot import ladder_figure
from analysis.load import StudyData, load_study
from analysis.predict import ladder_points, predict_for
from analysis.selection import by_device, complete_trials, loss_points
from analysis.views.crossover import device_crossovers
from analysis.views.curves import curve_points
from analysis.views.frontier import frontier_for
from analysis.views.scaling_law import COARSE_GRID, scaling_law_for

H100 = "NVIDIA H100 80GB HBM3"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> StudyData:
    return load_study(url(make_study_db(tmp_path_factory.mktemp("study") / "study.db")))


def drawn_texts(fig: Figure) -> list[tuple[str, object]]:
    """Every text the figure draws (tick labels within the view, axis labels, titles, legend
    entries, annotations) with its extent in pixels."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    texts = [fig._suptitle] if fig._suptitle is not None else []  # type: ignore[attr-defined]
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            texts += [
                t.label1
                for t in axis.get_major_ticks() + axis.get_minor_ticks()
                if lo * (1 - 1e-9) <= t.get_loc() <= hi * (1 + 1e-9)
            ]
            texts.append(axis.label)
        texts += [ax.title, *ax.texts]
        if (legend := ax.get_legend()) is not None:
            texts += legend.get_texts()
    return [
        (t.get_text(), t.get_window_extent(renderer))
        for t in texts
        if t.get_visible() and t.get_text().strip()
    ]


def assert_no_overlaps(fig: Figure) -> None:
    texts = drawn_texts(fig)
    assert len(texts) > 5
    clashes = [
        (a, b)
        for i, (a, box_a) in enumerate(texts)
        for b, box_b in texts[i + 1 :]
        if box_a.overlaps(box_b)  # type: ignore[attr-defined]
    ]
    assert clashes == []


def legend_labels(fig: Figure) -> list[str]:
    return [
        t.get_text()
        for ax in fig.axes
        if (legend := ax.get_legend()) is not None
        for t in legend.get_texts()
    ]


def test_frontier_names_the_best_trial_and_marks_an_extrapolated_n_star(data: StudyData) -> None:
    fig = frontier_for(
        data, metric="ppl", color_by="depth", budget=None, ratio=20.0, device=None
    ).figure()
    labels = legend_labels(fig)
    assert "best: trial 23, N = 1.06M, 9.385" in labels
    assert f"N* {H100} = 51.5M (extrapolated)" in labels and "N* cpu = 493k" in labels
    assert_no_overlaps(fig)
    ax = fig.axes[0]  # the legend beside the axes, not over the points
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    legend = ax.get_legend()
    assert legend is not None
    assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))


def test_crossover_figure_draws_an_extrapolated_n_star_as_one(data: StudyData) -> None:
    done, _ = device_crossovers(complete_trials(data), budget=None, ratio=20.0)
    for device, o in done.items():
        fig = law_plots.crossover_figure(
            o.fit, o.crossover, params=o.params, tokens_per_second=o.tokens_per_second, label=device
        )
        labels = legend_labels(fig)
        dashed_vertical = [
            line
            for line in fig.axes[0].get_lines()
            if line.get_linestyle() == "--" and len(set(np.asarray(line.get_xdata()))) == 1
        ]
        if device == H100:
            assert o.crossover.extrapolated
            assert "N* = 51.5M (1.03G tokens)\nextrapolated: measured sizes 377k to 1.06M" in labels
            assert len(dashed_vertical) == 1
        else:
            assert not o.crossover.extrapolated and "N* = 493k (9.85M tokens)" in labels
            assert not dashed_vertical
        assert not fig.axes[0].texts  # every label in the legend: none on the data
        assert_no_overlaps(fig)


@pytest.mark.slow
def test_loss_law_figure_labels_in_legends_not_on_the_curves(data: StudyData) -> None:
    trials = complete_trials(data)
    o = scaling_law_for(
        data, loss_points(data, trials), budget=None, ratio=20.0, device=None, grid=COARSE_GRID
    )
    fig = o.figure()
    assert all(not ax.texts for ax in fig.axes)
    labels = legend_labels(fig)
    assert "law at N = 377k" in labels and f"  {20:g}x N* = 51.5M (extrapolated)" in labels
    assert_no_overlaps(fig)


@pytest.mark.slow
def test_curves_and_ladder_figures_have_no_clashing_labels(data: StudyData) -> None:
    assert_no_overlaps(plots.curves_figure(curve_points(data)))
    results = predict_for(data, device="cpu", grid="coarse")
    ((label, res),) = results.items()
    assert not isinstance(res, str)
    points = ladder_points(data, by_device(complete_trials(data), "cpu")[label])
    fig = ladder_figure(points[points["final"]], res, label=label)
    assert "held out: measured" in legend_labels(fig)
    assert_no_overlaps(fig)


@pytest.mark.slow
def test_figures_render(data: StudyData, tmp_path: Path) -> None:
    out = tmp_path / "curves.svg"
    plots.save(plots.curves_figure(curve_points(data)), out)
    assert out.read_text().lstrip().startswith("<?xml")


def test_the_overlap_check_sees_a_clash() -> None:
    fig = plots.new_figure()
    ax = fig.axes[0]
    ax.plot([1, 2], [1, 2])
    ax.annotate("N* = 51.5M", (1.5, 1.5))
    ax.annotate("loss-optimal 447M", (1.52, 1.5))
    with pytest.raises(AssertionError, match="N\\* = 51.5M"):
        assert_no_overlaps(fig)
