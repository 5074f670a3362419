"""Search spaces: loading by name or file, the default space's ranges, the ladder's sizes."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from study.config import TrainConfig
from study.errors import UsageError
from study.models import count_params
from sweeps import available, load_sweep
from sweeps.ladder import SIZES, config_for

BASE = {"budget": 30.0, "data": "corpus.txt", "device": "cpu", "seed": 7}


def configs(name: str, n: int) -> list[TrainConfig]:
    sweep = load_sweep(name)
    sampler = (sweep.sampler(seed=0) if sweep.sampler is not None
               else optuna.samplers.RandomSampler(seed=0))
    study = optuna.create_study(sampler=sampler)
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(sweep.build(trial, **BASE))
        study.tell(trial, 1.0)
    return out


def test_shipped_sweeps_are_listed_and_load() -> None:
    assert {"default", "ladder"} <= set(available())
    assert load_sweep("default").name == "default" and load_sweep("default").sampler is None
    assert load_sweep("ladder").sampler is not None


def test_default_space_covers_its_ranges_with_valid_configs() -> None:
    found = configs("default", 60)
    for c in found:
        c.validate()
        assert (c.budget, c.data, c.device, c.seed) == (30.0, "corpus.txt", "cpu", 7)
        assert 1 <= c.model.n_layer <= 6 and 1e-4 <= c.lr <= 1e-2
        assert c.model.d_model % c.model.n_head == 0
    assert {c.model.pos for c in found} == {"learned", "rope"}
    assert {c.model.mlp for c in found} == {"swiglu", "gelu"}
    assert {c.model.n_layer for c in found} == set(range(1, 7))
    widths = sorted({c.model.d_model for c in found})
    assert widths[0] <= 96 and widths[-1] >= 512
    lrs = [math.log10(c.lr) for c in found]
    assert min(lrs) < -3.3 and max(lrs) > -2.7  # log-uniform: both decades reached


def test_ladder_spans_thirty_fold_in_parameters() -> None:
    params = [count_params(config_for(name).model).total for name in SIZES]
    assert len(SIZES) >= 8
    assert params == sorted(params) and len(set(params)) == len(params)
    assert params[-1] / params[0] >= 30
    assert 0.05e6 < params[0] < 0.2e6 and 5e6 < params[-1] < 20e6


def test_ladder_sampler_walks_the_sizes_evenly() -> None:
    found = configs("ladder", 2 * len(SIZES) + 1)
    order = [(c.model.n_layer, c.model.d_model) for c in found]
    assert order[:len(SIZES)] == list(SIZES.values())  # smallest first, each once
    assert order[len(SIZES):2 * len(SIZES)] == list(SIZES.values())
    assert order[-1] == next(iter(SIZES.values()))


def test_sweep_file_is_loaded_and_base_fields_win(tmp_path: Path) -> None:
    path = tmp_path / "mine.py"
    path.write_text(
        "from study.config import TrainConfig\n"
        "def suggest(trial):\n"
        "    return TrainConfig(lr=trial.suggest_float('lr', 1e-3, 2e-3), budget=999.0)\n")
    sweep = load_sweep(str(path))
    assert sweep.name == "mine" and sweep.spec == str(path.resolve())
    config = sweep.build(optuna.create_study().ask(), **BASE)
    assert config.budget == 30.0 and 1e-3 <= config.lr <= 2e-3


@pytest.mark.parametrize(("text", "message"), [
    ("x = 1\n", "does not define a function suggest"),
    ("raise ImportError('no such thing')\n", "failed to load: ImportError: no such thing"),
    ("def suggest(trial):\n    return {'lr': 1.0}\n", "must return a TrainConfig, got dict"),
    ("from study.config import TrainConfig\n"
     "def suggest(trial):\n    return TrainConfig(lr=-1.0)\n", "lr must be a positive"),
    ("def suggest(trial):\n    return 1 / 0\n", "suggest failed: ZeroDivisionError"),
])
def test_bad_sweep_files_are_usage_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.py"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        load_sweep(str(path)).build(optuna.create_study().ask(), **BASE)


def test_unknown_sweep_name_lists_the_choices() -> None:
    with pytest.raises(UsageError, match="unknown sweep 'nope'; choose one of .*default, ladder"):
        load_sweep("nope")
