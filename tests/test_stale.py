"""``study.storage.stale``: which running trials will never finish, and recovering them (failed, their
rows dropped, their parameters queued again)."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from studyrun import dead_pid, make_result

from study.storage import stale, store
from study.storage.optuna_store import SharedStudy


def running(user_attrs: dict[str, Any], started: float | None = None) -> Any:
    start = datetime.datetime.fromtimestamp(started or time.time())
    return SimpleNamespace(user_attrs=user_attrs, datetime_start=start)


@pytest.mark.slow
def test_stale_reason_for_local_and_remote_workers() -> None:
    me, now = stale.this_worker(), time.time()
    assert stale.stale_reason(running({"worker": me, "heartbeat": now}), me=me, now=now) is None
    dead = {**me, "pid": dead_pid()}
    assert "died" in str(stale.stale_reason(running({"worker": dead}), me=me, now=now))
    if me["start"]:  # /proc: a live pid with another start time was reused by a new process
        reused = {**me, "start": "1"}
        assert "died" in str(stale.stale_reason(running({"worker": reused}), me=me, now=now))
    remote = {**me, "host": "elsewhere", "pid": 1}
    fresh = running({"worker": remote, "heartbeat": now - 10})
    assert stale.stale_reason(fresh, me=me, now=now) is None
    silent = running({"worker": remote, "heartbeat": now - stale.GRACE_S - 1})
    assert "no heartbeat from worker elsewhere:1" in str(stale.stale_reason(silent, me=me, now=now))
    unstamped = running({}, started=now - stale.GRACE_S - 1)
    assert stale.stale_reason(unstamped, me=me, now=now) is not None


def test_a_live_local_worker_that_stopped_beating_is_stale() -> None:
    """A worker on this host that is alive but silent past the grace period (stopped with
    SIGSTOP, or cut off from the database) is written off like a remote one, so a second run
    on this host does not wait for it forever."""
    me, now = stale.this_worker(), time.time()
    stopped = running({"worker": me, "heartbeat": now - stale.GRACE_S - 1})
    reason = stale.stale_reason(stopped, me=me, now=now)
    assert reason is not None and reason.startswith(f"no heartbeat from worker {me['host']}:")
    within = running({"worker": me, "heartbeat": now - stale.GRACE_S + 5})
    assert stale.stale_reason(within, me=me, now=now) is None


def test_a_stamp_this_harness_did_not_write_is_read_at_the_boundary() -> None:
    """Hostile values in a running trial's stamp (issue 27 #7: a non-numeric heartbeat pid was a
    traceback): a pid that is not a whole number says nothing of the process, so the heartbeat
    judges; a pid no process can have is a dead worker; a heartbeat that is not a finite number
    is no heartbeat (the trial's start time judges)."""
    me, now = stale.this_worker(), time.time()
    old = now - stale.GRACE_S - 1
    for pid in ("abc", 1.5, None, [1], True):
        odd = {**me, "pid": pid}
        assert (
            stale.stale_reason(running({"worker": odd, "heartbeat": now}), me=me, now=now) is None
        )
        late = running({"worker": odd, "heartbeat": old})
        assert "no heartbeat" in str(stale.stale_reason(late, me=me, now=now))
    huge = running({"worker": {**me, "pid": 10**30}, "heartbeat": now})
    assert "died" in str(stale.stale_reason(huge, me=me, now=now))
    rebooted = {**me, "boot": 7}  # not a boot id: not a reboot either
    assert (
        stale.stale_reason(running({"worker": rebooted, "heartbeat": now}), me=me, now=now) is None
    )
    for beat in (float("nan"), float("inf"), "soon", {"t": 1}):
        recent = running({"worker": me, "heartbeat": beat}, started=now - 1)
        assert stale.stale_reason(recent, me=me, now=now) is None
        ancient = running({"worker": me, "heartbeat": beat}, started=old)
        assert "no heartbeat" in str(stale.stale_reason(ancient, me=me, now=now))
    queued = SimpleNamespace(system_attrs={"fixed_params": "x"}, params={"lr": 0.1})
    assert stale.intended_params(queued) == {"lr": 0.1}  # type: ignore[arg-type]


def test_heartbeats_missed_while_the_database_was_away_do_not_count() -> None:
    """After an outage every worker's heartbeat is old; the recoverer that saw the database
    come back judges silence from then on, so no live trial is written off for it."""
    me, now = stale.this_worker(), time.time()
    remote = {**me, "host": "elsewhere", "pid": 1}
    old = running({"worker": remote, "heartbeat": now - stale.GRACE_S - 60})
    assert stale.stale_reason(old, me=me, now=now) is not None
    assert stale.stale_reason(old, me=me, now=now, reachable_since=now - 30) is None
    assert (
        stale.stale_reason(old, me=me, now=now, reachable_since=now - stale.GRACE_S - 1) is not None
    )


@pytest.mark.slow
def test_recover_stale_fails_requeues_and_drops_rows(tmp_path: Path) -> None:
    shared = SharedStudy.create(f"sqlite:///{tmp_path / 'study.db'}", "s")
    study = shared.study
    orphan = study.ask()
    orphan.suggest_float("lr", 1e-4, 1e-2, log=True)
    orphan.set_user_attr("worker", {**stale.this_worker(), "pid": dead_pid()})
    store.write_trial_rows(
        shared.engine,
        trial_id=shared.trial_id(orphan.number),
        study_name="s",
        trial_number=orphan.number,
        result=make_result(),
    )
    alive = study.ask()
    alive.suggest_float("lr", 1e-4, 1e-2, log=True)
    alive.set_user_attr("worker", stale.this_worker())
    alive.set_user_attr("heartbeat", time.time())

    assert stale.recover_stale(shared) == [0]
    assert stale.recover_stale(shared) == []  # nothing left to do
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    assert trials[0].user_attrs["fail_reason"].startswith("stale: worker ")
    assert trials[2].user_attrs == {"retry_of": 0}
    assert shared.numbers_with_rows() == set()
    retry = study.ask()
    assert retry.number == 2
    assert retry.suggest_float("lr", 1e-4, 1e-2, log=True) == orphan.params["lr"]


@pytest.mark.slow
def test_recovery_finishes_what_a_kill_cut_short(tmp_path: Path) -> None:
    """The states a SIGKILL can leave, recovered deterministically under the study lock: a
    trial killed before its worker stamped it, a failed trial whose retry was never queued (its
    rows still there), and a queued retry killed before it sampled its parameters."""
    shared = SharedStudy.create(f"sqlite:///{tmp_path / 'study.db'}", "s")
    study = shared.study
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)

    unstamped = study.ask({"lr": lr})  # killed between ask and stamp
    assert stale.recover_stale(shared) == []  # no lock: within grace
    cut = study.ask({"lr": lr})  # killed after failing it, before queueing its retry
    store.write_trial_rows(
        shared.engine,
        trial_id=shared.trial_id(cut.number),
        study_name="s",
        trial_number=cut.number,
        result=make_result(),
    )
    assert shared.fail(cut.number, "stale: worker h:1 died")
    study.enqueue_trial({"lr": 0.005}, user_attrs={"retry_of": 99})
    popped = study.ask()  # a queued retry, killed before it sampled lr
    popped.set_user_attr("worker", {**stale.this_worker(), "pid": dead_pid()})
    assert popped.params == {}

    assert stale.recover_stale(shared, locked=True) == [0, 2]
    trials = study.get_trials()
    assert trials[0].user_attrs["fail_reason"] == (
        "stale: its worker was killed before it stamped the trial"
    )
    retries = {t.user_attrs["retry_of"]: t for t in trials if "retry_of" in t.user_attrs}
    assert retries[0].system_attrs["fixed_params"] == unstamped.params
    assert retries[1].system_attrs["fixed_params"] == cut.params
    assert retries[2].system_attrs["fixed_params"] == {"lr": 0.005}
    assert all(retries[n].state == TrialState.WAITING for n in (0, 1, 2))
    assert shared.numbers_with_rows() == set()
    # Idempotent: nothing more to do, no second retry.
    before = len(study.trials)
    assert stale.recover_stale(shared, locked=True) == []
    assert len(study.trials) == before


def test_fail_and_retry_accepts_a_trial_this_worker_is_running(tmp_path: Path) -> None:
    """An interrupted worker hands over the number of the live trial it was running."""
    shared = SharedStudy.create(f"sqlite:///{tmp_path / 's.db'}", "s")
    trial = shared.ask()
    trial.suggest_int("n_layer", 1, 6)
    assert stale.fail_and_retry(shared, trial.number, reason="interrupted")
    assert not stale.fail_and_retry(shared, trial.number, reason="interrupted")  # done already
    trials = shared.trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[0].user_attrs["fail_reason"] == "interrupted"
    assert trials[1].user_attrs["retry_of"] == 0
    assert trials[1].system_attrs["fixed_params"] == trials[0].params
