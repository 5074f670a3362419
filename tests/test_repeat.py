"""``python -m study.run --repeat-top K --seeds N``: the K best configurations re-run with more
seeds as trials of the same study, only what is missing, and a study that does not exist refused."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial
from studyrun import (
    REPO,
    assert_clean_output,
    check_finished,
    run,
    study_args,
    trainer_children,
    view,
    wait_for_no_marked,
    write_sweep,
)

from study import run as run_command
from study.orchestra.repeat import missing_repeats

LR: dict[str, BaseDistribution] = {"lr": FloatDistribution(1e-4, 1e-1, log=True)}


def _trial(number: int, value: float | None, state: TrialState = TrialState.COMPLETE, **attrs):
    t = create_trial(
        state=state,
        value=value,
        params={"lr": 1e-3 * (number + 1)},
        distributions=LR,
        user_attrs=attrs,
    )
    t.number = number
    return t


def test_missing_repeats_picks_the_best_originals_and_skips_what_is_there() -> None:
    trials = [
        _trial(0, 3.0),
        _trial(1, 1.0),
        _trial(2, 2.0),
        _trial(3, 0.5, repeats=1, repeat_seed=1),
    ]
    todo, pending = missing_repeats(trials, top=2, seeds=3)
    # Best originals: 1 then 2 (trial 3 is a repeat, never an original); 1's seed 1 is done.
    assert [(t.number, s) for t, s in todo] == [(1, 2), (2, 1), (2, 2)] and pending == 0
    # A killed repeat: FAIL, queued again (WAITING) with its attributes: it is due, not missing.
    trials += [
        _trial(4, None, TrialState.FAIL, repeats=1, repeat_seed=2),
        _trial(5, None, TrialState.WAITING, repeats=1, repeat_seed=2, retry_of=4),
    ]
    todo, pending = missing_repeats(trials, top=2, seeds=3)
    assert [(t.number, s) for t, s in todo] == [(2, 1), (2, 2)] and pending == 1
    with pytest.raises(Exception, match="--seeds must be at least 2"):
        missing_repeats(trials, top=1, seeds=1)


def test_refuses_a_study_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(study_name="there", storage=url)
    with pytest.raises(SystemExit) as exc:
        run_command.main(
            ["--storage", url, "--study-name", "nope", "--repeat-top", "1", "--seeds", "2"]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: no study named 'nope' in {url}"


@pytest.mark.slow
def test_repeat_top_adds_k_times_n_minus_1_trials_once(tmp_path: Path) -> None:
    url, name = f"sqlite:///{tmp_path / 'study.db'}", "tiny"
    sweep, cache = write_sweep(tmp_path), tmp_path / "cache"
    base = study_args(url, sweep, cache, "--study-name", name)
    done = run([*base, "--trials", "3"])
    assert done.returncode == 0, done.stderr
    repeat = [*base, "--repeat-top", "2", "--seeds", "2"]
    done = run(repeat)
    assert done.returncode == 0, done.stderr
    v = view(url, name)
    assert v.by_state() == {"COMPLETE": 5}
    originals = sorted(
        (t for t in v.trials if "repeats" not in t.user_attrs), key=lambda t: float(t.value or 0.0)
    )
    repeats = [t for t in v.trials if "repeats" in t.user_attrs]
    assert sorted(t.user_attrs["repeats"] for t in repeats) == sorted(
        t.number for t in originals[:2]
    )
    by_number = {t.number: t for t in v.trials}
    for t in repeats:
        original = by_number[t.user_attrs["repeats"]]
        assert t.user_attrs["seed"] == t.user_attrs["config"]["seed"] == 1
        assert {**t.user_attrs["config"], "seed": 0} == original.user_attrs["config"]
    # Run again: nothing is missing, nothing is added.
    done = run(repeat)
    assert done.returncode == 0, done.stderr
    assert view(url, name).by_state() == {"COMPLETE": 5}


def test_a_repeat_recovered_after_a_kill_is_queued_again_as_the_same_repeat(
    tmp_path: Path,
) -> None:
    from study.storage import stale
    from study.storage.optuna_store import SharedStudy

    url = f"sqlite:///{tmp_path / 'study.db'}"
    shared = SharedStudy.create(url, "s")
    shared.enqueue({"lr": 0.003}, user_attrs={"repeats": 0, "repeat_seed": 2})
    trial = shared.ask()  # the worker that takes it is killed while it trains
    stale.fail_and_retry(shared, trial.number, reason="interrupted")
    waiting = [t for t in shared.trials() if t.state == TrialState.WAITING]
    assert len(waiting) == 1
    assert waiting[0].user_attrs == {"retry_of": trial.number, "repeats": 0, "repeat_seed": 2}
    todo, pending = missing_repeats([_trial(0, 1.0), *shared.trials()], top=1, seeds=3)
    assert [s for _, s in todo] == [1] and pending == 1


def _complete_repeats(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return [
        t
        for t in view(url, name).trials
        if t.state == TrialState.COMPLETE and "repeats" in t.user_attrs
    ]


@pytest.mark.slow
def test_a_repeat_run_killed_and_rerun_ends_with_each_repeat_once(
    tmp_path: Path, cache_dir: Path
) -> None:
    """``--repeat-top 2 --seeds 3`` SIGKILLed once its first repeat is recorded (the database
    polled), then run again: exactly 2 x 2 repeats complete, each (original, seed) once, each
    with its original's config and its seed; the trial the kill cut off is recovered and queued
    again as the same repeat, never added twice."""
    url, name = f"sqlite:///{tmp_path / 'study.db'}", "tiny"
    sweep = write_sweep(tmp_path)
    base = study_args(url, sweep, cache_dir, "--study-name", name)
    done = run([*base, "--trials", "3"])
    assert done.returncode == 0, done.stderr
    repeat = [*base, "--repeat-top", "2", "--seeds", "3"]
    mark, log = uuid.uuid4().hex, tmp_path / "killed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            repeat,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "STUDY_TEST_MARK": mark},
        )
    try:
        deadline = time.monotonic() + 300
        # The kill point: the first repeat recorded and the next one's trainer started.
        while not (_complete_repeats(url, name) and trainer_children(mark)):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert wait_for_no_marked(mark) == []  # the trainer child went down with the study process
    assert 1 <= len(_complete_repeats(url, name)) < 4, view(url, name).by_state()

    rerun = run(repeat)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert_clean_output(rerun.stdout + rerun.stderr)
    v = view(url, name)
    check_finished(v, target=7, name=name)  # 3 originals + 2 x (3 - 1) repeats
    originals = sorted(
        (t for t in v.complete() if "repeats" not in t.user_attrs),
        key=lambda t: (float(t.value or 0.0), t.number),
    )
    pairs = [
        (t.user_attrs["repeats"], t.user_attrs["repeat_seed"])
        for t in v.complete()
        if "repeats" in t.user_attrs
    ]
    assert sorted(pairs) == sorted((o.number, s) for o in originals[:2] for s in (1, 2))
    by_number = {t.number: t for t in v.trials}
    for t in v.complete():
        if "repeats" in t.user_attrs:
            seed = t.user_attrs["repeat_seed"]
            original = by_number[t.user_attrs["repeats"]].user_attrs["config"]
            assert t.user_attrs["seed"] == t.user_attrs["config"]["seed"] == seed
            assert {**t.user_attrs["config"], "seed": 0} == original
    # The cut-off repeat failed and was queued again with its attributes, not drawn anew.
    failed = [t for t in v.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "repeats" in failed[0].user_attrs, [t.user_attrs for t in failed]
    assert len(v.trials) == 8  # 3 originals, 4 repeats, the one cut off
    again = run(repeat)
    assert again.returncode == 0, again.stderr
    assert view(url, name).by_state() == v.by_state()
