"""The recipe sweeps of the five-minute answer: the CPU screen moves one setting of its
combination per cell, its ladder walks ten 1.4x sizes with the winning cell's settings, and the
H200 screen's finalist is one of its cells."""

from __future__ import annotations

import dataclasses
import math

import pytest

from study.config import TrainConfig
from sweeps import load_sweep, recipe_cpu, recipe_h200, recipe_h200_final, recipe_ladder_cpu
from sweeps.ladder_dense import LADDER as DENSE
from sweeps.ladders import lr_for


def _differences(a: TrainConfig, b: TrainConfig) -> set[str]:
    da, db = dataclasses.asdict(a), dataclasses.asdict(b)
    model = {f"model.{k}" for k in da["model"] if da["model"][k] != db["model"][k]}
    return {k for k in da if k != "model" and da[k] != db[k]} | model


def test_the_cpu_screen_combines_the_switches_that_paid_on_the_best_size() -> None:
    combo = recipe_cpu.config_for("muon+wsd+shortcut")
    combo.validate()
    plain = DENSE.config(recipe_cpu.RUNG)
    assert _differences(combo, plain) == {
        "optimizer",
        "schedule",
        "eval_bytes",
        "model.embed_shortcut",
    }
    assert (combo.optimizer, combo.schedule, combo.eval_bytes) == ("muon", "wsd", 262_144)


@pytest.mark.parametrize(
    ("cell", "changed"),
    [
        ("muon_lr 0.04", {"muon_lr"}),
        ("adam lr x2", {"lr"}),
        ("batch 16", {"batch_size"}),
        ("cooldown 0.8", {"cooldown_frac"}),
    ],
)
def test_each_cpu_screen_cell_moves_one_setting(cell: str, changed: set[str]) -> None:
    config = recipe_cpu.config_for(cell)
    config.validate()
    assert _differences(config, recipe_cpu.config_for("muon+wsd+shortcut")) == changed


def test_the_cpu_recipe_ladder_walks_ten_sizes_at_about_1_4x_with_the_winner() -> None:
    names = recipe_ladder_cpu.LADDER.names
    assert len(names) == 10 and names[3] == recipe_cpu.RUNG
    params = [recipe_ladder_cpu.config_for(n).model for n in names]
    assert params == [dataclasses.replace(DENSE.model(n), embed_shortcut=True) for n in names]
    winner = recipe_cpu.config_for(recipe_ladder_cpu.CELL)
    assert recipe_ladder_cpu.config_for(recipe_cpu.RUNG) == winner
    for name in names:
        config = recipe_ladder_cpu.config_for(name)
        config.validate()
        assert math.isclose(config.lr, 2 * lr_for(config.model.d_model))
        assert (
            _differences(config, dataclasses.replace(winner, model=config.model, lr=config.lr))
            == set()
        )


def test_the_h200_finalist_is_a_screen_cell_with_the_shortcut() -> None:
    assert recipe_h200_final.CELL in recipe_h200.CELLS
    for cell, (_rung, dropout) in recipe_h200.CELLS.items():
        config = recipe_h200.config_for(cell)
        config.validate()
        assert config.model.embed_shortcut and config.model.dropout == dropout
        assert config.weight_decay == 1.0 and config.eval_bytes == 262_144

    class Trial:
        def suggest_categorical(self, name: str, choices: list[str]) -> str:
            assert name == "cell" and choices == [recipe_h200_final.CELL]
            return choices[0]

    final = recipe_h200_final.suggest(Trial())
    assert final == recipe_h200.config_for(recipe_h200_final.CELL)


@pytest.mark.parametrize(
    "name", ["recipe_cpu", "recipe_ladder_cpu", "recipe_h200", "recipe_h200_final"]
)
def test_the_recipe_sweeps_load_by_name(name: str) -> None:
    sweep = load_sweep(name)
    assert sweep.name == name
