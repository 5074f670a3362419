"""Every number a user gives is bounded before any work: one line, exit 2. Settings that
used to loop or hang (a 0.2 s heartbeat grace, 5000 curve points in a 1 s budget, a seed torch
refuses, a NaN weight decay, a FIFO or a device as the corpus) are refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from studyrun import REPO

from study.config import ModelConfig, TrainConfig
from study.data.corpus import find_local_corpus
from study.errors import UsageError
from study.orchestra.options import RunOptions
from study.storage import retry, stale

TINY = ModelConfig(d_model=32, n_head=2, vocab_size=512, seq_len=64)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"budget": 1e-9}, "budget"),
        ({"budget": 1e9}, "budget"),
        ({"budget": float("inf")}, "budget"),
        ({"curve_points": 5000}, "curve_points"),
        ({"curve_points": 1001, "budget": 1e5}, "curve_points"),
        ({"curve_points": 50, "budget": 1.0}, "curve_points"),
        ({"seed": 2**70}, "seed"),
        ({"seed": -1}, "seed"),
        ({"weight_decay": float("nan")}, "weight_decay"),
        ({"weight_decay": float("inf")}, "weight_decay"),
        ({"lr": float("nan")}, "lr"),
        ({"grad_clip": float("nan")}, "grad_clip"),
    ],
)
def test_a_train_config_out_of_bounds_is_refused(changes: dict[str, float], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        TrainConfig(model=TINY, **changes).validate()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [{"budget": 1e-3}, {"budget": 1e6}, {"curve_points": 10, "budget": 0.5}, {"seed": 2**32 - 1}],
)
def test_the_edges_are_accepted(changes: dict[str, float]) -> None:
    TrainConfig(model=TINY, **changes).validate()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"budget": 1e9}, "--budget"),
        ({"budget": 1e-9}, "--budget"),
        ({"workers": 10000}, "--workers"),
        ({"seed": 2**70}, "--seed"),
        ({"seed": -3}, "--seed"),
        ({"study_name": "s" * 513}, "--study-name must be at most 512"),
    ],
)
def test_run_options_out_of_bounds_are_refused(changes: dict[str, float], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        RunOptions(**changes).validate()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STUDY_HEARTBEAT_GRACE_S", "0.2"),
        ("STUDY_HEARTBEAT_GRACE_S", "inf"),
        ("STUDY_STORAGE_PATIENCE_S", "-5"),
        ("STUDY_STORAGE_PATIENCE_S", "nan"),
        ("STUDY_STORAGE_PATIENCE_S", "inf"),
    ],
)
def test_environment_settings_out_of_bounds_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(UsageError, match=name):
        stale.grace_s() if "GRACE" in name else retry.patience_s()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fifo", "devzero"])
def test_a_corpus_that_is_no_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "stories.txt"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    with pytest.raises(UsageError, match="not a regular file"):
        find_local_corpus(str(path))
    proc = subprocess.run(
        [sys.executable, "-m", "study.train", "--data", str(path), "--budget", "1"]
        + ["--device", "cpu"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,  # it used to read for ever
    )
    assert proc.returncode == 2 and "not a regular file" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
