"""Bootstrap intervals of the loss law's constants and of the loss-optimal size: they cover the
law the points were drawn from, a fixed seed gives the same intervals, and too few
configurations give a reason, not a crash."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from analysis_db import LAW, law_loss

from analysis.fits.core import ThroughputFit, fit_throughput
from analysis.fits.errors import FitError
from analysis.fits.law_bootstrap import CONSTANTS, bootstrap_loss_law
from analysis.fits.loss_law import fit_loss_law
from analysis.fits.loss_optimum import loss_optimal_n
from analysis.views.scaling_law import COARSE_GRID, run_scaling_law

BUDGET = 300.0


def _points(seed: int = 3, noise: float = 0.01) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Six sizes x six token counts from the law of ``analysis_db.LAW``, with noise."""
    n, d = (a.ravel() for a in np.meshgrid(np.geomspace(1e5, 1e8, 6), np.geomspace(1e7, 1e10, 6)))
    loss = np.array([law_loss(a, b) for a, b in zip(n, d, strict=True)])
    return n, d, loss * np.exp(np.random.default_rng(seed).normal(0, noise, n.size))


def _throughput() -> ThroughputFit:
    n = np.geomspace(1e5, 1e8, 6)
    return fit_throughput(n, 3e9 * n**-0.6, n_boot=10)


def test_the_intervals_cover_the_law_the_points_came_from() -> None:
    n, d, loss = _points()
    law = fit_loss_law(n, d, loss, grid=COARSE_GRID)
    tput = _throughput()
    boot = bootstrap_loss_law(
        n,
        d,
        loss,
        groups=[f"config {i}" for i in range(n.size)],
        law=law,
        n_boot=40,
        throughputs={"cpu": (tput, BUDGET)},
    )
    assert boot.n_fitted == 40 and boot.n_groups == 36 and boot.level == 0.95
    for name in CONSTANTS:
        low, high = boot.constants[name]
        assert low <= LAW[name] <= high, (name, low, high)
        assert low < high
    true = dataclasses.replace(  # the law the points came from
        law, E=LAW["E"], A=LAW["A"], B=LAW["B"], alpha=LAW["alpha"], beta=LAW["beta"]
    )
    best = loss_optimal_n(true, tput, budget=BUDGET).n_opt
    low, high = boot.n_opt["cpu"]
    assert low <= best <= high and boot.n_opt_at_bound["cpu"] == 0


def test_a_fixed_seed_gives_the_same_intervals_and_seeds_stay_together() -> None:
    n, d, loss = _points(noise=0.02)
    law = fit_loss_law(n, d, loss, grid=COARSE_GRID)
    # Pairs of points as the two seeds of one configuration: 18 configurations are drawn.
    groups = [f"config {i // 2}" for i in range(n.size)]
    once = bootstrap_loss_law(n, d, loss, groups=groups, law=law, n_boot=8, seed=7)
    again = bootstrap_loss_law(n, d, loss, groups=groups, law=law, n_boot=8, seed=7)
    other = bootstrap_loss_law(n, d, loss, groups=groups, law=law, n_boot=8, seed=8)
    assert once == again and once.n_groups == 18
    assert once.constants != other.constants


def test_too_few_configurations_is_a_reason_not_a_crash() -> None:
    n, d, loss = _points()
    law = fit_loss_law(n, d, loss, grid=COARSE_GRID)
    with pytest.raises(FitError, match="only 4 configurations to resample; the law's 5 "):
        bootstrap_loss_law(n, d, loss, groups=[f"c{i % 4}" for i in range(n.size)], law=law)
    with pytest.raises(FitError, match="at least 1 resample"):
        bootstrap_loss_law(n, d, loss, groups=list(range(n.size)), law=law, n_boot=0)


def test_scaling_law_prints_and_writes_the_intervals(tmp_path: Path) -> None:
    n, d, loss = _points()
    csv = tmp_path / "points.csv"
    csv.write_text(
        "params,tokens,loss\n"
        + "".join(f"{a:.17g},{b:.17g},{c:.17g}\n" for a, b, c in zip(n, d, loss, strict=True))
    )
    out = tmp_path / "law.json"
    text = run_scaling_law(csv=csv, grid="coarse", bootstrap=20, json_path=out)
    assert "bootstrap: 95% percentile intervals over 20 of 20 resamples of 36 " in text
    assert "  alpha in [" in text
    result = json.loads(out.read_text())
    assert list(result)[:7] == ["E", "A", "B", "alpha", "beta", "a", "b"]
    low, high = result["bootstrap"]["constants"]["beta"]
    assert low <= LAW["beta"] <= high and result["bootstrap"]["n_boot"] == 20
    off = tmp_path / "off.json"
    run_scaling_law(csv=csv, grid="coarse", bootstrap=0, json_path=off)
    assert "bootstrap" not in json.loads(off.read_text())


def test_a_study_of_three_configurations_says_why_it_has_no_interval(tmp_path: Path) -> None:
    from test_analysis_seed_figures import seeded_study

    data = seeded_study(tmp_path / "seeds.db")  # 6 trials, 3 configurations
    out = tmp_path / "law.json"
    text = run_scaling_law(storage=data.storage, grid="coarse", bootstrap=50, json_path=out)
    assert "no bootstrap interval: only 3 configurations to resample" in text
    assert json.loads(out.read_text())["bootstrap"]["error"].startswith("only 3 configurations")
