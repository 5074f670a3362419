"""bench.profile: per-kernel tables for the trainer and the tuned textbook step (the graphed one
only on CUDA)."""

from __future__ import annotations

import pytest

from bench.profile import main


@pytest.mark.slow
def test_profiles_each_step_on_a_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["--device", "cpu", "--size", "0.4M", "--batch", "1", "--steps", "1", "--rows", "3"])
        == 0
    )
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if line.startswith("====")]
    assert headers == ["==== trainer 0.4M batch 1: 1 steps", "==== tuned 0.4M batch 1: 1 steps"]
    assert out.count("Self CPU time total") == 2  # one profiler table per step


@pytest.mark.slow
def test_only_the_trainer(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--device", "cpu", "--size", "0.4M", "--batch", "1", "--steps", "1", "--rows", "3"]
    assert main([*argv, "--only", "trainer"]) == 0
    headers = [line for line in capsys.readouterr().out.splitlines() if line.startswith("====")]
    assert headers == ["==== trainer 0.4M batch 1: 1 steps"]


def test_unknown_step_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--device", "cpu", "--only", "trainer,fast"])
    assert exit_info.value.code == 2 and "fast" in capsys.readouterr().err


def test_unknown_size_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--device", "cpu", "--size", "3M"])
    assert exit_info.value.code == 2 and "3M" in capsys.readouterr().err
