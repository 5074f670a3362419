"""``analysis.load``: a study database read into frames, never written, bad storage refused."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from analysis_db import digest, make_study_db, populate_study, run_cli, url

from analysis.load import load_study
from analysis.views.frontier import run_frontier
from study.errors import UsageError
from study.result import TRIAL_ATTRS


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_db(tmp_path_factory.mktemp("study") / "study.db")


def test_load_study_gives_one_row_per_trial_and_curve_point(db: Path) -> None:
    data = load_study(url(db))  # the only study: no name needed
    assert data.study_name == "cpu-300s"
    assert data.direction == "MINIMIZE"
    trials = data.trials
    assert len(trials) == 25
    assert trials["state"].value_counts().to_dict() == {"COMPLETE": 24, "FAIL": 1}
    for name in set(TRIAL_ATTRS) - {"config", "versions"}:
        assert name in trials.columns, name
    assert {
        "config.model.n_layer",
        "config.lr",
        "versions.torch",
        "param.lr",
        "fail_reason",
        "trial_id",
    } <= set(trials.columns)
    first = trials.iloc[0]
    assert first["config.model.d_model"] == first["d_model"] == 64
    assert first["value"] == pytest.approx(first["val_ppl"])
    failed = trials[trials["state"] == "FAIL"].iloc[0]
    assert failed["fail_reason"] == "diverged: loss became nan at step 12"
    assert math.isnan(failed["value"]) and math.isnan(failed["params"])
    assert len(data.complete()) == 24

    assert len(data.curves) == 24 * 5
    assert data.curves["val_loss"].isna().sum() == 1  # the stored null stays null
    assert (
        data.curves.groupby("trial_number")["tokens"]
        .apply(lambda s: s.is_monotonic_increasing)
        .all()
    )
    assert set(data.curves["trial_id"]) == set(
        trials.loc[trials["state"] == "COMPLETE", "trial_id"]
    )
    assert len(data.samples) == 24 and data.samples["prompt"].eq("Once upon a time").all()


def test_loading_never_writes_to_the_database(db: Path) -> None:
    before = digest(db)
    listing = sorted(p.name for p in db.parent.iterdir())
    load_study(url(db), "cpu-300s")
    assert digest(db) == before
    assert sorted(p.name for p in db.parent.iterdir()) == listing


def test_missing_file_is_refused_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(UsageError, match="no study database"):
        load_study(url(missing))
    assert not missing.exists()
    assert list(tmp_path.iterdir()) == []


def test_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("this is not a database\n" * 20)
    before = digest(text)
    with pytest.raises(UsageError, match="not an SQLite database"):
        load_study(url(text))
    assert digest(text) == before


def test_database_without_optuna_tables_is_refused_untouched(tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("create table things (x integer)")
    before = digest(other)
    with pytest.raises(UsageError, match="holds no Optuna study"):
        load_study(url(other))
    assert digest(other) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


@pytest.mark.slow
def test_without_a_name_the_most_recently_run_study_is_read_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import optuna

    path = make_study_db(tmp_path / "two.db")  # cpu-300s: run first
    optuna.create_study(study_name="gpu-300s", storage=url(path))  # no trials: ranks lowest
    with caplog.at_level("WARNING", logger="analysis.load"):
        assert load_study(url(path)).study_name == "cpu-300s"
    # Run later, and sorting first by name: picked for its activity, not its name.
    populate_study(url(path), study_name="a-newer", seed=1)
    with caplog.at_level("WARNING", logger="analysis.load"):
        assert load_study(url(path)).study_name == "a-newer"
    assert "holds 3 studies; reading 'a-newer', the most recently run" in caplog.text
    done = run_cli("analysis.frontier", "--storage", url(path))
    assert done.returncode == 0, done.stderr
    named = [line for line in done.stderr.splitlines() if "most recently run" in line]
    assert len(named) == 1 and "'a-newer'" in named[0]
    with pytest.raises(UsageError, match="no study named 'nope'.*a-newer, cpu-300s, gpu-300s"):
        load_study(url(path), "nope")
    assert load_study(url(path), "gpu-300s").trials.empty


def set_schema_version(path: Path, version: str) -> None:
    import sqlalchemy as sa

    from study.storage import schema

    engine = sa.create_engine(url(path))
    with engine.begin() as conn:
        conn.execute(
            sa.update(schema.meta)
            .where(schema.meta.c.key == "schema_version")
            .values(value=version)
        )
    engine.dispose()


@pytest.mark.slow
def test_newer_harness_schema_is_refused_in_one_line(tmp_path: Path) -> None:
    from study.storage.schema import SCHEMA_VERSION

    path = make_study_db(tmp_path / "newer.db")
    set_schema_version(path, str(SCHEMA_VERSION + 1))
    before = digest(path)
    with pytest.raises(
        UsageError,
        match=f"newer version of this harness \\(schema "
        f"{SCHEMA_VERSION + 1}, this one reads {SCHEMA_VERSION}",
    ):
        load_study(url(path))
    result = run_cli("analysis.frontier", "--storage", url(path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "newer version of this harness" in result.stderr and "Traceback" not in result.stderr
    assert digest(path) == before


@pytest.mark.slow
def test_older_harness_schema_loads_for_analysis_and_upgrades_for_a_study(tmp_path: Path) -> None:
    """The analysis reads old studies untouched; a study run accepts the versions it upgrades in
    place (``schema.MIGRATES_FROM``) and refuses older ones."""
    from study.storage.schema import SCHEMA_VERSION
    from study.storage.store import inspect_storage

    path = make_study_db(tmp_path / "older.db")
    set_schema_version(path, str(SCHEMA_VERSION - 1))
    before = digest(path)
    data = load_study(url(path))
    assert len(data.complete()) == 24 and len(data.curves) == 120
    assert digest(path) == before
    assert inspect_storage(url(path), "cpu-300s").study_exists
    set_schema_version(path, "0")
    with pytest.raises(UsageError, match="holds harness schema version 0"):
        inspect_storage(url(path), "cpu-300s")
    set_schema_version(path, "v2-draft")  # not a version number: neither older nor newer
    with pytest.raises(UsageError, match="holds harness schema version v2-draft"):
        load_study(url(path))


@pytest.mark.slow
def test_load_from_a_postgresql_server() -> None:
    """The same reader on a real server (``.ci/run`` sets the URL; skipped where none is)."""
    import uuid

    import optuna
    import sqlalchemy as sa
    from studyrun import server_url

    from study.storage import schema

    server = server_url("STUDY_TEST_POSTGRES_URL")
    engine = sa.create_engine(server)
    try:
        engine.connect().close()
    except (sa.exc.SQLAlchemyError, ImportError) as exc:
        pytest.skip(f"no PostgreSQL answers at {server}: {exc}")
    finally:
        engine.dispose()
    name = f"analysis-test-{uuid.uuid4().hex[:12]}"
    try:
        populate_study(server, study_name=name)
        data = load_study(server, name)
        assert len(data.trials) == 25 and len(data.curves) == 120 and len(data.samples) == 24
        assert "N* (20 tokens/param, 300 s) on cpu" in run_frontier(storage=server, study_name=name)
    finally:
        optuna.delete_study(study_name=name, storage=server)
        engine = sa.create_engine(server)
        with engine.begin() as conn:
            for table in (schema.curve, schema.sample):
                conn.execute(sa.delete(table).where(table.c.study_name == name))
        engine.dispose()
