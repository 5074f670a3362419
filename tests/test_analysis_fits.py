"""The throughput fit, the crossover and the frontier: known parameters recovered from noisy
synthetic data and hand-solved crossovers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from analysis.fits.core import (
    crossover_n,
    fit_throughput,
    fit_throughput_by_device,
    pareto_frontier,
    positive_finite,
    solve_crossover,
)
from analysis.fits.errors import FitError
from study.fmt import fmt_count

# --------------------------------------------------------------------------------- throughput


def test_throughput_fit_recovers_c_and_k_from_noisy_points() -> None:
    rng = np.random.default_rng(1)
    c, k = 3.0e8, 0.7
    n = np.repeat(np.geomspace(3e5, 1.2e7, 10), 2)
    tps = c * n**-k * np.exp(rng.normal(0, 0.05, n.size))
    fit = fit_throughput(n, tps, n_boot=2000, seed=0)
    assert fit.k == pytest.approx(k, abs=0.03)
    assert fit.c == pytest.approx(c, rel=0.4)
    assert fit.r2 > 0.98
    assert fit.k_low < k < fit.k_high
    assert fit.c_low < c < fit.c_high
    assert fit.k_low < fit.k < fit.k_high
    assert len(fit.boot_k) > 1900
    np.testing.assert_allclose(fit.tokens_per_second(1e6), fit.c * 1e6**-fit.k)


def test_crossover_matches_hand_solved_case() -> None:
    # T(N) = 2e8 N^-0.5, budget 100 s, ratio 20: 2e8 N^-0.5 * 100 = 20 N  =>  N^1.5 = 1e9
    # => N* = 1e6, seeing 2e7 tokens at 2e5 tokens/s.
    n = np.geomspace(1e5, 1e7, 7)
    fit = fit_throughput(n, 2e8 * n**-0.5)
    assert fit.c == pytest.approx(2e8, rel=1e-9)
    assert fit.k == pytest.approx(0.5, abs=1e-12)
    assert fit.r2 == pytest.approx(1.0)
    cross = solve_crossover(fit, budget=100.0, ratio=20.0)
    assert cross.n_star == pytest.approx(1e6, rel=1e-9)
    assert cross.tokens_at_n_star == pytest.approx(2e7, rel=1e-9)
    assert cross.tokens_per_second_at_n_star == pytest.approx(2e5, rel=1e-9)
    assert cross.n_star_low == pytest.approx(1e6, rel=1e-6)  # exact data: no spread
    assert cross.n_star_high == pytest.approx(1e6, rel=1e-6)
    assert not cross.extrapolated


@pytest.mark.parametrize(
    ("c", "k", "budget", "ratio"),
    [
        (1e9, 1.0, 60.0, 20.0),
        (5e10, 0.55, 300.0, 20.0),
        (1e7, 0.2, 30.0, 10.0),
        (4e5, -0.3, 300.0, 20.0),
    ],
)
def test_crossover_closed_form_solves_the_equation(
    c: float, k: float, budget: float, ratio: float
) -> None:
    from scipy.optimize import brentq

    def gap(log_n: float) -> float:  # tokens in budget minus ratio * N, relative
        n = math.exp(log_n)
        return c * n**-k * budget / (ratio * n) - 1.0

    n_star = crossover_n(c, k, budget=budget, ratio=ratio)
    assert n_star == pytest.approx(math.exp(brentq(gap, 0.0, 60.0, xtol=1e-14)), rel=1e-9)
    assert c * n_star**-k * budget == pytest.approx(ratio * n_star, rel=1e-9)


def test_crossover_hand_solved_square_root() -> None:
    # c = 1e9, k = 1, budget 60 s, ratio 20: 1e9 / N * 60 = 20 N  =>  N^2 = 3e9.
    assert crossover_n(1e9, 1.0, budget=60.0, ratio=20.0) == pytest.approx(math.sqrt(3e9))


def test_crossover_interval_covers_truth_and_flags_extrapolation() -> None:
    rng = np.random.default_rng(2)
    n = np.geomspace(1e5, 1e7, 12)
    noise = np.exp(rng.normal(0, 0.05, n.size))
    cross = solve_crossover(fit_throughput(n, 2e8 * n**-0.5 * noise), budget=100.0, ratio=20.0)
    assert cross.n_star_low < 1e6 < cross.n_star_high
    assert not cross.extrapolated and not cross.warnings
    small = np.geomspace(1e4, 1e5, 12)
    far = solve_crossover(fit_throughput(small, 2e8 * small**-0.5 * noise), budget=100.0)
    assert far.extrapolated
    # Sizes read as a person reads them (study.fmt), never 1.03e+06.
    assert far.warnings == (
        f"N* = {fmt_count(far.n_star)} lies outside the measured sizes [10k, 100k]: "
        "an extrapolation",
    )
    assert fmt_count(far.n_star) == "1.03M"
    with pytest.raises(FitError, match="no crossover"):
        crossover_n(1e3, -1.5, budget=100.0, ratio=20.0)


def test_throughput_hard_errors() -> None:
    with pytest.raises(FitError, match="two distinct"):
        fit_throughput([1e6, 1e6, 1e6], [1e4, 1.1e4, 0.9e4])
    # The positions sweep: one shape, sizes 3% apart by scheme, speeds apart by kernel. Fitted,
    # the noise gave a slope of k = -5.8 and no crossover; it is refused as having no size axis.
    with pytest.raises(FitError, match="spanning at least 1.5x, got 1.31M to 1.35M "):
        fit_throughput([1.31e6, 1.32e6, 1.35e6], [2.4e4, 1.9e4, 2.8e4])
    assert fit_throughput([1e6, 1.5e6], [2e4, 1.5e4], n_boot=10).n_points == 2
    with pytest.raises(FitError, match="positive"):
        fit_throughput([1e6, 2e6], [1e4, -1.0])
    with pytest.raises(FitError, match="positive"):
        fit_throughput([1e6, float("nan")], [1e4, 1e4])


def test_throughput_by_device_fits_each_device_apart() -> None:
    n = np.geomspace(1e5, 1e7, 6)
    params = np.concatenate([n, n])
    tps = np.concatenate([1e8 * n**-0.6, 1e11 * n**-0.4])
    fits = fit_throughput_by_device(params, tps, ["cpu"] * 6 + ["cuda"] * 6)
    assert list(fits) == ["cpu", "cuda"]
    assert fits["cpu"].k == pytest.approx(0.6)
    assert fits["cuda"].k == pytest.approx(0.4)
    assert fits["cuda"].c == pytest.approx(1e11, rel=1e-6)
    assert fits["cpu"].device == "cpu"


def test_pareto_frontier_keeps_only_improving_points() -> None:
    params = [4e6, 1e6, 2e6, 3e6, 1e6, 8e6]
    ppl = [9.0, 12.0, 10.0, 11.0, 13.0, 9.5]
    assert pareto_frontier(params, ppl).tolist() == [1, 2, 0]


def test_positive_finite_flattens_and_refuses_bad_values() -> None:
    assert positive_finite("x", [[1.0, 2.0], [3.0, 4.0]]).tolist() == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(FitError, match="x: no values"):
        positive_finite("x", [])
    with pytest.raises(FitError, match="value 1 is inf"):
        positive_finite("x", [1.0, math.inf])


def test_results_are_frozen() -> None:
    n = np.geomspace(1e5, 1e7, 5)
    fit = fit_throughput(n, 1e8 * n**-0.5, n_boot=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.c = 2.0  # type: ignore[misc]
