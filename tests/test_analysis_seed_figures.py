"""Figures draw a configuration's seeds as one point: the mean with a +-1 sd bar and each seed
faint beside it; checked on a study built by hand, whose means and sds are counted here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
import pytest
from analysis_db import count_params, trial_attrs, url

from analysis.figures import plots
from analysis.figures.seeds import SEED_LABEL
from analysis.load import StudyData, load_study
from analysis.selection import complete_trials, loss_points
from analysis.views.frontier import frontier_for, frontier_text
from analysis.views.scaling_law import COARSE_GRID, scaling_law_for
from study.config import ModelConfig

# (d_model, n_layer, seed, bits per byte, tokens seen): configuration A ran with seeds 0, 1, 2,
# B with seeds 0 and 1, C once. Held-out loss (nats) is twice the bits per byte.
TRIALS = [
    (64, 2, 0, 1.0, 1.0e6),
    (96, 2, 0, 1.5, 0.8e6),
    (64, 2, 1, 1.2, 1.2e6),
    (96, 2, 1, 1.7, 0.9e6),
    (64, 2, 2, 1.4, 1.1e6),
    (128, 4, 0, 1.1, 0.5e6),
]


def seeded_study(path: Path) -> StudyData:
    storage = url(path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="seeds", storage=storage)
    rng = np.random.default_rng(0)
    for i, (d_model, n_layer, seed, bpb, tokens) in enumerate(TRIALS):
        attrs = trial_attrs(
            i, "cpu (2 threads)", d_model=d_model, n_layer=n_layer, seed=seed, rng=rng
        )
        # One configuration, one learning rate and one network: only the seed tells repeats apart.
        attrs["config"] = {**attrs["config"], "lr": 3e-3, "model": {**attrs["config"]["model"]}}
        attrs["config"]["model"].update(pos="rope", mlp="swiglu")
        params, body = count_params(ModelConfig(**attrs["config"]["model"]))
        attrs.update(lr=3e-3, pos="rope", mlp="swiglu", params=params, params_nonembedding=body)
        attrs.update(val_bpb=bpb, val_loss=2 * bpb)
        attrs.update(val_ppl=math.exp(2 * bpb), tokens_seen=tokens, epochs=tokens / 5.3e6)
        study.add_trial(optuna.trial.create_trial(value=attrs["val_ppl"], user_attrs=attrs))
    return load_study(storage, "seeds")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> StudyData:
    return seeded_study(tmp_path_factory.mktemp("seeds") / "study.db")


def _seed_marks(fig: object) -> tuple[int, int, list[str]]:
    """(error bars drawn, faint seed points drawn, legend texts) of the figure's first axes."""
    ax = fig.axes[0]  # type: ignore[attr-defined]
    bars = sum(
        len(c.lines[2][0].get_segments())
        for c in ax.containers
        if c.has_yerr and c.get_label() != SEED_LABEL  # the legend's entry draws nothing
    )
    faint = sum(len(c.get_offsets()) for c in ax.collections if c.get_alpha() == 0.3)
    legend = ax.get_legend()
    return bars, faint, [t.get_text() for t in legend.get_texts()] if legend else []


def test_frontier_groups_seeds_into_the_hand_computed_mean_and_sd(
    data: StudyData, tmp_path: Path
) -> None:
    o = frontier_for(data, metric="bpb", color_by="depth", budget=None, ratio=20.0, device=None)
    g = o.groups
    assert list(g["trials"]) == [(0, 2, 4), (1, 3), (5,)]  # by size: A, B, C
    assert list(g["n"]) == [3, 2, 1]
    # A: mean (1.0 + 1.2 + 1.4) / 3 = 1.2, sd sqrt((0.04 + 0 + 0.04) / 2) = 0.2.
    assert g.loc[0, "y"] == pytest.approx(1.2) and g.loc[0, "sd"] == pytest.approx(0.2)
    # B: mean 1.6, sd sqrt(0.02 / 1).
    assert g.loc[1, "y"] == pytest.approx(1.6) and g.loc[1, "sd"] == pytest.approx(math.sqrt(0.02))
    assert g.loc[2, "y"] == pytest.approx(1.1) and math.isnan(g.loc[2, "sd"])
    assert g.loc[0, "seed_y"] == (1.0, 1.2, 1.4)
    assert o.frontier == (0, 2)  # the frontier joins means: A, then C
    fig = o.figure()
    bars, faint, legend = _seed_marks(fig)
    assert (bars, faint) == (2, 5)  # A and B get a bar; their 3 + 2 seeds are drawn faint
    assert SEED_LABEL in legend and "bar: \u00b11 sd" in SEED_LABEL
    assert "best: trial 5, N = " in " ".join(legend)
    out = tmp_path / "frontier.png"
    plots.save(fig, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shown = frontier_text(o)  # the table lists configurations, and says so
    assert "(2 of 3 configurations of 6 complete trials, seeds grouped)" in shown
    assert "trial 0: mean of 3 seeds (trials 0, 2, 4), sd 0.2" in shown
    # and, seeds repeated, whether the best can be told from the runner-up: C (one seed, 1.1)
    # against A (1.2 over 3) cannot.
    assert "best: 1.1 (n = 1, one seed, no interval; trials 5)" in shown
    assert "runner-up: 1.2 (n = 3, 95% interval" in shown
    assert "cannot be told apart: Welch's t-test needs at least 2 seeds" in shown


def test_loss_law_figure_groups_end_of_training_points(data: StudyData, tmp_path: Path) -> None:
    trials = complete_trials(data)
    points = loss_points(data, trials)
    points = points[points["source"].eq("final")].reset_index(drop=True)
    o = scaling_law_for(data, points, budget=None, ratio=20.0, device=None, grid=COARSE_GRID)
    assert o.groups is not None
    g = o.groups.sort_values("params").reset_index(drop=True)
    # Loss is twice the bits per byte: A 2.4 (sd 0.4), B 3.2 (sd 2 sqrt(0.02)), C 2.2.
    assert list(g["n"]) == [3, 2, 1]
    assert g.loc[0, "y"] == pytest.approx(2.4) and g.loc[0, "sd"] == pytest.approx(0.4)
    assert g.loc[1, "sd"] == pytest.approx(2 * math.sqrt(0.02))
    assert g.loc[0, "x"] == pytest.approx(1.1e6)  # tokens: (1.0 + 1.2 + 1.1) / 3 M
    bars, faint, legend = _seed_marks(o.figure())
    assert (bars, faint) == (2, 5) and SEED_LABEL in legend
    out = tmp_path / "law.png"
    plots.save(o.figure(), out)
    assert out.stat().st_size > 10_000


def test_crossover_figure_groups_a_configurations_throughput(data: StudyData) -> None:
    from analysis.figures import law_plots
    from analysis.fits.groups import points_by_key
    from analysis.views.crossover import device_crossovers

    done, _ = device_crossovers(complete_trials(data), budget=None, ratio=20.0)
    [o] = done.values()
    groups = points_by_key(o.params, o.tokens_per_second, list(o.configurations))
    trials = complete_trials(data).set_index("number")
    a = trials.loc[[0, 2, 4], "tokens_per_second"].to_numpy(float)  # configuration A's seeds
    row = groups[groups["n"].eq(3)].iloc[0]
    assert row["y"] == pytest.approx(a.mean()) and row["sd"] == pytest.approx(a.std(ddof=1))
    assert list(groups["n"]) == [3, 2, 1]
    fig = o.figure()
    bars, faint, legend = _seed_marks(fig)
    assert (bars, faint) == (2, 5) and SEED_LABEL in legend
    # From a CSV (no configurations) every point is drawn on its own, as before.
    plain = law_plots.crossover_figure(
        o.fit, o.crossover, params=o.params, tokens_per_second=o.tokens_per_second
    )
    assert _seed_marks(plain)[:2] == (0, 0)
