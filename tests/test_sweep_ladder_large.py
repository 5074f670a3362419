"""sweeps.ladder_large: the GPU size ladder brackets a GPU's five-minute crossover."""

from __future__ import annotations

import pytest

from study.models import count_params
from sweeps import available, load_sweep
from sweeps.ladder_large import SIZES, config_for
from sweeps.ladders import lr_for


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


def test_gpu_ladder_rungs_keep_the_models_stored_studies_were_made_with() -> None:
    """Stored trials hold only ``size``: a rung must keep meaning the same model."""
    assert list(SIZES) == [
        "L2-d64",
        "L3-d128",
        "L4-d192",
        "L4-d256",
        "L6-d320",
        "L6-d448",
        "L6-d640",
        "L8-d768",
    ]
    model = config_for("L8-d768").model
    assert (model.n_layer, model.d_model, model.n_head, model.pos, model.mlp) == (
        8,
        768,
        12,
        "rope",
        "swiglu",
    )
    assert config_for("L8-d768").lr == lr_for(768) == pytest.approx(3e-3 / 3**0.5)
