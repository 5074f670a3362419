"""``study.merge`` and ``study.run`` refuse a missing or foreign SQLite file before writing
anything: one line, exit 2, the file (or its absence) as it was."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from studyrun import REPO, run, study_args, write_sweep
from test_merge import make_study


def _foreign(path: Path, table: str) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, note TEXT)")
        conn.execute(f"INSERT INTO {table} (note) VALUES ('mine')")
    conn.close()
    return path


def _snapshot(path: Path) -> tuple[bytes, int] | None:
    return (path.read_bytes(), path.stat().st_mtime_ns) if path.exists() else None


def _merge(src: str, dst: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "study.merge", src, dst],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _refused(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("source", ["missing", "trials", "notes"])
def test_merge_refuses_a_missing_or_foreign_source(tmp_path: Path, source: str) -> None:
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    if source != "missing":
        _foreign(src, source)
    make_study(f"sqlite:///{dst}", "kept", 2)
    before = _snapshot(src), _snapshot(dst)
    _refused(_merge(f"sqlite:///{src}", f"sqlite:///{dst}"))
    assert (_snapshot(src), _snapshot(dst)) == before


@pytest.mark.slow
@pytest.mark.parametrize("table", ["trials", "notes"])
def test_merge_refuses_a_foreign_destination(tmp_path: Path, table: str) -> None:
    src, dst = tmp_path / "src.db", _foreign(tmp_path / "dst.db", table)
    make_study(f"sqlite:///{src}", "tiny", 2)
    before = _snapshot(src), _snapshot(dst)
    _refused(_merge(f"sqlite:///{src}", f"sqlite:///{dst}"))
    assert (_snapshot(src), _snapshot(dst)) == before


@pytest.mark.slow
@pytest.mark.parametrize("table", ["trials", "studies", "notes"])
def test_run_refuses_a_foreign_sqlite_file(tmp_path: Path, cache_dir: Path, table: str) -> None:
    db = _foreign(tmp_path / "theirs.db", table)
    before = _snapshot(db)
    args = study_args(f"sqlite:///{db}", write_sweep(tmp_path), cache_dir, "--trials", "1")
    proc = run(args)
    _refused(proc)
    assert "another application" in proc.stderr or "not Optuna's" in proc.stderr
    assert _snapshot(db) == before
