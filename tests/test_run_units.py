"""Unit tests of the runner's parts: the trial job, stale-trial recovery, storage retries, output.

A fake trainer script stands in for ``python -m study.train`` where the test needs an exit status
or a timing the real one cannot be made to produce on demand.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from study import progress, runner, schema, stale, store
from study.config import ModelConfig, TrainConfig
from study.job import EventReader, run_job
from study.result import TrainResult
from study.worker import trial_attrs

FAKE_TRAINER = """
import argparse, json, os, signal, sys, time
p = argparse.ArgumentParser()
for flag in ("--config", "--json", "--events", "--cache-dir"):
    p.add_argument(flag)
p.add_argument("--quiet", action="store_true")
a = p.parse_args()
mode = os.environ["FAKE_MODE"]
with open(os.environ["FAKE_PIDFILE"], "w") as f:
    f.write(str(os.getpid()))
events = open(a.events, "a")
def emit(**e):
    events.write(json.dumps(e) + "\\n")
    events.flush()
emit(kind="progress", elapsed_s=0.5, budget=2.0, step=5, train_loss=5.0, lr=1e-3, tok_s=1000.0)
emit(kind="curve", frac=0.5, elapsed_s=1.0, tokens=512, train_loss=5.0, val_loss=5.1)
if mode == "ok":
    emit(kind="curve", frac=1.0, elapsed_s=2.0, tokens=1024, train_loss=4.0, val_loss=None)
    emit(kind="final", val_loss=4.2, val_bpb=2.0)
    with open(a.json, "w") as f:
        f.write(os.environ["FAKE_RESULT"])
elif mode == "diverged":
    with open(a.json, "w") as f:
        json.dump({"error": "diverged", "reason": "training loss became NaN by step 3"}, f)
    sys.exit(3)
elif mode == "oom_no_file":
    print("error: out of memory at step 1", file=sys.stderr)
    sys.exit(4)
elif mode == "crash":
    raise RuntimeError("boom in the trainer")
elif mode == "killed":
    os.kill(os.getpid(), signal.SIGKILL)
elif mode == "slow":
    time.sleep(60)
"""


def make_result(**changes: Any) -> TrainResult:
    config = TrainConfig(model=ModelConfig(d_model=64, n_head=2), budget=2.0).to_dict()
    values: dict[str, Any] = dict(
        config=config, val_loss=4.2, val_ppl=66.7, val_bpb=2.0, params=300_000,
        params_nonembedding=40_000, flops_per_token=2_000_000, tokens_seen=1024,
        tokens_per_second=512.0, train_seconds=2.0, steps=10, epochs=0.01, batch_size=4,
        device="cpu", device_name="cpu (2 threads)", versions={"python": "3", "torch": "2"},
        sample="Once upon a time there was", curve=[
            {"elapsed_s": 1.0, "tokens": 512, "train_loss": 5.0, "val_loss": 5.1},
            {"elapsed_s": 2.0, "tokens": 1024, "train_loss": 4.0, "val_loss": 4.2}])
    values.update(changes)
    return TrainResult(**values)


@pytest.fixture
def fake(tmp_path: Path) -> dict[str, Any]:
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    pidfile = tmp_path / "pid"
    return {"command": (sys.executable, str(script)), "pidfile": pidfile,
            "env": {**os.environ, "FAKE_PIDFILE": str(pidfile),
                    "FAKE_RESULT": json.dumps(make_result().to_dict())}}


def job(fake: dict[str, Any], mode: str, **callbacks: Any) -> Any:
    return run_job(TrainConfig(budget=2.0), command=fake["command"],
                   env={**fake["env"], "FAKE_MODE": mode}, **callbacks)


def assert_gone(pidfile: Path) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)


def test_complete_job_reports_progress_curve_and_final(fake: dict[str, Any]) -> None:
    seen: dict[str, list[Any]] = {"progress": [], "curve": []}
    outcome = job(fake, "ok", on_progress=seen["progress"].append,
                  on_curve=lambda e: seen["curve"].append((e["frac"], e["val_loss"])) or False)
    assert outcome.state == "complete" and outcome.result == make_result()
    assert [e["step"] for e in seen["progress"]] == [5]
    # The null point at fraction 1 is passed on; the final evaluation closes the curve.
    assert seen["curve"] == [(0.5, 5.1), (1.0, None), (1.0, 4.2)]


@pytest.mark.parametrize(("mode", "reason"), [
    ("diverged", "diverged: training loss became NaN by step 3"),
    ("oom_no_file", "oom: error: out of memory at step 1"),
    ("crash", "crash: exit status 1: "),
    ("killed", "crash: killed by SIGKILL"),
])
def test_failed_jobs_carry_a_reason(fake: dict[str, Any], mode: str, reason: str) -> None:
    outcome = job(fake, mode)
    assert outcome.state == "fail" and outcome.result is None
    assert outcome.reason.startswith(reason), outcome.reason
    if mode == "crash":
        assert "RuntimeError: boom in the trainer" in outcome.reason


def test_pruning_stops_the_child(fake: dict[str, Any]) -> None:
    start = time.monotonic()
    outcome = job(fake, "slow", on_curve=lambda e: True)
    assert outcome.state == "pruned" and outcome.reason == "pruned at 50% of the budget"
    assert time.monotonic() - start < 30  # the child sleeps 60 s unless stopped
    assert_gone(fake["pidfile"])


def test_interrupt_stops_the_child(fake: dict[str, Any]) -> None:
    def tick() -> None:
        if fake["pidfile"].exists():
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        job(fake, "slow", on_tick=tick)
    assert_gone(fake["pidfile"])


def test_event_reader_returns_only_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    reader = EventReader(path)
    assert reader.read() == []
    with open(path, "w") as f:
        f.write('{"kind": "progress", "step": 1}\n{"kind": "cur')
    assert reader.read() == [{"kind": "progress", "step": 1}]
    with open(path, "a") as f:
        f.write('ve", "frac": 0.5}\nnot json\n')
    assert reader.read() == [{"kind": "curve", "frac": 0.5}]
    assert reader.read() == []


def test_trial_attrs_are_exactly_the_schema() -> None:
    attrs = trial_attrs(make_result())
    assert set(attrs) == set(schema.TRIAL_ATTRS)
    assert attrs["d_model"] == 64 and attrs["budget"] == 2.0 and attrs["batch_size"] == 4


# ------------------------------------------------------------------------------ stale trials

def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def running(user_attrs: dict[str, Any], started: float | None = None) -> Any:
    start = datetime.datetime.fromtimestamp(started or time.time())
    return SimpleNamespace(user_attrs=user_attrs, datetime_start=start)


def test_stale_reason_for_local_and_remote_workers() -> None:
    me, now = stale.this_worker(), time.time()
    assert stale.stale_reason(running({"worker": me, "heartbeat": now}), me=me, now=now) is None
    dead = {**me, "pid": dead_pid()}
    assert "died" in stale.stale_reason(running({"worker": dead}), me=me, now=now)
    if me["start"]:  # /proc: a live pid with another start time was reused by a new process
        reused = {**me, "start": "1"}
        assert "died" in stale.stale_reason(running({"worker": reused}), me=me, now=now)
    remote = {**me, "host": "elsewhere", "pid": 1}
    fresh = running({"worker": remote, "heartbeat": now - 10})
    assert stale.stale_reason(fresh, me=me, now=now) is None
    silent = running({"worker": remote, "heartbeat": now - stale.GRACE_S - 1})
    assert "no heartbeat from worker elsewhere:1" in stale.stale_reason(silent, me=me, now=now)
    unstamped = running({}, started=now - stale.GRACE_S - 1)
    assert stale.stale_reason(unstamped, me=me, now=now) is not None


def test_recover_stale_fails_requeues_and_drops_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = store.open_storage(url)
    study = optuna.create_study(storage=storage, study_name="s")
    orphan = study.ask()
    orphan.suggest_float("lr", 1e-4, 1e-2, log=True)
    orphan.set_user_attr("worker", {**stale.this_worker(), "pid": dead_pid()})
    store.write_trial_rows(storage.engine, trial_id=orphan._trial_id, study_name="s",
                           trial_number=orphan.number, result=make_result())
    alive = study.ask()
    alive.suggest_float("lr", 1e-4, 1e-2, log=True)
    alive.set_user_attr("worker", stale.this_worker())

    assert stale.recover_stale(study, storage, storage.engine) == [0]
    assert stale.recover_stale(study, storage, storage.engine) == []  # nothing left to do
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    assert trials[0].user_attrs["fail_reason"].startswith("stale: worker ")
    assert trials[2].user_attrs == {"retry_of": 0}
    with storage.engine.connect() as conn:
        assert conn.execute(sa.select(schema.curve)).all() == []
        assert conn.execute(sa.select(schema.sample)).all() == []
    retry = study.ask()
    assert retry.number == 2
    assert retry.suggest_float("lr", 1e-4, 1e-2, log=True) == orphan.params["lr"]


# ----------------------------------------------------------------------------------- storage

def test_retry_rides_out_transient_errors_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store.time, "sleep", lambda s: None)
    calls = []

    def locked_twice(x: int) -> int:
        calls.append(x)
        if len(calls) < 3:
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
        return x * 2

    assert store.retry(locked_twice, 21, what="test") == 42 and len(calls) == 3

    def broken() -> None:
        calls.append(0)
        raise ValueError("a bug")

    calls.clear()
    with pytest.raises(ValueError):
        store.retry(broken, what="test")
    assert calls == [0]


def test_write_trial_rows_replaces_previous_rows(tmp_path: Path) -> None:
    engine = store.open_storage(f"sqlite:///{tmp_path / 'study.db'}").engine
    for _ in range(2):
        store.write_trial_rows(engine, trial_id=7, study_name="s", trial_number=3,
                               result=make_result())
    with engine.connect() as conn:
        rows = conn.execute(sa.select(schema.curve).order_by(schema.curve.c.idx)).all()
        assert [(r.idx, r.tokens, r.val_loss) for r in rows] == [(0, 512, 5.1), (1, 1024, 4.2)]
        assert conn.execute(sa.select(schema.sample.c.text)).scalars().all() == [
            "Once upon a time there was"]


# ---------------------------------------------------------------------- workers and output

def test_child_env_splits_devices_and_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    assert runner.child_env(0, 1, device="auto") == {}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert [runner.child_env(i, 3, device="cuda") for i in range(3)] == [
        {"CUDA_VISIBLE_DEVICES": "2"}, {"CUDA_VISIBLE_DEVICES": "5"},
        {"CUDA_VISIBLE_DEVICES": "2"}]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 16)
    assert runner.child_env(1, 4, device="auto") == {"OMP_NUM_THREADS": "4"}
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert runner.child_env(1, 4, device="cpu") == {}


def test_sampler_seeds_differ_by_worker_and_resume() -> None:
    seeds = {runner.sampler_seed(0, before, i) for before in (0, 3) for i in range(2)}
    assert len(seeds) == 4 and runner.sampler_seed(0, 3, 1) == runner.sampler_seed(0, 3, 1)


def test_study_line_and_summary() -> None:
    study = optuna.create_study()
    for value, size in ((30.0, 2_500_000), (20.0, 1_310_000)):
        trial = study.ask()
        trial.suggest_int("n_layer", 1, 6)
        trial.set_user_attr("params", size)
        study.tell(trial, value)
    trial = study.ask()
    trial.set_user_attr("fail_reason", "oom: x")
    study.tell(trial, state=TrialState.FAIL)
    line = progress.study_line("s", study.trials, target=5, workers=1)
    assert line.startswith("[s] 2/5 complete, 1 failed, 0 pruned | best ppl 20.00 #1 (1.31M "
                           "params; n_layer=")
    assert line.endswith(" left")
    lines = [line.strip() for line in progress.summary("s", "sqlite:///x.db", study.trials,
                                                        target=5)]
    assert "python -m analysis.scaling_law --storage sqlite:///x.db --study-name s" in lines
    assert "optuna-dashboard sqlite:///x.db" in lines
    assert [line.split()[0] for line in lines[2:4]] == ["1", "0"]  # best first
    assert progress.fmt_count(1_234_567) == "1.23M" and progress.fmt_duration(165) == "2m45s"
