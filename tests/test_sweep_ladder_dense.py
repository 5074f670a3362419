"""sweeps.ladder_dense and sweeps.ladder_gpu: the 1.4x CPU ladder and the regularised GPU ladder."""

from __future__ import annotations

import math
from types import ModuleType

import pytest
from test_sweeps import sample_configs

import sweeps.ladder as ladder
import sweeps.ladder_dense as dense
import sweeps.ladder_gpu as gpu
from study.config import TrainConfig
from study.models import count_params
from sweeps.ladders import Ladder, lr_for


def totals(module: ModuleType) -> list[float]:
    return [count_params(module.config_for(name).model).total for name in module.SIZES]


def test_dense_ladder_steps_by_about_1_4x_from_0_1m_to_4m() -> None:
    params = totals(dense)
    assert len(params) >= 10
    steps = [b / a for a, b in zip(params, params[1:], strict=False)]
    assert all(1.2 < step < 1.6 for step in steps), steps
    assert math.exp(sum(map(math.log, steps)) / len(steps)) == pytest.approx(1.41, abs=0.05)
    assert 0.08e6 < params[0] < 0.12e6 and 3e6 < params[-1] < 4.5e6


def test_dense_ladder_rungs_named_like_ladder_are_the_same_models() -> None:
    shared = set(dense.SIZES) & set(ladder.SIZES)
    assert len(shared) >= 6
    for name in shared:
        assert dense.config_for(name) == ladder.config_for(name)


def test_dense_ladder_is_walked_smallest_first_with_the_default_weight_decay() -> None:
    found = sample_configs("ladder_dense", len(dense.SIZES))
    assert [(c.model.n_layer, c.model.d_model) for c in found] == list(dense.SIZES.values())
    assert {c.weight_decay for c in found} == {TrainConfig().weight_decay}
    assert {c.model.dropout for c in found} == {0.0}


def test_gpu_ladder_spans_0_3m_to_30m_at_weight_decay_1() -> None:
    params = totals(gpu)
    assert len(params) >= 10
    assert params == sorted(params)
    assert 0.3e6 < params[0] < 0.4e6 and 30e6 < params[-1] < 35e6
    found = sample_configs("ladder_gpu", len(gpu.SIZES))
    assert [(c.model.n_layer, c.model.d_model) for c in found] == list(gpu.SIZES.values())
    assert {c.weight_decay for c in found} == {1.0}
    assert [c.lr for c in found] == [lr_for(d) for _, d in gpu.SIZES.values()]


def test_a_ladder_carries_its_regularisation_to_every_rung() -> None:
    plain = Ladder({"a": (2, 64)})
    strong = Ladder({"a": (2, 64)}, weight_decay=2.0, dropout=0.15)
    assert plain.config("a").weight_decay == TrainConfig().weight_decay
    assert plain.config("a").model.dropout == 0.0
    config = strong.config("a")
    assert (config.weight_decay, config.model.dropout) == (2.0, 0.15)
    assert config.model.d_model == plain.config("a").model.d_model
    config.validate()
