"""``study.orchestra.worker``: a trial's user attributes, and a worker whose trial another machine wrote
off while it trained (it drops that trial quietly and goes on with the study)."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from studyrun import fake_trainer, make_result, view, write_sweep

from study.config import FixedTerms
from study.orchestra.optuna_setup import make_pruner
from study.orchestra.worker import WorkerSpec, run_worker
from study.result import TRIAL_ATTRS, TrainResult, trial_attrs
from study.storage import pending, stale
from study.storage.optuna_store import SharedStudy
from study.storage.schema import curve_step
from study.storage.store import StorageGone
from study.storage.study_lock import StudyLock


def test_trial_attrs_are_exactly_the_schema() -> None:
    attrs = trial_attrs(make_result())
    assert list(attrs) == list(TRIAL_ATTRS)
    fields = {f.name for f in dataclasses.fields(TrainResult)}
    from_config = {"arch", "n_layer", "d_model", "n_head", "pos", "mlp", "lr", "budget", "seed"}
    assert set(TRIAL_ATTRS) - fields == from_config  # every other name is a result field
    assert attrs["d_model"] == 64 and attrs["budget"] == 2.0 and attrs["batch_size"] == 4


def _wait_for(predicate: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("noticed_by", ["report", "heartbeat"])
@pytest.mark.slow
def test_a_trial_written_off_underneath_its_worker_is_dropped_and_the_study_goes_on(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    noticed_by: str,
) -> None:
    """Another machine fails the trial this worker trains as stale (as when the worker was
    stopped past the grace period). The worker notices at its next report or heartbeat, stops
    the child, counts no failure, and trains the queued retry to completion."""
    if noticed_by == "heartbeat":
        monkeypatch.setattr(stale, "HEARTBEAT_S", 0.0)  # beat at every poll
    url, name = f"sqlite:///{tmp_path / 'study.db'}", "tiny"
    SharedStudy.create(url, name)
    fake, go = fake_trainer(tmp_path), tmp_path / "go"
    spec = WorkerSpec(
        storage=url,
        study_name=name,
        sweep=str(write_sweep(tmp_path)),
        fixed=FixedTerms(budget=2.0, data=None, device="cpu", seed=0),
        trials=1,
        max_failures=1,
        pruner="none",
        curve_points=2,
        sampler_seed=0,
        train_command=fake.command,
        env={**fake.env, "FAKE_MODE": "wait", "FAKE_GO": str(go)},
    )
    ctx = multiprocessing.get_context("spawn")
    failures = ctx.Value("i", 0)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            run_worker(spec, ctx.Lock(), failures)
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    _wait_for(fake.pidfile.exists, "the trainer child")
    other = SharedStudy.load(url, name)  # another machine's view of the study
    assert other.trials()[0].state == TrialState.RUNNING
    with StudyLock(url, name):  # as every recoverer does
        assert stale.fail_and_retry(other, 0, reason="stale: no heartbeat from worker h:1 for 130s")
    if noticed_by == "heartbeat":
        time.sleep(1.0)  # the child is still waiting: only a heartbeat can notice
    go.touch()
    worker.join(60)
    assert not worker.is_alive() and errors == []

    v = view(url, name)
    assert [t.state for t in v.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert v.trials[0].user_attrs["fail_reason"].startswith("stale: no heartbeat")
    assert v.trials[1].user_attrs["retry_of"] == 0
    assert v.trials[1].params == v.trials[0].params
    assert set(v.curve) == set(v.sample) == {1}  # nothing kept of the dropped trial
    assert failures.value == 0
    out = capsys.readouterr().out
    assert "trial 0 was failed as stale by another worker and queued again" in out
    assert "trial 1 complete: ppl 66.70" in out


def test_curve_steps_are_budget_seconds_and_never_repeat() -> None:
    assert [curve_step(k, budget=300.0, curve_points=20) for k in (1, 2, 20)] == [15, 30, 300]
    assert [curve_step(k, budget=1.0, curve_points=4) for k in range(1, 5)] == [1, 2, 3, 4]
    assert [curve_step(k, budget=6.0, curve_points=4) for k in range(1, 5)] == [2, 3, 4, 6]


def _pruned_at(name: str, *, trials: int, bad: set[int]) -> dict[int, int | None]:
    """Run ``trials`` trials of 4 curve points over a 300 s budget through pruner ``name``, the
    ``bad`` ones ten times worse; the step each was pruned at (None: ran to the end)."""
    steps = [curve_step(k, budget=300.0, curve_points=4) for k in range(1, 5)]
    # A fixed name: Hyperband assigns trials to brackets by a hash of the study name and the
    # trial number, and an unnamed study gets a random name.
    study = optuna.create_study(
        study_name="pruner-steps", pruner=make_pruner(name, curve_points=4, budget=300.0)
    )
    pruned_at: dict[int, int | None] = {}
    for i in range(trials):
        trial, scale = study.ask(), (100.0 if i in bad else 10.0) - 0.01 * i
        pruned_at[i] = None
        for k, step in enumerate(steps[:-1], 1):
            trial.report(scale / k, step)
            if trial.should_prune():
                pruned_at[i] = step
                break
        if pruned_at[i] is None:
            trial.report(scale / 4, steps[-1])
            study.tell(trial, scale / 4)
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return pruned_at


def test_pruners_compare_trials_at_the_same_budget_second() -> None:
    """Intermediate values are keyed by budget seconds (what Optuna's dashboard plots); the
    median pruner still waits a quarter of the budget and then stops the bad trials, and
    hyperband's rungs fall on those steps."""
    bad = {10, 12, 14, 16, 18}
    median = _pruned_at("median", trials=20, bad=bad)
    assert median == {i: 75 if i in bad else None for i in range(20)}
    hyperband = _pruned_at("hyperband", trials=20, bad=bad)
    assert all(hyperband[i] in (75, 150, 225) for i in bad), hyperband


@pytest.mark.slow
def test_a_result_the_database_cannot_take_is_kept_and_recorded_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database stays away past the patience just as a trained trial is recorded: the
    worker keeps the result in a pending file and stops with StorageGone, the trial RUNNING;
    the next worker (here ``pending.record``, as ``_next_trial`` and ``open_study`` call it)
    records it whole - value, attributes, rows, curve steps - without training it again."""
    url, name = f"sqlite:///{tmp_path / 'study.db'}", "tiny"
    SharedStudy.create(url, name)
    fake = fake_trainer(tmp_path)
    spec = WorkerSpec(
        storage=url,
        study_name=name,
        sweep=str(write_sweep(tmp_path)),
        fixed=FixedTerms(budget=2.0, data=None, device="cpu", seed=0),
        trials=1,
        max_failures=1,
        pruner="none",
        curve_points=2,
        sampler_seed=0,
        train_command=fake.command,
        cache_dir=str(tmp_path / "cache"),
        env={**fake.env, "FAKE_MODE": "ok"},
    )

    def away(self: SharedStudy, *args: object, **kwargs: object) -> None:
        raise StorageGone(
            "could not write the rows of trial 0: the database did not answer "
            "for 300s (connection refused)"
        )

    monkeypatch.setattr(SharedStudy, "complete", away)
    monkeypatch.setattr(SharedStudy, "report_point", away)  # away while it trained, too
    ctx = multiprocessing.get_context("spawn")
    with pytest.raises(
        StorageGone,
        match=r"trial 0's result is kept in .*trial-0\.json and "
        r"recorded by the next run",
    ):
        run_worker(spec, ctx.Lock(), ctx.Value("i", 0))
    monkeypatch.undo()
    kept = list((tmp_path / "cache" / "pending-results").glob("*/trial-0.json"))
    assert len(kept) == 1 and view(url, name).by_state() == {"RUNNING": 1}

    shared = SharedStudy.load(url, name)
    with StudyLock(url, name):
        assert pending.record(shared, url, cache_dir=str(tmp_path / "cache")) == [0]
    v = view(url, name)
    assert v.by_state() == {"COMPLETE": 1} and not kept[0].exists()
    trial = v.trials[0]
    assert trial.value == make_result().val_ppl and set(TRIAL_ATTRS) <= set(trial.user_attrs)
    # The kept curve's points (of 20 over 2 s: steps 1, 2), which the database did not take.
    assert trial.intermediate_values == {
        1: pytest.approx(math.exp(5.1)),
        2: pytest.approx(math.exp(4.2)),
    }
    assert set(v.curve) == set(v.sample) == {0}
