"""Vocabulary as a searchable dimension: every vocabulary a sweep can use is read from the sweep,
its tokenizer and token cache are built once in the parent before the first trial, and a
suggestion of a vocabulary that was not prepared is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from datastories import make_stories, write_text

from study.config import FixedTerms
from study.data import build, load_tokens
from study.errors import UsageError
from study.orchestra import runner
from study.orchestra.options import RunOptions
from study.orchestra.vocabularies import DEFAULT_EVAL_BYTES, study_eval_bytes
from sweeps import load_sweep

SWEEP = """
from study.config import ModelConfig, TrainConfig
{declare}
def suggest(trial):
    vocab = {vocab}
    return TrainConfig(
        model=ModelConfig(n_layer=1, d_model=32, n_head=2, vocab_size=vocab, seq_len=32),
        lr=trial.suggest_float("lr", 1e-3, 1e-2, log=True), batch_size=4, eval_tokens=256)
"""
CATEGORICAL = 'trial.suggest_categorical("vocab_size", [300, 400])'


def sweep_file(
    folder: Path, *, vocab: str = CATEGORICAL, declare: str = "", name: str = "v"
) -> str:
    path = folder / f"{name}.py"
    path.write_text(SWEEP.format(vocab=vocab, declare=declare))
    return str(path)


def probe(spec: str) -> tuple[int, ...]:
    return runner.probe_config(load_sweep(spec), FixedTerms(1.0, None, "cpu", 0))[2]


def test_vocabularies_come_from_the_declaration_or_the_categorical(tmp_path: Path) -> None:
    assert sorted(probe(sweep_file(tmp_path))) == [300, 400]
    assert probe(sweep_file(tmp_path, vocab="512", name="fixed")) == (512,)
    declared = sweep_file(tmp_path, vocab="300", declare="VOCAB_SIZES = (512, 300)", name="d")
    assert probe(declared) == (300, 512)  # the probe's own first
    assert probe(sweep_file(tmp_path, vocab=CATEGORICAL, name="c"))[0] in (300, 400)
    assert set(probe("modern")) == {1024, 2048, 4096}


@pytest.mark.parametrize(
    ("vocab", "declare", "message"),
    [
        ('trial.suggest_int("vocab_size", 300, 400)', "", "suggests vocab_size from a range"),
        ("300", "VOCAB_SIZES = (300, 100)", "VOCAB_SIZES: vocab_size must be between 257"),
        ("300", "VOCAB_SIZES = (400,)", "vocab_size 300, not one of the vocabularies it declares"),
        ("300", "VOCAB_SIZES = ()", "VOCAB_SIZES must be a non-empty tuple of integers"),
        ("300", "VOCAB_SIZES = ('300',)", "VOCAB_SIZES must be a non-empty tuple of integers"),
    ],
)
def test_bad_vocabulary_declarations_are_refused(
    tmp_path: Path, vocab: str, declare: str, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        probe(sweep_file(tmp_path, vocab=vocab, declare=declare))


def test_a_vocabulary_not_prepared_is_refused(tmp_path: Path) -> None:
    sweep = load_sweep(sweep_file(tmp_path, vocab="400", name="four"))
    trial = optuna.create_study().ask()
    fixed = FixedTerms(1.0, None, "cpu", 0, vocab_sizes=(300,))
    with pytest.raises(UsageError, match="suggested vocab_size 400, not one of the vocabularies"):
        sweep.build(trial, fixed)
    assert sweep.build(trial, FixedTerms(1.0, None, "cpu", 0, vocab_sizes=(300, 400)))


def test_every_vocabulary_is_built_once_before_the_first_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "corpus"
    data.mkdir()
    write_text(data / "train.txt", make_stories(200))
    write_text(data / "valid.txt", make_stories(20, seed=3))
    cache = tmp_path / "cache"
    trained: list[int] = []
    real_train = build.train_tokenizer

    def counting(source: Any, *, vocab_size: int) -> Any:
        trained.append(vocab_size)
        return real_train(source, vocab_size=vocab_size)

    monkeypatch.setattr(build, "train_tokenizer", counting)
    seen: list[dict[str, Any]] = []

    def workers(specs: list[Any], lock: Any, failures: Any) -> list[tuple[str, int]]:
        """Where the trials would start: every vocabulary must be there already."""
        before = list(trained)
        for vocab in (300, 400):  # each maps its cache; none trains a tokenizer
            load_tokens(str(data), vocab_size=vocab, cache_dir=cache, max_stories=200)
        assert trained == before
        seen.append({"trained": before, "fixed": specs[0].fixed})
        return []

    monkeypatch.setattr(runner, "run_workers", workers)
    opts = RunOptions(
        trials=1,
        budget=1.0,
        sweep=sweep_file(tmp_path),
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        data=str(data),
        device="cpu",
        cache_dir=str(cache),
        max_stories=200,
    )
    assert runner.run_study(opts) == 1  # no trial ran: the workers were stood in for
    assert sorted(seen[0]["trained"]) == [300, 400]  # one tokenizer each, in the parent
    assert sorted(seen[0]["fixed"].vocab_sizes) == [300, 400]
    assert seen[0]["fixed"].eval_bytes == DEFAULT_EVAL_BYTES  # one held-out text for both
    made = optuna.load_study(study_name="v", storage=opts.storage)
    assert made.user_attrs["objective"] == "bpb"  # valued in bits per byte (study.objective)
    assert made.metric_names == ["held-out bits per byte"]
    assert runner.run_study(opts) == 1  # resumed: nothing is built again
    assert seen[1]["trained"] == seen[0]["trained"] and sorted(trained) == [300, 400]


def test_a_study_of_several_vocabularies_scores_one_held_out_text(tmp_path: Path) -> None:
    fixed = FixedTerms(1.0, None, "cpu", 0)
    one = runner.probe_config(load_sweep(sweep_file(tmp_path, vocab="512", name="one")), fixed)
    assert study_eval_bytes(one[0], one[2]) is None  # a study of one: eval_tokens, as ever
    two = runner.probe_config(load_sweep(sweep_file(tmp_path)), fixed)
    assert study_eval_bytes(two[0], two[2]) == DEFAULT_EVAL_BYTES
    own = two[0].replace(eval_bytes=5000)  # a sweep that sets its own keeps it
    assert study_eval_bytes(own, two[2]) == 5000 and study_eval_bytes(own, (512,)) == 5000
    config = FixedTerms(1.0, None, "cpu", 0, eval_bytes=5000).apply(one[0])
    assert config.eval_bytes == 5000 and fixed.apply(one[0]).eval_bytes is None
