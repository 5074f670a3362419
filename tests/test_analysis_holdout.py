"""The held-out check on synthetic ladders: a true law comes true on the held-out sizes, a
degenerate or under-determined fit gives reasons instead of numbers."""

from __future__ import annotations

import json
import re
from typing import TypedDict

import numpy as np
import pytest

from analysis.fits.errors import FitError
from analysis.fits.holdout import holdout_check
from analysis.fits.loss_law import StartGrid

SMALL_GRID = StartGrid(
    alpha=(0.0, 0.5, 1.0),
    beta=(0.0, 0.5, 1.0),
    e=(-1.0, 0.0, 1.0),
    a=(0.0, 5.0, 10.0),
    b=(0.0, 5.0, 10.0),
)
E, A, ALPHA, B, BETA = 1.5, 60.0, 0.3, 100.0, 0.3
C, K, BUDGET = 3e8, 0.7, 300.0  # tokens/s = C N^-K; the true best size is 2.05e6
FRACTIONS = np.array([0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0])


class Points(TypedDict):
    """holdout_check's array arguments, by name."""

    params: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray
    final: np.ndarray
    tokens_per_second: np.ndarray


def ladder(
    sizes: np.ndarray,
    *,
    noise: float = 0.002,
    seed: int = 0,
    alpha: float = ALPHA,
    unique: float | None = None,
) -> Points:
    """Curve points at eighths of the budget and the final point, per size, from the law."""
    rng = np.random.default_rng(seed)
    n = np.repeat(sizes, FRACTIONS.size)
    tps = C * n**-K
    d = tps * BUDGET * np.tile(FRACTIONS, sizes.size)
    if unique is None:
        loss = E + A * n**-alpha + B * d**-BETA
    else:  # repeated data: tokens beyond the corpus count as in Muennighoff et al.
        eff = np.where(d <= unique, d, unique * (1 + 15.4 * -np.expm1(-(d / unique - 1) / 15.4)))
        loss = E + A * n**-alpha + B * eff**-BETA
    return {
        "params": n,
        "tokens": d,
        "loss": loss * np.exp(rng.normal(0, noise, n.size)),
        "final": np.tile(FRACTIONS == 1.0, sizes.size),
        "tokens_per_second": tps,
    }


@pytest.mark.slow
def test_true_law_predicts_the_two_largest_sizes() -> None:
    sizes = np.geomspace(1e5, 3e7, 8)
    points = ladder(sizes)
    result = holdout_check(**points, budget=BUDGET, grid=SMALL_GRID)
    assert result.trusted and result.mode == "largest-2"
    assert result.fit_sizes == tuple(sizes[:6]) and result.n_fit_points == 48
    assert [h.params for h in result.held_out] == list(sizes[6:])
    for held in result.held_out:
        assert held.relative_error is not None and abs(held.relative_error) < 0.02
        assert held.predicted == pytest.approx(held.measured, rel=0.02)
    assert result.law is not None and result.law.form == "chinchilla"
    assert "not recorded" in result.law.reason  # no unique tokens given: said, not silent
    measured_best = sizes[int(np.argmin(points["loss"][points["final"]]))]
    assert result.best.measured == measured_best
    assert result.best.ladder_pick == measured_best
    assert result.best.optimum == pytest.approx(2.05e6, rel=0.3)
    json.dumps(result.as_dict())  # plain data all the way down


def test_around_best_holds_out_the_best_and_its_better_neighbour() -> None:
    sizes = np.geomspace(1e5, 3e7, 8)
    result = holdout_check(**ladder(sizes), budget=BUDGET, around_best=True, grid=SMALL_GRID)
    held = [h.params for h in result.held_out]
    assert result.mode == "around-best" and len(held) == 2
    assert result.best.measured in held
    assert 1.0 < held[1] / held[0] < 2.3  # neighbours on the ladder
    assert result.trusted
    assert all(abs(h.relative_error or 1.0) < 0.02 for h in result.held_out)


def test_degenerate_fit_gives_reasons_not_numbers() -> None:
    # Loss that grows with size (negative alpha): nothing to extrapolate.
    result = holdout_check(
        **ladder(np.geomspace(1e5, 3e7, 8), alpha=-0.1), budget=BUDGET, grid=SMALL_GRID
    )
    assert not result.trusted
    assert any("degenerate exponent" in why for why in result.untrusted)
    assert all(h.predicted is None and h.relative_error is None for h in result.held_out)
    assert result.best.ladder_pick is None and result.best.optimum is None
    held = result.as_dict()["held_out"]
    assert isinstance(held, list) and held[0]["predicted"] is None


def test_too_few_sizes_left_to_fit() -> None:
    result = holdout_check(**ladder(np.geomspace(1e5, 1e7, 4)), budget=BUDGET, grid=SMALL_GRID)
    assert not result.trusted and result.law is None
    assert result.untrusted == ("only 2 sizes left to fit; the law needs at least 3",)
    with pytest.raises(FitError, match="k must be between 1 and"):
        holdout_check(**ladder(np.geomspace(1e5, 1e7, 4)), k=4)


@pytest.mark.slow
def test_optimum_on_the_search_bound_is_not_a_number() -> None:
    points = ladder(np.geomspace(1e5, 3e7, 8))
    points["tokens_per_second"] = np.full_like(points["params"], 1e6)  # no cost to size
    result = holdout_check(**points, budget=BUDGET, grid=SMALL_GRID)
    assert result.trusted and result.best.optimum is None
    # The bound reads as a size (5.88G), never 5.88e+09.
    assert len(result.best.why_not) == 1
    assert re.fullmatch(
        r"the optimum sits on the search bound \(\d+(\.\d+)?[kMG]\): the law "
        r"has no interior best size",
        result.best.why_not[0],
    )


@pytest.mark.slow
def test_repeated_ladder_uses_the_data_constrained_law() -> None:
    sizes = np.geomspace(1e5, 3e7, 8)
    unique = 3e6  # the smallest size sees ~9 epochs, the largest under one
    points = ladder(sizes, unique=unique)
    result = holdout_check(
        **points, unique=np.full_like(points["params"], unique), budget=BUDGET, grid=SMALL_GRID
    )
    assert result.law is not None and result.law.form == "data-constrained"
    assert "beyond 4 epochs" in result.law.reason
    assert result.trusted
    assert all(abs(h.relative_error or 1.0) < 0.03 for h in result.held_out)
