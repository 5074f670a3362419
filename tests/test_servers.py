"""One study shared by two ``python -m study.run`` processes on a real database server, and the
study lock that keeps them from starting more trials than asked for.

This stands for the multi-machine recipe in the README: the same command on every machine,
one ``--storage`` URL and ``--study-name``. ``.ci/run`` sets the URLs; elsewhere the tests skip
and say which variable to set. Servers are shared with other test runs: each test uses a study
name of its own and deletes it (and its harness rows) afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from studyrun import (
    CURVE_POINTS,
    REPO,
    assert_clean_output,
    check_finished,
    run,
    server_url,
    study_args,
    trainer_children,
    view,
    write_sweep,
)

from study.storage import schema
from study.storage.study_lock import StudyLock

pytestmark = pytest.mark.slow  # every test here starts processes or trains

SERVERS = {"postgresql": "STUDY_TEST_POSTGRES_URL", "mysql": "STUDY_TEST_MYSQL_URL"}
PROCESSES, WORKERS, TRIALS = 2, 2, 4


@pytest.fixture(params=sorted(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(URL, a fresh study name) on a reachable server; the study is deleted afterwards."""
    variable = SERVERS[request.param]
    url = server_url(variable)
    engine = sa.create_engine(url, pool_pre_ping=True)  # outlives a server restart
    try:
        engine.connect().close()
    except sa.exc.SQLAlchemyError as exc:
        engine.dispose()
        pytest.skip(
            f"{request.param} at {url} (${variable} or its default) is not reachable: {exc}"
        )
    name = f"test-faults-{uuid.uuid4().hex[:12]}"
    try:
        yield url, name
    finally:
        with engine.begin() as conn:
            for table in (schema.curve, schema.sample):
                if sa.inspect(conn).has_table(table.name):
                    conn.execute(table.delete().where(table.c.study_name == name))
        try:
            optuna.delete_study(study_name=name, storage=url)
        except KeyError:
            pass
        engine.dispose()


def test_two_processes_of_two_workers_share_one_study(
    server: tuple[str, str], tmp_path: Path, cache_dir: Path
) -> None:
    """Two ``study.run`` processes of 2 workers each, started together against one server
    study, finish it between them: exactly the asked trials complete, each once, with its rows,
    and neither process ends before the study is done."""
    url, name = server
    args = study_args(
        url,
        write_sweep(tmp_path),
        cache_dir,
        "--trials",
        str(TRIALS),
        "--workers",
        str(WORKERS),
        "--study-name",
        name,
    )
    logs = [tmp_path / f"process-{i}.log" for i in range(PROCESSES)]
    procs = []
    for log in logs:
        with open(log, "wb") as out:
            procs.append(subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT))
    try:
        for proc in procs:
            proc.wait(300)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, log in zip(procs, logs, strict=True):
        text = log.read_text()
        assert proc.returncode == 0, text
        assert_clean_output(text)
        assert f"best {TRIALS} of {TRIALS} complete trials" in text  # each saw it finished

    v = view(url, name)
    check_finished(v, target=TRIALS, name=name)
    assert v.by_state() == {"COMPLETE": TRIALS}
    assert sum(len(rows) for rows in v.curve.values()) == TRIALS * CURVE_POINTS
    # Each process seeds its samplers apart from the other's, so no configuration runs twice.
    assert len({tuple(sorted(t.params.items())) for t in v.trials}) == TRIALS
    assert len({t.user_attrs["worker"]["pid"] for t in v.trials}) >= 2


def test_an_existing_study_is_rerun_and_joined_late(
    server: tuple[str, str], tmp_path: Path, cache_dir: Path
) -> None:
    """Every run but the first meets a study that exists: a rerun of a finished study does
    nothing and succeeds, and a machine joining a running study shares it. (MariaDB once
    refused both with exit 2: its storage check selected a column named ``key``.)"""
    url, name = server
    sweep = write_sweep(tmp_path)

    def args(trials: int) -> list[str]:
        return study_args(url, sweep, cache_dir, "--trials", str(trials), "--study-name", name)

    first = run(args(1))
    assert first.returncode == 0, first.stdout + first.stderr
    again = run(args(1))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"[{name}] {url}: 1/1 complete" in again.stdout
    assert len(view(url, name).trials) == 1  # nothing more to do, nothing done

    mark = uuid.uuid4().hex
    env = {**os.environ, "STUDY_TEST_MARK": mark}
    logs = [tmp_path / "first.log", tmp_path / "late.log"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with open(logs[0], "wb") as out:
            procs.append(
                subprocess.Popen(
                    args(TRIALS), cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env
                )
            )
        deadline = time.monotonic() + 120
        while not trainer_children(mark):  # join while the first machine is training
            assert procs[0].poll() is None and time.monotonic() < deadline, logs[0].read_text()
            time.sleep(0.1)
        with open(logs[1], "wb") as out:
            procs.append(
                subprocess.Popen(
                    args(TRIALS), cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env
                )
            )
        for proc in procs:
            proc.wait(300)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, log in zip(procs, logs, strict=True):
        text = log.read_text()
        assert proc.returncode == 0, text
        assert_clean_output(text)
        assert f"best {TRIALS} of {TRIALS} complete trials" in text
    check_finished(view(url, name), target=TRIALS, name=name)


MYSQLADMIN, MARIADBD = "mysqladmin", "/usr/sbin/mariadbd"


def _server_control(url: str) -> tuple[list[str], list[str]] | None:
    """Commands that stop and start the local server behind ``url`` (Debian's PostgreSQL
    cluster tools; for MariaDB, ``mysqladmin shutdown`` and the server started detached, as
    the machine started it), or None where this machine has no such control."""
    parsed = sa.engine.make_url(url)
    if parsed.host not in ("127.0.0.1", "localhost") or os.geteuid() != 0:
        return None
    if parsed.get_backend_name() == "postgresql" and shutil.which("pg_lsclusters"):
        listed = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
        for line in listed.splitlines():
            version, cluster, port = line.split()[:3]
            if int(port) == (parsed.port or 5432):
                return (
                    ["pg_ctlcluster", version, cluster, "stop", "-m", "fast"],
                    ["pg_ctlcluster", version, cluster, "start"],
                )
    if (
        parsed.get_backend_name() == "mysql"
        and shutil.which("mysqladmin")
        and Path(MARIADBD).exists()
    ):
        return (
            [
                MYSQLADMIN,
                f"--user={parsed.username}",
                f"--host={parsed.host}",
                f"--port={parsed.port or 3306}",
                "shutdown",
            ],
            ["sh", "-c", f"setsid {MARIADBD} --user=mysql </dev/null >/dev/null 2>&1 &"],
        )
    return None


def _wait_reachable(url: str, timeout: float = 120.0) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                engine.connect().close()
                return
            except sa.exc.OperationalError:
                assert time.monotonic() < deadline, f"{url} did not come back"
                time.sleep(0.5)
    finally:
        engine.dispose()


OUTAGE_S = 25.0  # longer than the 11 s the old fixed retries rode out


def test_a_server_away_mid_trial_loses_nothing(
    server: tuple[str, str], tmp_path: Path, cache_dir: Path
) -> None:
    """The server stops for OUTAGE_S while a trial trains, then starts again: the run rides it
    out (warnings, no traceback), exits 0, and every trial completes once with its rows."""
    url, name = server
    control = _server_control(url)
    if control is None:
        pytest.skip(f"no way to stop and start the server behind {url} on this machine")
    stop, start = control
    mark = uuid.uuid4().hex
    args = study_args(
        url, write_sweep(tmp_path), cache_dir, "--trials", "2", "--study-name", name, budget=4.0
    )
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "STUDY_TEST_MARK": mark},
        )
    try:
        deadline = time.monotonic() + 120
        while not trainer_children(mark):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        subprocess.run(stop, check=True, capture_output=True)
        try:
            time.sleep(OUTAGE_S)
        finally:
            subprocess.run(start, check=True, capture_output=True)  # never left stopped
            _wait_reachable(url)
        proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert proc.returncode == 0, text
    assert_clean_output(text)
    assert "retrying for up to" in text  # it did meet the outage
    v = view(url, name)
    check_finished(v, target=2, name=name, budget=4.0)
    assert v.by_state() == {"COMPLETE": 2}  # none failed, none lost


HOLDER = """
import sys
from study.storage.study_lock import StudyLock
lock = StudyLock(sys.argv[1], sys.argv[2])
with lock:
    print("held", flush=True)
    sys.stdin.read()  # until the test closes stdin, or kills this process
"""


def _lock_excludes_and_dies_with_its_holder(url: str, name: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, name],
        cwd=REPO,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        taken = threading.Event()

        def take() -> None:
            lock = StudyLock(url, name)
            with lock:
                taken.set()
            lock.close()

        waiter = threading.Thread(target=take, daemon=True)
        waiter.start()
        assert not taken.wait(1.0)  # another process holds it
        holder.kill()  # SIGKILL: the holder never releases it; its death must
        holder.wait()
        assert taken.wait(60)
        waiter.join(10)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_study_lock_on_a_server(server: tuple[str, str]) -> None:
    _lock_excludes_and_dies_with_its_holder(*server)


def test_study_lock_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _lock_excludes_and_dies_with_its_holder(url, "tiny")
    lock = StudyLock(url, "tiny")
    assert lock._path is not None and lock._path.parent == tmp_path  # beside the database
    with lock:
        assert lock._path.exists()
    assert not lock._path.exists()  # removed when let go
    assert sorted(tmp_path.iterdir()) == []  # nothing beside the (unopened) database


def _a_run_behind_a_frozen_holder_says_so_and_stops(
    url: str, name: str, tmp_path: Path, cache_dir: Path
) -> None:
    """A process stopped (SIGSTOP) while holding the study lock: a run of the study waits,
    says what it waits for, and still stops at SIGTERM, one line and no traceback (issue 18 #4:
    ``pg_advisory_lock`` waited in the server, deaf to signals)."""
    import signal

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, name],
        cwd=REPO,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    runner = None
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        holder.send_signal(signal.SIGSTOP)
        args = study_args(
            url, write_sweep(tmp_path), cache_dir, "--trials", "1", "--study-name", name
        )
        runner = subprocess.Popen(
            args, cwd=REPO, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        assert runner.stderr is not None
        seen = []
        for line in runner.stderr:  # ends if the run exits: then the assert below says why
            seen.append(line)
            if "for the study lock" in line:
                break
        assert f"study {name!r}" in seen[-1] and "held by another run" in seen[-1], seen
        runner.send_signal(signal.SIGTERM)
        rest = runner.communicate(timeout=60)[1]
        assert runner.returncode != 0 and "Traceback" not in rest, rest
    finally:
        for proc in (runner, holder):
            if proc is not None and proc.poll() is None:
                proc.kill()  # SIGKILL ends a stopped process too
                proc.wait()


def test_a_frozen_lock_holder_leaves_a_server_run_stoppable(
    server: tuple[str, str], tmp_path: Path, cache_dir: Path
) -> None:
    _a_run_behind_a_frozen_holder_says_so_and_stops(*server, tmp_path, cache_dir)


def test_a_frozen_lock_holder_leaves_an_sqlite_run_stoppable(
    tmp_path: Path, cache_dir: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _a_run_behind_a_frozen_holder_says_so_and_stops(url, "tiny", tmp_path, cache_dir)


@pytest.fixture
def fresh_database(server: tuple[str, str]) -> Iterator[str]:
    """The URL of a new, empty database on the server, dropped afterwards."""
    url = sa.engine.make_url(server[0])
    name = f"study_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if admin.dialect.name == "postgresql":  # connections left by killed processes
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name"
                    ),
                    {"name": name},
                )
            conn.execute(sa.text(f"DROP DATABASE {name}"))
        admin.dispose()


def test_processes_creating_a_new_server_database_at_once_all_succeed(fresh_database: str) -> None:
    """Four processes make Optuna's and the harness tables in one new database at the same
    moment (issue 18 #6 on a server): the losers of the race find the winner's tables."""
    from test_store import OPENER

    go = time.time() + 3.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, fresh_database, f"s{i}", str(go)],
            cwd=REPO,
            text=True,
            stderr=subprocess.PIPE,
        )
        for i in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    assert set(optuna.get_all_study_names(storage=fresh_database)) == {f"s{i}" for i in range(4)}


def test_a_server_study_of_schema_1_is_upgraded_in_place(fresh_database: str) -> None:
    from test_store import upgrade_in_place

    upgrade_in_place(fresh_database)
