"""Each trial records the machine's load (load averages, the training child's CPU share)."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
from studyrun import fake_trainer, view, write_sweep

from analysis.load import load_study
from study.config import FixedTerms
from study.orchestra.machine_load import LOAD_ATTRS, LoadMeter
from study.orchestra.worker import WorkerSpec, run_worker
from study.storage.optuna_store import SharedStudy


def test_meter_reads_load_and_a_child_share_in_range() -> None:
    meter = LoadMeter.start()
    os.system("python -c 'sum(range(3_000_000))'")  # a waited-for child that used CPU
    attrs = meter.attrs()
    assert set(attrs) == set(LOAD_ATTRS)
    assert attrs["cpu_count"] == os.cpu_count()
    assert attrs["load_avg_1m"] is not None and attrs["load_avg_1m"] >= 0
    assert 0 < attrs["child_cpu_share"] <= 1.0


@pytest.mark.slow
def test_a_trial_records_the_machine_load(tmp_path: Path) -> None:
    url, name = f"sqlite:///{tmp_path / 'study.db'}", "load"
    SharedStudy.create(url, name)
    fake = fake_trainer(tmp_path)
    spec = WorkerSpec(
        storage=url,
        study_name=name,
        sweep=str(write_sweep(tmp_path)),
        fixed=FixedTerms(budget=2.0, data=None, device="cpu", seed=0),
        trials=1,
        max_failures=1,
        pruner="none",
        curve_points=2,
        sampler_seed=0,
        train_command=fake.command,
        cache_dir=str(tmp_path / "cache"),
        env={**fake.env, "FAKE_MODE": "ok"},
    )
    ctx = multiprocessing.get_context("spawn")
    run_worker(spec, ctx.Lock(), ctx.Value("i", 0))
    trial = view(url, name).trials[0]
    assert set(LOAD_ATTRS) <= set(trial.user_attrs)
    assert trial.user_attrs["child_cpu_share"] > 0
    frame = load_study(url, name).trials
    assert frame.loc[0, "cpu_count"] == os.cpu_count()
