"""What a study minimises (``study.objective``): held-out perplexity in a study of one
vocabulary, as always; bits per byte in a study of several, the value the sampler sees and the
pruner compares (intermediate values too), recorded as the study term ``objective``; and the
analysis reads each study's values as what they are."""

from __future__ import annotations

import math
import multiprocessing
from pathlib import Path
from typing import Any

import optuna
import pytest
from studyrun import make_result

from analysis.load import load_study
from analysis.selection import metric_values
from study.config import FixedTerms
from study.errors import UsageError
from study.orchestra import runner, worker
from study.orchestra.job import Outcome
from study.orchestra.worker import Worker, WorkerSpec
from study.storage.optuna_store import SharedStudy
from study.storage.schema import curve_step

SWEEP = """
from study.config import ModelConfig, TrainConfig
def suggest(trial):
    vocab = trial.suggest_categorical("vocab_size", {vocabs})
    return TrainConfig(
        model=ModelConfig(n_layer=1, d_model=32, n_head=2, vocab_size=vocab, seq_len=32),
        lr=1e-3, batch_size=4, eval_tokens=256, curve_points=2)
"""
# Each trial's curve: point 1 of 2, then the final evaluation (which closes it).
EVENTS = (
    {"kind": "curve", "frac": 0.5, "val_loss": 5.1, "val_bpb": 2.5},
    {"kind": "final", "frac": 1.0, "val_loss": 4.2, "val_bpb": 2.0},
)


def run_one_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, vocabs: tuple[int, ...], terms: dict
) -> str:
    """One trial of a study of ``vocabs`` through a real worker, its trainer stood in for by
    ``EVENTS`` and ``make_result``; the study's storage URL."""
    (tmp_path / "v.py").write_text(SWEEP.format(vocabs=list(vocabs)))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    shared = SharedStudy.create(storage, "s")
    for key, value in terms.items():
        shared.tag(key, value)

    def job(config: Any, *, on_curve: Any, **_: Any) -> Outcome:
        for event in EVENTS:
            on_curve(dict(event))
        return Outcome("complete", result=make_result())

    monkeypatch.setattr(worker, "run_job", job)
    spec = WorkerSpec(
        storage=storage,
        study_name="s",
        sweep=str(tmp_path / "v.py"),
        fixed=FixedTerms(2.0, None, "cpu", 0, vocab_sizes=vocabs),
        trials=1,
        max_failures=1,
        pruner="median",
        curve_points=2,
        sampler_seed=0,
    )
    ctx = multiprocessing.get_context("spawn")
    Worker(spec, ctx.Lock(), ctx.Value("i", 0)).run()
    return storage


def test_a_study_of_several_vocabularies_minimises_bits_per_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = run_one_trial(tmp_path, monkeypatch, vocabs=(300, 400), terms={"objective": "bpb"})
    (trial,) = optuna.load_study(study_name="s", storage=storage).trials
    assert trial.value == 2.0 == trial.user_attrs["val_bpb"]  # not its perplexity, 66.7
    assert trial.intermediate_values == {
        curve_step(1, budget=2.0, curve_points=2): 2.5,
        curve_step(2, budget=2.0, curve_points=2): 2.0,
    }
    data = load_study(storage, "s")
    assert data.objective == "bpb" and list(data.trials["objective"]) == ["bpb"]
    frame = data.trials.assign(val_ppl=math.nan, val_bpb=math.nan)  # attributes missing
    assert metric_values(frame, "bpb").tolist() == [2.0]  # the value stands in for its own
    assert metric_values(frame, "ppl").isna().all()  # and never for the other metric


def test_a_study_of_one_vocabulary_minimises_perplexity_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = run_one_trial(tmp_path, monkeypatch, vocabs=(300,), terms={})
    study = optuna.load_study(study_name="s", storage=storage)
    (trial,) = study.trials
    assert "objective" not in study.user_attrs
    assert trial.value == 66.7  # its perplexity (make_result), not its bits per byte
    assert trial.intermediate_values == {
        curve_step(1, budget=2.0, curve_points=2): pytest.approx(math.exp(5.1)),
        curve_step(2, budget=2.0, curve_points=2): pytest.approx(math.exp(4.2)),
    }
    data = load_study(storage, "s")
    assert data.objective == "ppl"
    frame = data.trials.assign(val_ppl=math.nan)
    assert metric_values(frame, "ppl").tolist() == [66.7]


def test_a_study_valued_in_perplexity_is_not_continued_in_bits_per_byte(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    shared = SharedStudy.create(storage, "s")
    shared.study.add_trial(optuna.trial.create_trial(value=66.7))
    with pytest.raises(UsageError, match="valued its trials in held-out perplexity"):
        runner.check_objective(shared, {"objective": "bpb"}, study_name="s")
    runner.check_objective(shared, {}, study_name="s")  # one that has the term goes on


def test_the_shipped_studies_read_as_perplexity() -> None:
    data = load_study("sqlite:///" + str(Path(__file__).resolve().parents[1] / "study.db"), None)
    assert data.objective == "ppl"
    complete = data.complete()
    assert (complete["value"] == complete["val_ppl"]).all()
