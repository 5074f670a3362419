"""``study.store``: reading a storage without writing, the harness rows, storage retries."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from studyrun import make_result

from study import schema, store
from study.errors import UsageError


def test_retry_rides_out_transient_errors_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store.time, "sleep", lambda s: None)
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
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A server away for minutes (the old fixed 8 tries gave up after about 11 s): retried up
    to ``$STUDY_STORAGE_PATIENCE_S`` seconds, at most 5 s apart, then the error is raised."""
    clock = [0.0]
    monkeypatch.setattr(store.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(store.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    gone = sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    back_at, recovered = [60.0], []

    def server() -> str:
        if clock[0] < back_at[0]:
            raise gone
        return "up"

    assert store.retry(server, what="test", on_recovered=lambda: recovered.append(clock[0])) \
        == "up"
    assert 60.0 <= recovered[0] <= 65.0  # came back within one 5-s step of the server

    monkeypatch.setenv("STUDY_STORAGE_PATIENCE_S", "100")
    clock[0], back_at[0] = 0.0, float("inf")
    with pytest.raises(store.StorageGone, match=r"could not test: the database did not answer "
                       r"for 9\ds \(.*server closed the connection\)"):
        store.retry(server, what="test")
    assert 95.0 <= clock[0] <= 100.0
    monkeypatch.setenv("STUDY_STORAGE_PATIENCE_S", "soon")
    with pytest.raises(UsageError, match="STUDY_STORAGE_PATIENCE_S must be a number"):
        store.retry(server, what="test")


def test_retry_raises_at_once_what_waiting_does_not_cure(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only SQLite file is not "busy": no retries, no waiting."""
    path = tmp_path / "study.db"
    store.open_storage(f"sqlite:///{path}").engine.dispose()
    engine = sa.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    monkeypatch.setattr(store.time, "sleep", lambda s: pytest.fail("retried"))
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
        store.write_trial_rows(engine, trial_id=7, study_name="s", trial_number=3,
                               result=make_result())
    with engine.connect() as conn:
        rows = conn.execute(sa.select(schema.curve).order_by(schema.curve.c.idx)).all()
        assert [(r.idx, r.tokens, r.val_loss) for r in rows] == [(0, 512, 5.1), (1, 1024, 4.2)]
        assert conn.execute(sa.select(schema.sample.c.text)).scalars().all() == [
            "Once upon a time there was"]
    assert store.trial_numbers_with_rows(engine, "s") == {3}
    assert store.trial_numbers_with_rows(engine, "other") == set()
    store.delete_trial_rows(engine, 7)
    assert store.trial_numbers_with_rows(engine, "s") == set()


def test_inspect_storage_reads_a_study_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "study.db"
    url = f"sqlite:///{path}"
    assert store.inspect_storage(url, "s").has_optuna is False  # no file yet, none made
    assert not path.exists()
    study = optuna.create_study(storage=store.open_storage(url), study_name="s",
                                direction="maximize")
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
