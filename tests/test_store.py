"""``study.storage.store`` and ``study.storage.retry``: reading a storage without writing, the harness rows,
upgrading older harness tables, creating tables from several processes at once, retries."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from studyrun import make_result

from study.errors import UsageError
from study.storage import retry as retry_module
from study.storage import schema, store


def test_retry_rides_out_transient_errors_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry_module.time, "sleep", lambda s: None)
    calls = []

    def locked_twice(x: int) -> int:
        calls.append(x)
        if len(calls) < 3:
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
        return x * 2

    assert store.retry(locked_twice, 21, what="test") == 42 and len(calls) == 3

    def broken() -> None:
        calls.append(0)
        raise ValueError("a bug")

    calls.clear()
    with pytest.raises(ValueError):
        store.retry(broken, what="test")
    assert calls == [0]


def test_retry_rides_out_an_outage_for_its_patience_then_gives_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server away for minutes (the old fixed 8 tries gave up after about 11 s): retried up
    to ``$STUDY_STORAGE_PATIENCE_S`` seconds, at most 5 s apart, then the error is raised."""
    clock = [0.0]
    monkeypatch.setattr(retry_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(retry_module.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    gone = sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    back_at, recovered = [60.0], []

    def server() -> str:
        if clock[0] < back_at[0]:
            raise gone
        return "up"

    assert store.retry(server, what="test", on_recovered=lambda: recovered.append(clock[0])) == "up"
    assert 60.0 <= recovered[0] <= 65.0  # came back within one 5-s step of the server

    monkeypatch.setenv("STUDY_STORAGE_PATIENCE_S", "100")
    clock[0], back_at[0] = 0.0, float("inf")
    with pytest.raises(
        store.StorageGone,
        match=r"could not test: the database did not answer "
        r"for 9\ds \(.*server closed the connection\)",
    ):
        store.retry(server, what="test")
    assert 95.0 <= clock[0] <= 100.0
    monkeypatch.setenv("STUDY_STORAGE_PATIENCE_S", "soon")
    with pytest.raises(UsageError, match="STUDY_STORAGE_PATIENCE_S must be a number"):
        store.retry(server, what="test")


def test_retry_raises_at_once_what_waiting_does_not_cure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only SQLite file is not "busy": no retries, no waiting."""
    path = tmp_path / "study.db"
    store.open_storage(f"sqlite:///{path}").engine.dispose()
    engine = sa.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    monkeypatch.setattr(retry_module.time, "sleep", lambda s: pytest.fail("retried"))
    calls = []

    def write() -> None:
        calls.append(1)
        with engine.begin() as conn:
            conn.execute(schema.meta.insert().values(key="k", value="v"))

    with pytest.raises(sa.exc.OperationalError, match="readonly"):
        store.retry(write, what="test")
    assert calls == [1]
    engine.dispose()


def test_write_trial_rows_replaces_previous_rows(tmp_path: Path) -> None:
    engine = store.open_storage(f"sqlite:///{tmp_path / 'study.db'}").engine
    for _ in range(2):
        store.write_trial_rows(
            engine, trial_id=7, study_name="s", trial_number=3, result=make_result()
        )
    with engine.connect() as conn:
        rows = conn.execute(sa.select(schema.curve).order_by(schema.curve.c.idx)).all()
        assert [(r.idx, r.tokens, r.val_loss, r.eval_tokens) for r in rows] == [
            (0, 512, 5.1, 4096),
            (1, 1024, 4.2, 4096),
        ]
        assert conn.execute(sa.select(schema.sample.c.text)).scalars().all() == [
            "Once upon a time there was"
        ]
    assert store.trial_numbers_with_rows(engine, "s") == {3}
    assert store.trial_numbers_with_rows(engine, "other") == set()
    store.delete_trial_rows(engine, 7)
    assert store.trial_numbers_with_rows(engine, "s") == set()


def test_inspect_storage_reads_a_study_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "study.db"
    url = f"sqlite:///{path}"
    assert store.inspect_storage(url, "s").has_optuna is False  # no file yet, none made
    assert not path.exists()
    study = optuna.create_study(
        storage=store.open_storage(url), study_name="s", direction="maximize"
    )
    study.set_user_attr("budget", 60.0)
    study.set_user_attr("sweep", "default")
    before = path.read_bytes()

    state = store.inspect_storage(url, "s")
    assert state.has_optuna and state.study_exists
    assert state.directions == ("MAXIMIZE",)
    assert state.study_attrs == {"budget": 60.0, "sweep": "default"}
    other = store.inspect_storage(url, "other")
    assert other.has_optuna and not other.study_exists and other.study_attrs == {}
    assert path.read_bytes() == before


def _as_schema_1(url: str) -> None:
    """Turn a new database into one the harness of schema 1 made: no curve ``eval_tokens``."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE harness_curve DROP COLUMN eval_tokens"))
        conn.execute(
            sa.update(schema.meta).where(schema.meta.c.key == "schema_version").values(value="1")
        )
    engine.dispose()


def _version_and_columns(engine: sa.Engine) -> tuple[str, set[str]]:
    with engine.connect() as conn:
        version = conn.execute(sa.select(schema.meta.c.value)).scalar_one()
        return version, {c["name"] for c in sa.inspect(conn).get_columns("harness_curve")}


def upgrade_in_place(url: str) -> None:
    """A schema-1 study with rows, opened by two processes' worth of threads at once: upgraded
    to the current schema once, its old rows kept, new rows carrying ``eval_tokens``."""
    import threading

    engine = store.open_storage(url).engine
    old = make_result(curve=[{"elapsed_s": 1.0, "tokens": 512, "train_loss": 5.0, "val_loss": 5.1}])
    store.write_trial_rows(engine, trial_id=1, study_name="s", trial_number=0, result=old)
    _as_schema_1(url)
    engine.dispose()
    assert store.inspect_storage(url, "s").has_optuna  # a study of schema 1 is not refused
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            store.open_storage(url).engine.dispose()
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    engine = store.open_storage(url).engine
    assert _version_and_columns(engine) == (
        str(schema.SCHEMA_VERSION),
        {c.name for c in schema.curve.columns},
    )
    store.write_trial_rows(engine, trial_id=2, study_name="s", trial_number=1, result=make_result())
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(schema.curve.c.trial_number, schema.curve.c.eval_tokens).order_by(
                schema.curve.c.trial_id, schema.curve.c.idx
            )
        ).all()
    assert [tuple(r) for r in rows] == [(0, None), (1, 4096), (1, 4096)]
    engine.dispose()


def test_a_study_of_schema_1_is_upgraded_in_place(tmp_path: Path) -> None:
    upgrade_in_place(f"sqlite:///{tmp_path / 'study.db'}")


def test_a_newer_or_unknown_schema_is_not_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    store.open_storage(url).engine.dispose()
    engine = sa.create_engine(url)
    for version, message in (
        (str(schema.SCHEMA_VERSION + 1), "newer version"),
        ("0", "holds harness schema version 0"),
    ):
        with engine.begin() as conn:
            conn.execute(sa.update(schema.meta).values(value=version))
        with pytest.raises(UsageError, match=message):
            store.inspect_storage(url, "s")
    engine.dispose()


def test_another_applications_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)"))
    before = path.read_bytes()
    with pytest.raises(UsageError, match=r"holds another application's tables \(customers\)"):
        store.inspect_storage(f"sqlite:///{path}", "s")
    assert path.read_bytes() == before
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE studies (id INTEGER PRIMARY KEY)"))
    with pytest.raises(UsageError, match="a table named studies that is not Optuna's"):
        store.inspect_storage(f"sqlite:///{path}", "s")
    engine.dispose()


def test_a_read_only_file_or_folder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "study.db"
    url = f"sqlite:///{path}"
    store.open_storage(url).engine.dispose()
    path.chmod(0o444)
    with pytest.raises(UsageError, match=r"study\.db is read-only; a study run records"):
        store.inspect_storage(url, "s")
    path.chmod(0o644)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(UsageError, match="is in a read-only folder"):
            store.inspect_storage(url, "s")
    finally:
        tmp_path.chmod(0o755)


OPENER = """
import os, sys, time
from study.storage import store
import optuna
go = float(sys.argv[3])
time.sleep(max(0.0, go - time.time()))  # all start creating at the same moment
optuna.create_study(storage=store.open_storage(sys.argv[1]), study_name=sys.argv[2])
"""


@pytest.mark.slow
def test_processes_creating_one_new_sqlite_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Optuna's table creation (alembic) on a new file is not safe when processes race (issue
    18 #6: "UNIQUE constraint failed: alembic_version.version_num", "table trial_params already
    exists"); ``open_storage`` makes them take turns. Different study names, so no study lock
    orders them."""
    import subprocess
    import sys
    import time

    url = f"sqlite:///{tmp_path / 'study.db'}"
    go = time.time() + 3.0  # past every process's import time
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, url, f"s{i}", str(go)],
            cwd=Path(__file__).resolve().parents[1],
            text=True,
            stderr=subprocess.PIPE,
        )
        for i in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    names = set(optuna.get_all_study_names(storage=url))
    assert names == {f"s{i}" for i in range(4)}
