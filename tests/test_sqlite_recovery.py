"""An SQLite study killed in the middle of recording a trial: SQLite leaves a hot rollback
journal beside the file, and the next run and every analysis command open it again (the first
opener rolls the journal back; a read-only connection cannot, and used to fail with "attempt
to write a readonly database")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from studyrun import REPO, check_records, run, study_args, view, write_sweep

# A process that records a trial (harness rows, attributes, value) with a one-page cache, so a
# large sample spills into the file before the commit, and dies as the commit begins: the
# deterministic form of a kill during recording.
KILLED_WHILE_RECORDING = r"""
import os, sys
import optuna
import sqlalchemy as sa
from studyrun import make_result
from study.storage.optuna_store import SharedStudy

shared = SharedStudy.load(sys.argv[1], "tiny")
trial = shared.ask()
shared.trial_id(trial.number)  # read now: Optuna commits its reads too
shared.engine.dispose()
sa.event.listen(shared.engine, "connect", lambda dbapi, _: dbapi.execute("PRAGMA cache_size=1"))
sa.event.listen(shared.engine, "commit", lambda _: os._exit(9))
result = make_result(sample="x" * 400_000)
shared.complete(trial, result.val_ppl, attrs={}, result=result)
"""


@pytest.mark.slow
def test_a_kill_while_recording_leaves_a_study_the_next_run_and_the_analysis_open(
    tmp_path: Path, cache_dir: Path
) -> None:
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    args = study_args(url, write_sweep(tmp_path), cache_dir)
    first = run([*args, "--trials", "1"])
    assert first.returncode == 0, first.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WHILE_RECORDING, url], cwd=REPO, env=env, timeout=120
    )
    assert killed.returncode == 9
    journal = tmp_path / "study.db-journal"
    assert journal.stat().st_size > 0  # the hot journal this test is about

    trials = run(
        [sys.executable, "-m", "analysis.trials", "--storage", url, "--study-name", "tiny"]
        + ["--csv", str(tmp_path / "trials.csv")]
    )
    assert trials.returncode == 0, trials.stderr
    assert "readonly" not in trials.stderr
    rerun = run([*args, "--trials", "2"])
    assert rerun.returncode == 0, rerun.stderr
    v = view(url, "tiny")
    check_records(v, target=2, name="tiny")
    assert v.by_state() == {"COMPLETE": 2, "FAIL": 1}  # the killed one failed and queued again
    assert not journal.exists()
