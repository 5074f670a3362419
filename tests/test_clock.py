"""The budget clock, the JSON-lines events and the CPU thread tuner (study.training.clock)."""

from __future__ import annotations

import pytest
import torch

from study.training.clock import Clock, ThreadTuner


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A hand-driven ``time.perf_counter`` for study.training.clock: advance it by adding to now[0]."""
    t = [1000.0]
    monkeypatch.setattr("study.training.clock.time.perf_counter", lambda: t[0])
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


def test_thread_tuner_keeps_the_faster_choice(now: list[float]) -> None:
    if torch.get_num_threads() < 2:
        torch.set_num_threads(2)
    n = torch.get_num_threads()
    tuner = ThreadTuner(torch.device("cpu"), recheck=10.0, max_recheck=40.0)
    step = tuner.choice("step")
    cost = {1: 1.0, n: 5.0}  # a busy machine: more threads, slower steps
    try:
        for _ in range(40):
            tuner.before()
            now[0] += cost[torch.get_num_threads()]
            tuner.after()
        assert torch.get_num_threads() == 1 and step.best == 1
        assert step.interval == 40.0  # the same answer each time: checks grew rarer
        cost = {1: 1.0, n: 0.5}  # the machine became idle
        for _ in range(200):
            tuner.before()
            now[0] += cost[torch.get_num_threads()]
            tuner.after()
        assert torch.get_num_threads() == n and step.best == n
    finally:
        torch.set_num_threads(n)
    assert ThreadTuner(torch.device("cuda")).options == []


def test_thread_tuner_keeps_one_choice_per_kind_of_work(now: list[float]) -> None:
    """Evaluation batches that run faster on one thread do not move the training steps, which
    run faster on all of them, off their choice; a check begun on steps is finished on steps."""
    if torch.get_num_threads() < 2:
        torch.set_num_threads(2)
    n = torch.get_num_threads()
    tuner = ThreadTuner(torch.device("cpu"), recheck=10.0, max_recheck=40.0)
    cost = {"step": {1: 1.0, n: 0.5}, "eval": {1: 0.2, n: 1.0}}

    def work(kind: str) -> int:
        tuner.before(kind)
        threads = torch.get_num_threads()
        now[0] += cost[kind][threads]
        tuner.after()
        return threads

    try:
        work("step")  # the untimed first step
        assert [work("step"), work("step")] == [n, 1]  # one check: each count timed once
        assert tuner.choice("step").best == n
        assert [work("eval"), work("eval")] == [n, 1]  # evaluation's own check
        assert tuner.choice("eval").best == 1
        assert work("step") == n and work("eval") == 1  # each kind on its own choice
        # A check begun on a training step waits for the next step, whatever runs between.
        now[0] = max(c.next_check for c in tuner.choices.values())
        assert work("step") == n and tuner.choice("step").pending == [1]
        assert work("eval") == n and tuner.choice("eval").pending == [1]
        assert work("step") == 1 and tuner.choice("step").pending == []
        assert tuner.choice("step").times == {n: 0.5, 1: 1.0}
    finally:
        torch.set_num_threads(n)
