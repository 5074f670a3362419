"""sweeps.regularise: a grid of rung x (weight decay, dropout), walked cell by cell."""

from __future__ import annotations

import dataclasses

from test_sweeps import sample_configs

import sweeps.ladder_gpu as gpu
import sweeps.regularise as reg


def test_every_cell_once_before_any_twice_in_the_listed_order() -> None:
    n = len(reg.CELLS)
    assert n == len(reg.RUNGS) * len(reg.SETTINGS)
    found = sample_configs("regularise", n + 1)
    cells = [(c.model.d_model, c.weight_decay, c.model.dropout) for c in found]
    expected = [(gpu.config_for(rung).model.d_model, wd, do) for rung, wd, do in reg.CELLS.values()]
    assert cells[:n] == expected and len(set(cells[:n])) == n
    assert cells[n] == expected[0]


def test_a_cell_changes_only_the_regularisation_of_its_gpu_ladder_rung() -> None:
    for name, (rung, weight_decay, dropout) in reg.CELLS.items():
        assert reg.cell_name(rung, weight_decay, dropout) == name
        config, base = reg.config_for(name), gpu.config_for(rung)
        config.validate()
        assert (config.weight_decay, config.model.dropout) == (weight_decay, dropout)
        assert dataclasses.replace(config.model, dropout=base.model.dropout) == base.model
        assert config.replace(model=base.model, weight_decay=base.weight_decay) == base
    assert all(rung in gpu.SIZES for rung in reg.RUNGS)
