"""sweeps (the package): loading a sweep by name or file, building its configs, the shared
balanced sampler. Each shipped sweep has its own file (tests/test_sweep_<name>.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import optuna
import pytest

from study.config import FixedTerms, TrainConfig
from study.errors import UsageError
from sweeps import available, balanced_sampler, load_sweep

FIXED = FixedTerms(budget=30.0, data="corpus.txt", device="cpu", seed=7)


def sample_configs(name: str, n: int) -> list[TrainConfig]:
    """The first ``n`` configs sweep ``name`` gives a fresh study (its sampler, seed 0)."""
    sweep = load_sweep(name)
    sampler = (
        sweep.sampler(seed=0)
        if sweep.sampler is not None
        else optuna.samplers.RandomSampler(seed=0)
    )
    study = optuna.create_study(sampler=sampler)
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(sweep.build(trial, FIXED))
        study.tell(trial, 1.0)
    return out


def test_shipped_sweeps_are_listed_and_load() -> None:
    assert set(available()) == {
        "archs",
        "default",
        "ladder",
        "ladder_dense",
        "ladder_gpu",
        "ladder_large",
        "modern",
        "positions",
        "recipe_cpu",
        "recipe_h200",
        "recipe_h200_final",
        "recipe_ladder_cpu",
        "regularise",
    }
    assert load_sweep("default").name == "default" and load_sweep("default").sampler is None
    ladder = load_sweep("ladder")
    assert ladder.sampler is not None
    sampler = ladder.sampler(seed=0)
    assert isinstance(sampler, optuna.samplers.BaseSampler)
    assert not isinstance(sampler, optuna.samplers.TPESampler)  # the ladder's own, not the default


def test_the_ladder_factory_is_not_a_sweep() -> None:
    with pytest.raises(UsageError, match="unknown sweep 'ladders'"):
        load_sweep("ladders")


def first_params(sampler: Any, n: int) -> list[dict[str, Any]]:
    """The params of the first ``n`` trials ``sampler`` gives a study with a categorical and a
    float parameter."""
    study = optuna.create_study(sampler=sampler)
    found = []
    for _ in range(n):
        trial = study.ask()
        trial.suggest_categorical("cell", ["a", "b", "c"])
        trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        found.append(trial.params)
        study.tell(trial, 1.0)
    return found


def test_balanced_sampler_walks_the_choices_and_repeats_with_its_seed() -> None:
    first = first_params(balanced_sampler("cell", seed=3), 7)
    assert [p["cell"] for p in first] == ["a", "b", "c", "a", "b", "c", "a"]
    assert first == first_params(balanced_sampler("cell", seed=3), 7)  # same seed, same trials
    other = first_params(balanced_sampler("cell", seed=4), 7)
    assert [p["cell"] for p in other] == [p["cell"] for p in first]
    assert [p["lr"] for p in other] != [p["lr"] for p in first]  # the seed reaches the rest
    assert len({p["lr"] for p in first}) == 7 and all(1e-4 <= p["lr"] <= 1e-2 for p in first)


def test_balanced_sampler_counts_failed_and_running_trials() -> None:
    study = optuna.create_study(sampler=balanced_sampler("cell", seed=0))
    failed = study.ask()
    failed.suggest_categorical("cell", ["a", "b"])
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    running = study.ask()
    assert running.suggest_categorical("cell", ["a", "b"]) == "b"
    assert study.ask().suggest_categorical("cell", ["a", "b"]) == "a"


def test_sweep_file_is_loaded_and_base_fields_win(tmp_path: Path) -> None:
    path = tmp_path / "mine.py"
    path.write_text(
        "from study.config import TrainConfig\n"
        "def suggest(trial):\n"
        "    return TrainConfig(lr=trial.suggest_float('lr', 1e-3, 2e-3), budget=999.0)\n"
    )
    sweep = load_sweep(str(path))
    assert sweep.name == "mine" and sweep.spec == str(path.resolve())
    config = sweep.build(optuna.create_study().ask(), FIXED)
    assert config.budget == 30.0 and 1e-3 <= config.lr <= 2e-3
    assert (config.data, config.device, config.seed) == ("corpus.txt", "cpu", 7)


def test_fixed_terms_size_the_corpus_only_once_it_is_sized() -> None:
    suggested = TrainConfig(max_stories=500, budget=999.0)
    probe = FIXED.apply(suggested)  # before the token cache is sized: the suggestion's own
    assert probe.max_stories == 500 and probe.budget == 30.0
    sized = dataclasses.replace(FIXED, max_stories=1234)
    assert sized.apply(suggested).max_stories == 1234
    with pytest.raises(dataclasses.FrozenInstanceError):
        FIXED.budget = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x = 1\n", "does not define a function suggest"),
        ("raise ImportError('no such thing')\n", "failed to load: ImportError: no such thing"),
        ("def suggest(trial):\n    return {'lr': 1.0}\n", "must return a TrainConfig, got dict"),
        (
            "from study.config import TrainConfig\n"
            "def suggest(trial):\n    return TrainConfig(lr=-1.0)\n",
            "lr must be a positive",
        ),
        ("def suggest(trial):\n    return 1 / 0\n", "suggest failed: ZeroDivisionError"),
    ],
)
def test_bad_sweep_files_are_usage_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.py"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        load_sweep(str(path)).build(optuna.create_study().ask(), FIXED)


def test_unknown_sweep_name_lists_the_choices() -> None:
    with pytest.raises(UsageError, match="unknown sweep 'nope'; choose one of .*default, ladder"):
        load_sweep("nope")
