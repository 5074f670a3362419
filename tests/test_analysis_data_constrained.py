"""The data-constrained law: the published numbers, the exact reduction to Chinchilla's law on
fresh data, known constants recovered from noisy synthetic data, and the choice of law."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_analysis_loss_law import make_law, make_throughput

from analysis.fits.data_constrained import (
    PUBLISHED_RD_STAR,
    PUBLISHED_RN_STAR,
    DataConstrainedFit,
    effective_data,
    effective_params,
    fit_data_constrained,
    optimal_params_for_tokens,
)
from analysis.fits.errors import FitError
from analysis.fits.law_choice import choose_law
from analysis.fits.loss_law import LossLawFit, StartGrid
from analysis.fits.loss_optimum import loss_optimal_n

SMALL_GRID = StartGrid(
    alpha=(0.0, 0.5, 1.0),
    beta=(0.0, 0.5, 1.0),
    e=(-1.0, 0.0, 1.0),
    a=(0.0, 5.0, 10.0),
    b=(0.0, 5.0, 10.0),
)
TRUTH = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 1500.0, "beta": 0.28}


def published_law() -> LossLawFit:
    """The constants of huggingface/datablations' README, fitted by Muennighoff et al."""
    a, b, e, alpha, beta = 6.255414, 7.3049974, 0.6254804, 0.3526596, 0.3526596
    return make_law(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=alpha, beta=beta)


def with_r_stars(base: LossLawFit, rd_star: float, rn_star: float) -> DataConstrainedFit:
    return DataConstrainedFit(
        base=base,
        rd_star=rd_star,
        rn_star=rn_star,
        rd_constrained=True,
        rn_constrained=True,
        objective=0.0,
        converged=True,
        n_points=1,
        n_fresh=0,
        max_epochs=1.0,
        n_range=(1e5, 1e8),
        stages="given",
    )


def test_four_epochs_are_worth_about_3_72_fresh_ones() -> None:
    u = 1e8
    d_eff = effective_data(4 * u, u, rd_star=15.4)
    assert float(d_eff) / u == pytest.approx(1 + 15.4 * (1 - math.exp(-3 / 15.4)), rel=1e-12)
    assert float(d_eff) / u == pytest.approx(3.72, abs=0.01)
    # Value per repeat falls: 40 epochs are worth 15.18 fresh passes, and no number of
    # repeats more than 1 + R*_D.
    assert float(effective_data(40 * u, u, rd_star=15.4)) / u == pytest.approx(15.18, abs=0.01)
    assert float(effective_data(1e6 * u, u, rd_star=15.4)) / u == pytest.approx(16.4)


def test_effective_values_are_the_raw_ones_without_repetition_or_excess() -> None:
    d = np.array([1e6, 5e7, 1e8])
    np.testing.assert_array_equal(effective_data(d, 1e8, rd_star=15.4), d)
    n = np.array([1e5, 1e6])
    np.testing.assert_array_equal(effective_params(n, 1e6, rn_star=5.3), n)
    # 3x the useful size with R*_N = 5.3: U_N (1 + 5.3 (1 - exp(-2 / 5.3))).
    assert float(effective_params(3e6, 1e6, rn_star=5.3)) == pytest.approx(
        1e6 * (1 + 5.3 * -math.expm1(-2 / 5.3)), rel=1e-12
    )


def test_reproduces_the_published_example_losses() -> None:
    """The README's Figure 1 models: 2.2256440889984477 and 2.2269634075087867."""
    law = with_r_stars(published_law(), PUBLISHED_RD_STAR, PUBLISHED_RN_STAR)
    assert float(law.predict(6.34e9, 242e9, 25e9)) == pytest.approx(2.2256440889984477, rel=1e-6)
    assert float(law.predict(8.67e9, 178e9, 25e9)) == pytest.approx(2.2269634075087867, rel=1e-6)


def test_reduces_exactly_to_chinchilla_on_fresh_data() -> None:
    base = make_law(**TRUTH)
    law = with_r_stars(base, 15.4, 5.3)
    d = np.geomspace(1e9, 1e11, 7)
    n = optimal_params_for_tokens(d, base) * np.linspace(0.05, 1.0, 7)  # N <= N_opt(D)
    unique = d * np.linspace(1.0, 30.0, 7)  # D <= U: no token seen twice
    np.testing.assert_array_equal(law.predict(n, d, unique), base.predict(n, d))
    # Repetition costs loss, and only where there is any.
    assert (law.predict(n, d, d / 8) > base.predict(n, d)).all()


def test_optimal_params_match_chinchilla_allocation() -> None:
    # Under C = 6 N D the optimum has N_opt = G (C/6)^a and D_opt = (C/6)^b / G: invert at D.
    base = make_law(**TRUTH)
    g = (TRUTH["alpha"] * TRUTH["A"] / (TRUTH["beta"] * TRUTH["B"])) ** (
        1 / (TRUTH["alpha"] + TRUTH["beta"])
    )
    c6 = 1e20
    d_opt = c6**base.b / g
    assert float(optimal_params_for_tokens(d_opt, base)) == pytest.approx(g * c6**base.a, rel=1e-9)


def synthetic(rng: np.random.Generator, *, noise: float) -> tuple[np.ndarray, ...]:
    """Fresh points of small models, and repeated ones from 2 to 60 epochs, some models far
    above N_opt(U), drawn from the data-constrained law with R*_D = 8, R*_N = 3."""
    truth = with_r_stars(make_law(**TRUTH), 8.0, 3.0)
    fn, fd = (g.ravel() for g in np.meshgrid(np.geomspace(1e4, 1e6, 6), np.geomspace(1e9, 1e11, 6)))
    rn, ru, re = (
        g.ravel()
        for g in np.meshgrid(np.geomspace(3e4, 1e7, 6), [1e8, 5e8], [2.0, 6.0, 20.0, 60.0])
    )
    n, d = np.concatenate([fn, rn]), np.concatenate([fd, ru * re])
    u = np.concatenate([fd * 2, ru])
    loss = truth.predict(n, d, u) * np.exp(rng.normal(0, noise, n.size))
    return n, d, u, loss, truth.predict(n, d, u)


@pytest.mark.slow
def test_fit_recovers_known_constants_from_noisy_data() -> None:
    n, d, u, loss, clean = synthetic(np.random.default_rng(7), noise=0.003)
    fit = fit_data_constrained(n, d, u, loss, grid=SMALL_GRID)
    assert fit.n_fresh == 36 and fit.n_points == 84 and fit.max_epochs == pytest.approx(60)
    assert fit.base.alpha == pytest.approx(TRUTH["alpha"], abs=0.04)
    assert fit.base.beta == pytest.approx(TRUTH["beta"], abs=0.03)
    assert fit.base.E == pytest.approx(TRUTH["E"], abs=0.08)
    assert fit.rd_star == pytest.approx(8.0, rel=0.2)
    assert fit.rn_star == pytest.approx(3.0, rel=0.35)
    assert fit.rn_constrained and fit.converged
    np.testing.assert_allclose(fit.predict(n, d, u), clean, rtol=0.01)
    assert set(fit.as_dict()) >= {"E", "alpha", "rd_star", "rn_star"}


def test_fit_refuses_data_it_cannot_use() -> None:
    with pytest.raises(FitError, match="no point repeats"):
        fit_data_constrained([1e6] * 6, [1e8] * 6, [1e9] * 6, [3.0] * 6)
    with pytest.raises(FitError, match="at least 5 points that saw their data at most once"):
        fit_data_constrained([1e6] * 6, [1e8] * 6, [1e7] * 6, [3.0] * 6)
    with pytest.raises(FitError, match="differ in length"):
        fit_data_constrained([1e6] * 6, [1e8] * 6, [1e7] * 5, [3.0] * 6)


@pytest.mark.slow
def test_choose_law_uses_chinchilla_within_four_epochs() -> None:
    rng = np.random.default_rng(8)
    n, d = (g.ravel() for g in np.meshgrid(np.geomspace(1e6, 1e8, 6), np.geomspace(1e8, 1e10, 6)))
    loss = make_law(**TRUTH).predict(n, d) * np.exp(rng.normal(0, 0.003, n.size))
    chosen = choose_law(n, d, loss, unique=d / 3.5, grid=SMALL_GRID)
    assert chosen.form == "chinchilla" and chosen.data_constrained is None
    assert "within 4 epochs (at most 3.5)" in chosen.reason
    assert chosen.max_epochs == pytest.approx(3.5)
    unknown = choose_law(n, d, loss, unique=None, grid=SMALL_GRID)
    assert unknown.form == "chinchilla" and "not recorded" in unknown.reason
    assert any("could not be checked" in w for w in unknown.warnings)


@pytest.mark.slow
def test_choose_law_never_fits_fresh_data_law_to_heavy_repetition() -> None:
    n, d, u, loss, _ = synthetic(np.random.default_rng(9), noise=0.002)
    chosen = choose_law(n, d, loss, unique=u, grid=SMALL_GRID)
    assert chosen.form == "data-constrained" and chosen.chinchilla is None
    assert "beyond 4 epochs" in chosen.reason and "Muennighoff" in chosen.reason
    # Too few fresh points for the repeated-data law: Chinchilla only on points within 4 epochs.
    keep = (d / u > 1.0) & (d / u <= 60.0)
    few = choose_law(n[keep], d[keep], loss[keep], unique=u[keep], grid=SMALL_GRID)
    assert few.form == "chinchilla" and few.n_dropped == int((d[keep] / u[keep] > 4).sum())
    assert "within 4 epochs" in few.reason and "cannot be fitted" in few.reason
    # Thousands of epochs read as a count (2k), never 2e+03.
    d6 = np.full(6, 1e8)
    with pytest.raises(FitError, match=r"^2 of 6 points beyond 4 epochs \(up to 2k\): a "):
        choose_law(
            np.full(6, 1e6),
            d6,
            np.full(6, 3.0),
            unique=d6 / np.array([0.5, 0.5, 0.5, 0.5, 1500.0, 2000.0]),
            grid=SMALL_GRID,
        )


def test_best_size_works_with_the_data_constrained_law() -> None:
    base = make_law(E=1.5, A=60.0, B=100.0, alpha=0.3, beta=0.3)
    tps = make_throughput(3e8, 0.7)
    fresh = loss_optimal_n(base, tps, budget=300.0)
    # A corpus far larger than the budget's tokens, and parameters that keep their full value:
    # the fresh-data optimum.
    plenty = loss_optimal_n(with_r_stars(base, 15.4, 1e6).surface(1e15), tps, budget=300.0)
    assert plenty.n_opt == pytest.approx(fresh.n_opt, rel=1e-4)
    # 100k unique tokens (the optimum repeats them ~20-80 times): tokens are worth less, so the
    # best model grows when parameters keep their value, and shrinks when parameters beyond
    # N_opt(U) lose theirs at the published R*_N.
    scarce = loss_optimal_n(with_r_stars(base, 15.4, 1e6).surface(1e5), tps, budget=300.0)
    assert scarce.n_opt > 2 * fresh.n_opt and scarce.loss > fresh.loss + 0.2
    both = loss_optimal_n(with_r_stars(base, 15.4, 5.3).surface(1e5), tps, budget=300.0)
    assert both.n_opt < 0.5 * fresh.n_opt and both.loss > scarce.loss
    assert not (scarce.at_bound or both.at_bound)
    with pytest.raises(FitError, match="unique tokens must be positive"):
        with_r_stars(base, 15.4, 5.3).surface(0.0)


def test_given_constants_fit_only_the_r_stars_on_all_repeated_points() -> None:
    n, d, u, loss, _ = synthetic(np.random.default_rng(10), noise=0.002)
    repeated = d > u
    chosen = choose_law(
        n[repeated],
        d[repeated],
        loss[repeated],
        unique=u[repeated],
        base=make_law(**TRUTH),
        grid=SMALL_GRID,
    )
    assert chosen.form == "data-constrained" and "Chinchilla constants given" in chosen.reason
    assert chosen.data_constrained is not None and chosen.data_constrained.n_fresh == 0
    assert chosen.constants()["rd_star"] == pytest.approx(8.0, rel=0.1)
    assert chosen.constants()["rn_star"] == pytest.approx(3.0, rel=0.2)
