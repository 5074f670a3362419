"""``study.runner``: splitting devices and cores among workers, sampler seeds, refusing an
existing study whose trials would not compare."""

from __future__ import annotations

import pytest

from study import runner
from study.errors import UsageError
from study.store import StorageState


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


def _state(directions: tuple[str, ...], attrs: dict[str, object]) -> StorageState:
    return StorageState(url="sqlite:///x.db", has_optuna=True, study_exists=True,
                        directions=directions, study_attrs=attrs)


def test_check_existing_refuses_what_would_not_compare() -> None:
    runner.check_existing(_state(("MINIMIZE",), {"budget": 60.0}), "s", budget=60)
    runner.check_existing(_state(("MINIMIZE",), {}), "s", budget=60)  # tagged by this run
    with pytest.raises(UsageError, match="optimises MAXIMIZE"):
        runner.check_existing(_state(("MAXIMIZE",), {}), "s", budget=60)
    with pytest.raises(UsageError, match="was run with --budget 60; .* --budget 60 or"):
        runner.check_existing(_state(("MINIMIZE",), {"budget": 60.0}), "s", budget=30)
