"""bench.timing: how every column is timed, and what a failed measurement reports."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from bench.timing import Timing, as_json, measure, median_timing, time_steps

CPU = torch.device("cpu")


def t(rate: float) -> Timing:
    return Timing(tokens_per_s=rate, step_ms=1.0, steps=1, warmup_s=0.0)


def test_median_timing_keeps_the_middle_and_skips_failures() -> None:
    assert median_timing([t(3), t(1), t(2)]).tokens_per_s == 2  # type: ignore[union-attr]
    assert median_timing([t(3), "OutOfMemoryError", t(1)]).tokens_per_s == 1  # type: ignore[union-attr]
    assert median_timing(["RuntimeError: x"]) == "RuntimeError: x"


def test_time_steps_warms_up_then_counts_whole_groups_of_steps() -> None:
    calls: list[int] = []

    def step() -> int:
        calls.append(1)
        return 10

    timing = time_steps(step, device=CPU, warmup=3, min_steps=5, min_seconds=0.0)
    assert timing.steps == 8  # the first multiple of 4 at or past min_steps
    assert len(calls) == 3 + 8
    assert timing.tokens_per_s == pytest.approx(80 / (timing.step_ms * 8 / 1e3))
    assert timing.peak_mem_gb is None and timing.mfu is None


@pytest.mark.slow
def test_measure_reports_a_failure_as_one_line() -> None:
    def build() -> Callable[[], int]:
        raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")

    got = measure(
        build,
        device=CPU,
        flops_per_token=1,
        warmup=0,
        min_steps=1,
        min_seconds=0.0,
    )
    assert got == "RuntimeError: CUDA out of memory."
    ok = measure(
        lambda: lambda: 4, device=CPU, flops_per_token=1, warmup=0, min_steps=1, min_seconds=0.0
    )
    assert isinstance(ok, Timing) and ok.steps == 4 and ok.mfu is None  # no peak for a CPU
    assert as_json(ok) == {
        "tokens_per_s": ok.tokens_per_s,
        "step_ms": ok.step_ms,
        "steps": 4,
        "warmup_s": ok.warmup_s,
        "peak_mem_gb": None,
        "mfu": None,
    }
    assert as_json(got) == got and as_json(None) is None
