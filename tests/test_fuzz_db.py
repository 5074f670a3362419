"""Hostile study databases (random byte corruption of a copy of a small real study, a truncated
file, missing tables and columns, non-numeric and malformed values) given to every analysis
command: no traceback, exit 0 or 2, the file untouched."""

from __future__ import annotations

import importlib
import json
import random
import shutil
import sqlite3
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
from analysis_db import digest, make_study_db, url


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
}


def _commands(tmp: Path, storage: str) -> list[tuple[str, list[str]]]:
    base = ["--storage", storage]
    return [
        ("trials", [*base, "--csv", str(tmp / "t.csv")]),
        ("compare", base),
        ("crossover", base),
        ("curves", [*base, "--plot", str(tmp / "c.png")]),
        ("frontier", [*base, "--plot", str(tmp / "f.png")]),
        ("predict", base),
        ("scaling_law", base),
        ("report", [*base, "--out", str(tmp / "r.html")]),
    ]


@pytest.fixture(scope="module")
def real_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_db(tmp_path_factory.mktemp("fuzz") / "study.db")


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
