"""The loss law: exact gradients, known parameters recovered from noisy synthetic data,
Chinchilla's table reproduced from Epoch AI's digitised data, and the loss-optimal size."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from analysis.fits.core import ThroughputFit
from analysis.fits.errors import FitError
from analysis.fits.loss_law import (
    CHINCHILLA_GRID,
    HuberLogLoss,
    LossLawFit,
    StartGrid,
    fit_loss_law,
)
from analysis.fits.loss_optimum import loss_optimal_n

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CHINCHILLA_CSV = SHARED / "chinchilla" / "svg_extracted_data.csv"
# A small grid around plausible values keeps synthetic fits to a second.
SMALL_GRID = StartGrid(
    alpha=(0.0, 0.5, 1.0),
    beta=(0.0, 0.5, 1.0),
    e=(-1.0, 0.0, 1.0),
    a=(0.0, 5.0, 10.0),
    b=(0.0, 5.0, 10.0),
)


def law(
    n: np.ndarray, d: np.ndarray, *, E: float, A: float, alpha: float, B: float, beta: float
) -> np.ndarray:
    return E + A / n**alpha + B / d**beta


# ---------------------------------------------------------------------------------- loss law


def test_huber_objective_value_and_exact_gradient() -> None:
    rng = np.random.default_rng(3)
    delta = 1e-2
    log_n = np.log(np.geomspace(1e6, 1e9, 40))
    log_d = np.log(np.geomspace(1e8, 1e11, 40))[rng.permutation(40)]
    theta0 = np.array([6.0, 7.0, 0.5, 0.3, 0.4])

    def lse(theta: np.ndarray) -> np.ndarray:
        return np.log(
            np.exp(theta[0] - theta[3] * log_n)
            + np.exp(theta[1] - theta[4] * log_d)
            + np.exp(theta[2])
        )

    # Losses near the law at theta0, so residuals there fall both inside and outside the band.
    log_l = lse(theta0) + rng.uniform(-2 * delta, 2 * delta, 40)
    obj = HuberLogLoss(log_n, log_d, log_l, delta=delta)
    for theta in (
        theta0,
        np.array([1.0, 2.0, -0.5, 0.1, 0.05]),
        np.array([20.0, 15.0, 1.0, 1.5, 1.2]),
    ):
        value, grad = obj(theta)
        r = lse(theta) - log_l
        expected = sum(
            0.5 * x * x if abs(x) <= delta else delta * (abs(x) - 0.5 * delta) for x in r
        )
        assert value == pytest.approx(expected, rel=1e-10)
        h = 1e-6
        central = [(obj(theta + h * e)[0] - obj(theta - h * e)[0]) / (2 * h) for e in np.eye(5)]
        np.testing.assert_allclose(grad, central, rtol=1e-5, atol=1e-7 * np.abs(grad).max())
    r0 = lse(theta0) - log_l
    assert (np.abs(r0) < delta).any() and (np.abs(r0) > delta).any()


def test_loss_law_recovers_known_parameters_from_noisy_data() -> None:
    rng = np.random.default_rng(4)
    truth = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 1500.0, "beta": 0.28}
    grid_n, grid_d = np.meshgrid(np.geomspace(1e7, 1e10, 9), np.geomspace(1e8, 1e12, 9))
    n, d = grid_n.ravel(), grid_d.ravel()
    loss = law(n, d, **truth) * np.exp(rng.normal(0, 0.003, n.size))
    fit = fit_loss_law(n, d, loss, grid=SMALL_GRID)
    assert fit.E == pytest.approx(truth["E"], abs=0.08)
    assert fit.alpha == pytest.approx(truth["alpha"], abs=0.04)
    assert fit.beta == pytest.approx(truth["beta"], abs=0.03)
    assert math.log(fit.A) == pytest.approx(math.log(truth["A"]), abs=0.5)
    assert math.log(fit.B) == pytest.approx(math.log(truth["B"]), abs=0.5)
    assert fit.a == pytest.approx(fit.beta / (fit.alpha + fit.beta))
    assert fit.b == pytest.approx(1 - fit.a)
    assert fit.converged and fit.n_starts == 243 and fit.n_points == 81
    # The fitted surface predicts the noiseless law within the noise.
    np.testing.assert_allclose(fit.predict(n, d), law(n, d, **truth), rtol=0.01)
    assert set(fit.as_dict()) == {"E", "A", "B", "alpha", "beta", "a", "b"}


def test_starts_screened_on_many_points_find_the_full_grids_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Above ``SCREEN_POINTS`` points each start is screened by a few steps on a spread of the
    points and only the best distinct ones run on all (issue 27 #8: a 500-trial study's fit took
    minutes): on a well-determined law the winner is the full grid's, and the fit says how its
    starts ran. Fits on fewer points run every start, as before."""
    import analysis.fits.loss_law as loss_law

    rng = np.random.default_rng(5)
    truth = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 1500.0, "beta": 0.28}
    n = np.repeat(np.geomspace(1e7, 1e10, 20), 20)
    d = np.tile(np.geomspace(1e8, 1e12, 20), 20) * np.exp(rng.normal(0, 0.1, 400))
    loss = law(n, d, **truth) * np.exp(rng.normal(0, 0.003, n.size))
    screened = fit_loss_law(n, d, loss, grid=SMALL_GRID)
    assert screened.screened_on == loss_law.SCREEN_POINTS < n.size
    assert screened.n_starts == 243 and screened.n_converged <= loss_law.REFINE
    assert f"screened by {loss_law.SCREEN_STEPS} steps on 256 of the 400" in screened.search()
    monkeypatch.setattr(loss_law, "SCREEN_POINTS", n.size)  # every start on every point
    full = fit_loss_law(n, d, loss, grid=SMALL_GRID)
    assert full.screened_on == 0 and full.n_converged > loss_law.REFINE
    assert full.search() == f"best of 243 L-BFGS starts ({full.n_converged} converged)"
    assert screened.objective == pytest.approx(full.objective, rel=1e-8)
    for name in ("E", "A", "B", "alpha", "beta"):
        assert getattr(screened, name) == pytest.approx(getattr(full, name), rel=1e-4), name
    spread = loss_law._spread(np.log(n), np.log(d), 256)
    assert len(set(spread)) == 256 and len(set(n[spread])) == 20  # every size kept


def test_loss_law_hard_errors() -> None:
    with pytest.raises(FitError, match="at least 5 points"):
        fit_loss_law([1e6, 2e6, 3e6, 4e6], [1e8] * 4, [3.0] * 4)
    with pytest.raises(FitError, match="loss must be positive"):
        fit_loss_law([1e6] * 5, [1e8] * 5, [3.0, 3.0, 0.0, 3.0, 3.0])
    with pytest.raises(FitError, match="differ in length"):
        fit_loss_law([1e6] * 5, [1e8] * 6, [3.0] * 5)


@pytest.mark.slow
def test_chinchilla_table_reproduced_from_epoch_digitisation() -> None:
    """Besiroglu et al. (2024) Table: E 1.817 +- 0.026, A 482.0 +- 124.5, B 2085.4 +- 1293.3,
    alpha 0.348 +- 0.015, beta 0.366 +- 0.021; the full Chinchilla grid of starts."""
    import pandas as pd

    if not CHINCHILLA_CSV.is_file():
        pytest.skip(f"Epoch AI's Chinchilla data is not bundled; expected at {CHINCHILLA_CSV}")
    frame = pd.read_csv(CHINCHILLA_CSV)
    frame = frame.sort_values("loss").iloc[:-5]  # drop the 5 highest-loss points
    n = frame["Model Size"].to_numpy()
    d = frame["Training FLOP"].to_numpy() / (6 * n)
    fit = fit_loss_law(n, d, frame["loss"].to_numpy(), grid=CHINCHILLA_GRID)
    assert fit.n_points == 240 and fit.n_starts == 5400
    published = {
        "E": (1.817, 0.026),
        "A": (482.0, 124.5),
        "B": (2085.4, 1293.3),
        "alpha": (0.348, 0.015),
        "beta": (0.366, 0.021),
    }
    for name, (value, se) in published.items():
        assert abs(getattr(fit, name) - value) <= se, (name, getattr(fit, name), value, se)
    assert fit.converged and not fit.warnings
    assert fit.a == pytest.approx(0.51, abs=0.02)


# ------------------------------------------------------------------- loss-optimal prediction


def make_throughput(c: float, k: float) -> ThroughputFit:
    return ThroughputFit(
        c=c,
        k=k,
        r2=1.0,
        n_points=5,
        n_min=1e5,
        n_max=1e8,
        c_low=c,
        c_high=c,
        k_low=k,
        k_high=k,
        level=0.9,
        boot_c=(c,),
        boot_k=(k,),
    )


def make_law(*, E: float, A: float, B: float, alpha: float, beta: float) -> LossLawFit:
    return LossLawFit(
        E=E,
        A=A,
        B=B,
        alpha=alpha,
        beta=beta,
        a=beta / (alpha + beta),
        b=alpha / (alpha + beta),
        objective=0.0,
        delta=1e-3,
        n_points=100,
        n_starts=1,
        n_converged=1,
        converged=True,
        n_range=(1e5, 1e8),
        d_range=(1e6, 1e10),
    )


def test_loss_optimal_n_matches_closed_form() -> None:
    # L(N) = E + A N^-alpha + B (c t)^-beta N^(k beta); dL/dN = 0 at
    # N^(alpha + k beta) = alpha A / (k beta B (c t)^-beta).
    E, A, alpha, B, beta = 1.5, 60.0, 0.3, 100.0, 0.3
    c, k, budget = 3e8, 0.7, 300.0
    fit = make_law(E=E, A=A, B=B, alpha=alpha, beta=beta)
    best = loss_optimal_n(fit, make_throughput(c, k), budget=budget)
    expected = (alpha * A / (k * beta * B * (c * budget) ** -beta)) ** (1 / (alpha + k * beta))
    assert best.n_opt == pytest.approx(expected, rel=1e-4)
    assert best.tokens == pytest.approx(c * expected**-k * budget, rel=1e-3)
    assert best.loss == pytest.approx(float(fit.predict(expected, best.tokens)), rel=1e-8)
    assert best.tokens_per_param == pytest.approx(best.tokens / best.n_opt)
    assert not best.at_bound


def test_loss_optimal_n_flags_a_minimum_at_the_bound() -> None:
    # With throughput independent of size, bigger is always better: no interior optimum.
    fit = make_law(E=1.5, A=60.0, B=100.0, alpha=0.3, beta=0.3)
    best = loss_optimal_n(fit, make_throughput(1e5, 0.0), budget=300.0, n_bounds=(1e4, 1e9))
    assert best.at_bound
    assert best.n_opt == pytest.approx(1e9, rel=1e-2)
    assert best.warnings == (
        "the optimum sits at the search bound (1G): no interior minimum",
        "N_opt = 1G lies outside the sizes the loss law saw [100k, 100M]",
    )


def test_loss_law_results_are_frozen() -> None:
    fit = make_law(E=1.5, A=60.0, B=100.0, alpha=0.3, beta=0.3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.E = 2.0  # type: ignore[misc]


def test_degenerate_names_what_cannot_be_extrapolated() -> None:
    assert make_law(E=1.5, A=60.0, B=100.0, alpha=0.3, beta=0.3).degenerate() == ()
    bad = make_law(E=1.5, A=60.0, B=100.0, alpha=-0.1, beta=0.0)
    assert bad.degenerate() == (
        "alpha = -0.1 <= 0: a degenerate exponent",
        "beta = 0 <= 0: a degenerate exponent",
    )
    # Losses that fall as a pure power of N and D: the fit drives E to zero and says so.
    n, d = (g.ravel() for g in np.meshgrid(np.geomspace(1e6, 1e8, 5), np.geomspace(1e8, 1e10, 5)))
    fit = fit_loss_law(n, d, 60.0 * n**-0.3 + 100.0 * d**-0.3, grid=SMALL_GRID)
    assert fit.e_vanished and fit.degenerate()[-1].startswith("E = ")
    assert any("irreducible loss ran to zero" in w for w in fit.warnings)
