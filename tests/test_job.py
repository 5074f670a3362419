"""``study.job``: one trial's child process, how it ended, its events, stopping it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from studyrun import FakeTrainer, fake_trainer, make_result

from study.config import TrainConfig
from study.job import EventReader, Outcome, run_job


@pytest.fixture
def fake(tmp_path: Path) -> FakeTrainer:
    return fake_trainer(tmp_path)


def job(fake: FakeTrainer, mode: str, **callbacks: Any) -> Outcome:
    return run_job(TrainConfig(budget=2.0), command=fake.command,
                   env={**fake.env, "FAKE_MODE": mode}, **callbacks)


def assert_gone(pidfile: Path) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)


def test_complete_job_reports_progress_curve_and_final(fake: FakeTrainer) -> None:
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
def test_failed_jobs_carry_a_reason(fake: FakeTrainer, mode: str, reason: str) -> None:
    outcome = job(fake, mode)
    assert outcome.state == "fail" and outcome.result is None
    assert outcome.reason.startswith(reason), outcome.reason
    if mode == "crash":
        assert "RuntimeError: boom in the trainer" in outcome.reason


def test_pruning_stops_the_child(fake: FakeTrainer) -> None:
    start = time.monotonic()
    outcome = job(fake, "slow", on_curve=lambda e: True)
    assert outcome.state == "pruned" and outcome.reason == "pruned at 50% of the budget"
    assert time.monotonic() - start < 30  # the child sleeps 60 s unless stopped
    assert_gone(fake.pidfile)


def test_interrupt_stops_the_child(fake: FakeTrainer) -> None:
    def tick() -> None:
        if fake.pidfile.exists():
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        job(fake, "slow", on_tick=tick)
    assert_gone(fake.pidfile)


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
