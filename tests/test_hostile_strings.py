"""Strings read from a study database are shown clean: terminal escape sequences and other
control characters stripped, and CSV cells that a spreadsheet would run as a formula (starting
with = + - @) neutralised."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
from analysis_db import make_study_db, run_cli, url

ESCAPE = "\x1b[2J\x1b]0;owned\x07"
FORMULA = '=HYPERLINK("http://evil.example","click")'


def _plant(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE trial_user_attributes SET value_json = ? WHERE key = 'device_name'",
            (json.dumps(f"cpu{ESCAPE} x86_64"),),
        )
        conn.execute(
            "UPDATE trial_user_attributes SET value_json = ? WHERE key = 'fail_reason'",
            (json.dumps(FORMULA),),
        )
        conn.execute("UPDATE harness_sample SET text = ?", (f"Once{ESCAPE} upon",))
    conn.close()


@pytest.mark.slow
def test_control_characters_and_formulas_from_a_database_are_neutralised(tmp_path: Path) -> None:
    db = make_study_db(tmp_path / "study.db")
    _plant(db)
    proc = run_cli("analysis.trials", "--storage", url(db), "--csv", "-")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert {r["device_name"] for r in rows} - {""} == {"cpu[2J]0;owned x86_64"}
    reasons = [r["fail_reason"] for r in rows if r["fail_reason"]]
    assert reasons and all(r == "'" + FORMULA for r in reasons)
    for row in rows:  # no text cell a spreadsheet would evaluate
        for value in row.values():
            if value[:1] in ("=", "+", "@") or (value[:1] == "-" and not _number(value)):
                raise AssertionError(value)
    compare = run_cli("analysis.compare", "--storage", url(db))
    assert "\x1b" not in compare.stdout + compare.stderr, compare.stdout


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
