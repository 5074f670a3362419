from __future__ import annotations

from study.models import count_params
from sweeps import available, load_sweep
from sweeps.ladder_large import SIZES, config_for


def test_gpu_ladder_spans_the_gpu_crossover_range() -> None:
    assert "ladder_large" in available()
    assert load_sweep("ladder_large").sampler is not None
    params = [count_params(config_for(name).model).total for name in SIZES]
    assert len(SIZES) >= 8
    assert params == sorted(params) and len(set(params)) == len(params)
    assert params[-1] / params[0] >= 100
    assert params[-1] > 50e6  # a GPU's five-minute crossover lies in the tens of millions
    for name in SIZES:
        config = config_for(name)
        config.validate()
        assert config.model.d_model % config.model.n_head == 0
