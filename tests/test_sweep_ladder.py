"""sweeps.ladder: the CPU size ladder spans thirty-fold in parameters and is walked evenly."""

from __future__ import annotations

from test_sweeps import sample_configs

from study.models import count_params
from sweeps.ladder import SIZES, config_for, lr_for


def test_ladder_spans_thirty_fold_in_parameters() -> None:
    params = [count_params(config_for(name).model).total for name in SIZES]
    assert len(SIZES) >= 8
    assert params == sorted(params) and len(set(params)) == len(params)
    assert params[-1] / params[0] >= 30
    assert 0.05e6 < params[0] < 0.2e6 and 5e6 < params[-1] < 20e6


def test_ladder_sampler_walks_the_sizes_evenly() -> None:
    found = sample_configs("ladder", 2 * len(SIZES) + 1)
    order = [(c.model.n_layer, c.model.d_model) for c in found]
    assert order[: len(SIZES)] == list(SIZES.values())  # smallest first, each once
    assert order[len(SIZES) : 2 * len(SIZES)] == list(SIZES.values())
    assert order[-1] == next(iter(SIZES.values()))
    assert [c.lr for c in found[: len(SIZES)]] == [lr_for(d) for _, d in SIZES.values()]


def test_ladder_rungs_keep_the_models_stored_studies_were_made_with() -> None:
    """Stored trials hold only ``size``: a rung must keep meaning the same model."""
    assert list(SIZES) == [
        "L1-d24",
        "L1-d32",
        "L2-d48",
        "L2-d64",
        "L3-d96",
        "L4-d128",
        "L4-d192",
        "L5-d256",
        "L6-d320",
    ]
    model = config_for("L4-d128").model
    assert (
        model.arch,
        model.n_layer,
        model.d_model,
        model.n_head,
        model.pos,
        model.mlp,
        model.vocab_size,
        model.seq_len,
    ) == ("gpt", 4, 128, 4, "rope", "swiglu", 4096, 256)
    assert config_for("L4-d128").lr == lr_for(128)
