"""Hostile study databases (random byte corruption of a copy of a small real study, a truncated
file, missing tables and columns, non-numeric and malformed values, hostile values in what the
workers read: a trial's worker stamp and heartbeat, the retry of a written-off trial, the study's
run count, the harness rows' trial numbers) given to every analysis command and to ``study.run``:
no traceback, exit 0 or 2, the file untouched by the analysis and by a run that refuses it."""

from __future__ import annotations

import importlib
import json
import os
import random
import shutil
import socket
import sqlite3
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
from analysis_db import digest, make_study_db, url
from studyrun import DATA, write_sweep


def _sql(*statements: str) -> Callable[[Path], None]:
    def apply(db: Path) -> None:
        with sqlite3.connect(db) as conn:
            for statement in statements:
                conn.execute(statement)
        conn.close()

    return apply


def _flip(seed: int, count: int = 48) -> Callable[[Path], None]:
    def apply(db: Path) -> None:
        data = bytearray(db.read_bytes())
        rng = random.Random(seed)
        for _ in range(count):
            data[rng.randrange(100, len(data))] = rng.randrange(256)  # past the file header
        db.write_bytes(bytes(data))

    return apply


def _truncate(db: Path) -> None:
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])


def _attr(key: str, value: object) -> Callable[[Path], None]:
    return _sql(
        f"UPDATE trial_user_attributes SET value_json = '{json.dumps(value)}' WHERE key = '{key}'"
    )


CASES: dict[str, Callable[[Path], None]] = {
    **{f"bytes-{seed}": _flip(seed) for seed in range(4)},
    "truncated": _truncate,
    "no-curve-column": _sql("ALTER TABLE harness_curve DROP COLUMN val_loss"),
    "no-harness-tables": _sql("DROP TABLE harness_curve", "DROP TABLE harness_sample"),
    "text-numbers": _attr("tokens_per_second", "fast"),
    "text-params": _attr("params", "many"),
    "null-loss": _attr("val_loss", None),
    "bad-json": _sql("UPDATE trial_user_attributes SET value_json = '{' WHERE key = 'params'"),
    "mathtext-device": _attr("device_name", "$\\frac{1}{0}$ ^_^ $"),
    "no-trials": _sql("DELETE FROM trial_values", "DELETE FROM trials"),
    # What study.run's workers read of a running trial (study.storage.stale): its worker stamp
    # (on this host, so its pid is looked up) and its heartbeat.
    "text-pid": _attr("worker", {"host": socket.gethostname(), "pid": "abc", "start": "x"}),
    "huge-pid": _attr("worker", {"host": socket.gethostname(), "pid": 10**30, "boot": 7}),
    "list-worker": _attr("worker", [socket.gethostname(), 1]),
    "nan-heartbeat": _sql(
        "UPDATE trial_user_attributes SET value_json = 'NaN' WHERE key = 'heartbeat'"
    ),
    "text-heartbeat": _attr("heartbeat", "soon"),
    # A trial written off whose retry was never queued, queued with parameters that are not.
    "text-fixed-params": _sql(
        "UPDATE trial_user_attributes SET value_json = '\"stale: gone\"' WHERE key = 'fail_reason'",
        "INSERT INTO trial_system_attributes (trial_id, key, value_json) "
        "SELECT trial_id, 'fixed_params', '\"x\"' FROM trials WHERE state = 'FAIL'",
    ),
    "list-retry-of": _sql(
        "INSERT INTO trial_user_attributes (trial_id, key, value_json) "
        "SELECT trial_id, 'retry_of', '[1, 2]' FROM trials WHERE state = 'FAIL'"
    ),
    "text-runs": _sql(
        "INSERT INTO study_system_attributes (study_id, key, value_json) "
        "SELECT study_id, 'five_minute_study:runs', '\"many\"' FROM studies"
    ),
    "text-row-number": _sql("UPDATE harness_curve SET trial_number = 'x' WHERE idx = 0"),
    "text-max-stories": _sql(
        "INSERT INTO study_user_attributes (study_id, key, value_json) "
        "SELECT study_id, 'max_stories', '\"lots\"' FROM studies"
    ),
}


def _commands(tmp: Path, storage: str) -> list[tuple[str, list[str]]]:
    """Each command on ``storage``; the fits with the coarse grid of starts and fewer bootstrap
    resamples (what a hostile row does to a command is in its reading, not in how many starts
    or resamples it then fits: every code path still runs)."""
    base = ["--storage", storage]
    coarse = ["--grid", "coarse"]
    return [
        ("trials", [*base, "--csv", str(tmp / "t.csv")]),
        ("compare", base),
        ("crossover", [*base, "--bootstrap", "100"]),
        ("curves", [*base, "--plot", str(tmp / "c.png")]),
        ("frontier", [*base, "--plot", str(tmp / "f.png")]),
        ("predict", [*base, *coarse]),
        ("scaling_law", [*base, *coarse, "--bootstrap", "20"]),
        ("report", [*base, *coarse, "--out", str(tmp / "r.html")]),
    ]


@pytest.fixture(scope="module")
def real_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The analysis tests' study, with one trial RUNNING as a live worker of this host left it
    (stamped by this process, heartbeat now)."""
    import optuna

    from study.storage.stale import this_worker

    path = make_study_db(tmp_path_factory.mktemp("fuzz") / "study.db")
    study = optuna.load_study(study_name="cpu-300s", storage=url(path))
    trial = study.ask()
    trial.set_user_attr("worker", this_worker())
    trial.set_user_attr("heartbeat", time.time())
    return path


def _exit_status(module: str, argv: list[str]) -> int:
    main = importlib.import_module(f"analysis.{module}").main
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception:  # a traceback a user would see
        pytest.fail(f"analysis.{module} {' '.join(argv)}:\n{traceback.format_exc()}")
    return 0


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_analysis_command_survives_a_hostile_database(
    real_study: Path, tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "study.db"
    shutil.copy(real_study, db)
    CASES[case](db)
    before = digest(db)
    commands = _commands(tmp_path, url(db))
    # Every command reads through analysis.load; each case also runs one more command in turn
    # (all of them over the cases), which keeps the test to about a minute on two cores.
    turn = sorted(CASES).index(case) % (len(commands) - 1) + 1
    for module, argv in (commands[0], commands[turn]):
        status = _exit_status(module, argv)
        assert status in (0, 2), (module, status)
        assert digest(db) == before, module
    capsys.readouterr()


@pytest.mark.slow  # study.run's worker may start a trainer process
@pytest.mark.parametrize("case", sorted(CASES))
def test_study_run_survives_a_hostile_database(
    real_study: Path, tmp_path: Path, cache_dir: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``study.run`` joining the hostile study (which already holds more complete trials than
    it asks for, so it trains nothing): exit 0 or 2, no traceback, and a refusal writes nothing."""
    from study.run import main

    db = tmp_path / "study.db"
    shutil.copy(real_study, db)
    CASES[case](db)
    before = digest(db)
    argv = ["--storage", url(db), "--study-name", "cpu-300s", "--trials", "1", "--budget", "1"]
    argv += ["--sweep", str(write_sweep(tmp_path)), "--data", str(DATA), "--device", "cpu"]
    argv += ["--cache-dir", str(cache_dir), "--keep", "none"]
    try:
        status = main(argv)
    except SystemExit as exc:
        status = int(exc.code or 0)
    except Exception:  # a traceback a user would see
        pytest.fail(f"study.run on {case}:\n{traceback.format_exc()}")
    err = capsys.readouterr().err
    assert status in (0, 2), (status, err)
    assert "Traceback" not in err, err
    if status == 2:
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db", "tiny.py"], os.listdir(
        tmp_path
    )
