"""``study.orchestra.job``: one trial's child process, how it ended, its events, stopping it."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from studyrun import FakeTrainer, fake_trainer, make_result

from study.config import ModelConfig, TrainConfig
from study.orchestra.job import (
    PRESTART_ENV,
    EventReader,
    Outcome,
    WarmPool,
    compile_cache_env,
    prestart_enabled,
    run_job,
)
from study.result import TrainResult


@pytest.fixture
def fake(tmp_path: Path) -> FakeTrainer:
    return fake_trainer(tmp_path)


def job(fake: FakeTrainer, mode: str, **callbacks: Any) -> Outcome:
    return run_job(
        TrainConfig(budget=2.0),
        command=fake.command,
        env={**fake.env, "FAKE_MODE": mode},
        **callbacks,
    )


def assert_gone(pidfile: Path) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)


@pytest.mark.slow
def test_complete_job_reports_progress_curve_and_final(fake: FakeTrainer) -> None:
    seen: dict[str, list[Any]] = {"progress": [], "curve": []}
    outcome = job(
        fake,
        "ok",
        on_progress=seen["progress"].append,
        on_curve=lambda e: seen["curve"].append((e["frac"], e["val_loss"])) or False,  # type: ignore[func-returns-value]
    )
    assert outcome.state == "complete" and outcome.result is not None
    # The parent's measure: the process's wall time less its budgeted seconds (never below 0:
    # this fake claims 2 s of training in a fraction of that).
    outside = outcome.result.outside_seconds
    assert outside == pytest.approx(max(0.0, outcome.seconds - outcome.result.train_seconds))
    assert dataclasses.replace(outcome.result, outside_seconds=None) == make_result()
    assert [e["step"] for e in seen["progress"]] == [5]
    # The null point at fraction 1 is passed on; the final evaluation closes the curve.
    assert seen["curve"] == [(0.5, 5.1), (1.0, None), (1.0, 4.2)]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("diverged", "diverged: training loss became NaN by step 3"),
        ("oom_no_file", "oom: error: out of memory at step 1"),
        ("crash", "crash: exit status 1: "),
        ("killed", "crash: killed by SIGKILL"),
    ],
)
@pytest.mark.slow
def test_failed_jobs_carry_a_reason(fake: FakeTrainer, mode: str, reason: str) -> None:
    outcome = job(fake, mode)
    assert outcome.state == "fail" and outcome.result is None
    assert outcome.reason.startswith(reason), outcome.reason
    if mode == "crash":
        assert "RuntimeError: boom in the trainer" in outcome.reason


@pytest.mark.slow
def test_pruning_stops_the_child(fake: FakeTrainer) -> None:
    start = time.monotonic()
    outcome = job(fake, "slow", on_curve=lambda e: True)
    assert outcome.state == "pruned" and outcome.reason == "pruned at 50% of the budget"
    assert time.monotonic() - start < 30  # the child sleeps 60 s unless stopped
    assert_gone(fake.pidfile)


@pytest.mark.slow
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


def test_prestart_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRESTART_ENV, raising=False)
    assert prestart_enabled("cuda", cores=2) and prestart_enabled("auto", cores=4)
    assert not prestart_enabled("auto", cores=2) and not prestart_enabled("cpu", cores=64)
    monkeypatch.setenv(PRESTART_ENV, "1")
    assert prestart_enabled("cpu", cores=2)
    monkeypatch.setenv(PRESTART_ENV, "0")
    assert not prestart_enabled("cuda", cores=64)


def test_compile_caches_under_the_study_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in (
        "TORCHINDUCTOR_CACHE_DIR",
        "TRITON_CACHE_DIR",
        "TORCHINDUCTOR_FX_GRAPH_CACHE",
        "TORCHINDUCTOR_AUTOGRAD_CACHE",
    ):
        monkeypatch.delenv(name, raising=False)
    env = compile_cache_env(str(tmp_path))
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "torch-compile" / "inductor")
    assert env["TRITON_CACHE_DIR"] == str(tmp_path / "torch-compile" / "triton")
    assert env["TORCHINDUCTOR_FX_GRAPH_CACHE"] == env["TORCHINDUCTOR_AUTOGRAD_CACHE"] == "1"
    monkeypatch.setenv("TRITON_CACHE_DIR", "/elsewhere")  # the user's own setting wins
    assert "TRITON_CACHE_DIR" not in compile_cache_env(str(tmp_path))


def real_config(data: Path) -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(n_layer=1, d_model=32, n_head=2, vocab_size=1024, seq_len=32),
        budget=1.0,
        data=str(data),
        device="cpu",
        batch_size=8,
        eval_tokens=1024,
        curve_points=2,
        sample_tokens=4,
        max_stories=2000,
    )


def assert_consistent(result: TrainResult) -> None:
    assert result.outside_seconds is not None and result.outside_seconds >= 0
    assert result.compile_seconds is not None
    assert 0 <= result.compile_seconds <= result.train_seconds
    for phase in (
        result.import_seconds,
        result.setup_seconds,
        result.sample_seconds,
        result.eval_seconds,
    ):
        assert phase is not None and phase >= 0


@pytest.mark.slow
def test_warm_job_trains_like_a_cold_one(tinystories: Path, cache_dir: Path) -> None:
    """A pre-started ``--config-from-stdin`` child takes the trial and gives the same result
    fields as a cold child; the pool starts the next one at once and closes it at the end."""
    command = (sys.executable, "-m", "study.train")
    config = real_config(tinystories)
    cold = run_job(config, command=command, cache_dir=str(cache_dir))
    pool = WarmPool(command, enabled=True, cache_dir=str(cache_dir))
    pool.refill(config)
    waiting = pool._child
    assert waiting is not None and waiting.warm
    try:
        warm = run_job(config.replace(seed=1), command=command, cache_dir=str(cache_dir), pool=pool)
        spare = pool._child
        assert spare is not None and spare is not waiting  # the next trial's, already started
    finally:
        pool.close()
    assert spare.proc.poll() is not None  # closed: no process left behind
    assert cold.state == warm.state == "complete", (cold.reason, warm.reason)
    assert cold.result is not None and warm.result is not None
    assert warm.result.config["seed"] == 1  # the config handed on stdin, not the warm-up's
    assert set(cold.result.to_dict()) == set(warm.result.to_dict())
    for result in (cold.result, warm.result):
        assert_consistent(result)
        assert result.compile_seconds == 0.0  # an eager CPU step compiles nothing


@pytest.mark.slow
def test_warm_child_exits_quietly_without_a_trial(tinystories: Path, cache_dir: Path) -> None:
    pool = WarmPool((sys.executable, "-m", "study.train"), enabled=True, cache_dir=str(cache_dir))
    pool.refill(real_config(tinystories))
    child = pool._child
    assert child is not None and child.proc.stdin is not None
    child.proc.stdin.close()  # the study ended: no config comes
    assert child.proc.wait(120) == 0
    pool.close()
