"""The budget clock, the JSON-lines events and the CPU thread tuner (study.clock)."""

from __future__ import annotations

import io
import json

import pytest
import torch

from study.clock import Clock, Events, ThreadTuner


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A hand-driven ``time.perf_counter`` for study.clock: advance it by adding to now[0]."""
    t = [1000.0]
    monkeypatch.setattr("study.clock.time.perf_counter", lambda: t[0])
    return t


def test_clock_counts_only_running_intervals(now: list[float]) -> None:
    clock = Clock(budget=10.0)
    assert clock.elapsed == 0.0 and not clock.done  # not started
    clock.start()
    now[0] += 3.0
    assert clock.elapsed == pytest.approx(3.0)
    clock.pause()
    now[0] += 100.0  # an evaluation: paused time never reaches the budget
    assert clock.elapsed == pytest.approx(3.0) and not clock.done
    clock.pause()  # pausing twice changes nothing
    now[0] += 50.0
    clock.resume()
    now[0] += 2.0
    assert clock.elapsed == pytest.approx(5.0)
    clock.pause()
    now[0] += 7.0
    clock.resume()
    now[0] += 4.9
    assert clock.elapsed == pytest.approx(9.9) and not clock.done
    now[0] += 0.1
    assert clock.elapsed == pytest.approx(10.0) and clock.done


def test_events_are_json_lines() -> None:
    stream = io.StringIO()
    events = Events(stream)
    events.emit("progress", step=3, train_loss=2.5)
    events.emit("final", val_loss=2.25)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines == [{"kind": "progress", "step": 3, "train_loss": 2.5},
                     {"kind": "final", "val_loss": 2.25}]
    Events().emit("progress", step=1)  # no stream: nothing to write, no error


def test_thread_tuner_keeps_the_faster_choice(now: list[float]) -> None:
    if torch.get_num_threads() < 2:
        torch.set_num_threads(2)
    n = torch.get_num_threads()
    tuner = ThreadTuner(torch.device("cpu"), recheck=10.0, max_recheck=40.0)
    cost = {1: 1.0, n: 5.0}  # a busy machine: more threads, slower steps
    try:
        for _ in range(40):
            tuner.before()
            now[0] += cost[torch.get_num_threads()]
            tuner.after()
        assert torch.get_num_threads() == 1 and tuner.best == 1
        assert tuner.interval == 40.0  # the same answer each time: checks grew rarer
        cost = {1: 1.0, n: 0.5}  # the machine became idle
        for _ in range(200):
            tuner.before()
            now[0] += cost[torch.get_num_threads()]
            tuner.after()
        assert torch.get_num_threads() == n and tuner.best == n
        # A check begun on a training step is not finished on an evaluation batch.
        now[0] = tuner.next_check
        tuner.before("step")
        now[0] += 1.0
        tuner.after()
        assert tuner.pending == [1] and tuner.times == {n: 1.0}
        tuner.before("eval")
        assert tuner.pending == [n, 1] and tuner.times == {} and tuner.kind == "eval"
    finally:
        torch.set_num_threads(n)
    assert ThreadTuner(torch.device("cuda")).options == []
