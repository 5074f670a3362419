"""A database server that takes the connection and then never answers (frozen, not refusing):
every wait on it is bounded by the patience, so a run says so in time, fails or retries as it
does for a refused server, and stops at Ctrl-C (issue 27 #6: no line for 60 s with a patience of
15 s, and the run deaf to Ctrl-C and SIGTERM).

A socket in the test stands in for both servers: it accepts every connection and sends nothing,
which is what a frozen PostgreSQL or MariaDB looks like from the client.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from studyrun import REPO

from study.storage import retry, store

PATIENCE_S = 15.0
DIALECTS = (
    "postgresql+psycopg2://postgres@127.0.0.1:{port}/test",
    "mysql+pymysql://root@127.0.0.1:{port}/test",
)


class FrozenServer:
    """A listening socket that accepts connections, keeps them open, and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:  # the accept timed out (or the socket closed): look at _stop again
                continue
            self._held.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self.sock.close()


@pytest.fixture(params=DIALECTS, ids=("postgresql", "mysql"))
def frozen_url(request: pytest.FixtureRequest) -> Iterator[tuple[str, FrozenServer]]:
    server = FrozenServer()
    try:
        yield request.param.format(port=server.port), server
    finally:
        server.close()


def _start_run(url: str, tmp_path: Path, patience: float) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "study.run", "--storage", url, "--trials", "1"]
    args += ["--budget", "1", "--data", "sample", "--study-name", "frozen"]
    env = {**os.environ, "STUDY_STORAGE_PATIENCE_S": str(patience)}
    env["STUDY_CACHE_DIR"] = str(tmp_path / "cache")
    return subprocess.Popen(args, cwd=REPO, env=env, text=True, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen[str], within: float) -> str:
    """The run's stderr once it has ended, which it must do ``within`` seconds."""
    try:
        return proc.communicate(timeout=within)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"the run gave no answer within {within:.0f}s of a frozen server")


@pytest.mark.slow
def test_a_frozen_server_is_reported_within_the_patience(
    frozen_url: tuple[str, FrozenServer], tmp_path: Path
) -> None:
    """At the start a frozen server is refused as a refused one is: one line, exit 2, written
    before the patience is out."""
    url, server = frozen_url
    err = _finish(_start_run(url, tmp_path, PATIENCE_S), within=PATIENCE_S)
    assert server.accepted.is_set()  # it did reach the socket: not a refused connection
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot open storage"), err
    assert "timeout" in lines[0] or "timed out" in lines[0], err
    assert not (tmp_path / "cache").exists()  # nothing done before the storage answered


@pytest.mark.slow
def test_ctrl_c_stops_a_run_waiting_on_a_frozen_server(
    frozen_url: tuple[str, FrozenServer], tmp_path: Path
) -> None:
    """Ctrl-C while the run waits on a frozen server ends it (exit 130, one line, no
    traceback), with the default patience too; a libpq wait is deaf to signals, so PostgreSQL's
    ends when its connection attempt times out (``retry.connect_timeout_s``, 10 s at most)."""
    url, server = frozen_url
    proc = _start_run(url, tmp_path, retry.PATIENCE_S)
    assert server.accepted.wait(60), "the run never reached the frozen server"
    proc.send_signal(signal.SIGINT)
    err = _finish(proc, within=PATIENCE_S)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.startswith("interrupted"), err


@pytest.mark.slow  # no process, but it waits out a patience on each dialect
def test_retry_rides_a_frozen_server_like_a_refused_one(
    frozen_url: tuple[str, FrozenServer],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Mid-run (every storage call goes through ``retry``): each attempt on a frozen server
    fails in ``answer_timeout_s``, a warning says so, attempts go on, and past the patience
    ``StorageGone`` is raised, as for a server that refuses."""
    url, _ = frozen_url
    monkeypatch.setenv("STUDY_STORAGE_PATIENCE_S", "6")
    engine = sa.create_engine(url, **store.engine_kwargs(url))
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            retry.retry(lambda: engine.connect().close(), what="reach the server")
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    with caplog.at_level(logging.WARNING, logger=retry.__name__):
        worker = threading.Thread(target=attempt, daemon=True)
        worker.start()
        worker.join(60)
    engine.dispose()
    assert not worker.is_alive(), "retry hung on a frozen server"
    assert len(outcome) == 1 and isinstance(outcome[0], retry.StorageGone), outcome
    assert "could not reach the server" in str(outcome[0])
    assert any("retrying for up to" in r.getMessage() for r in caplog.records), caplog.text


def test_server_time_limits_follow_the_patience_and_yield_to_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STUDY_STORAGE_PATIENCE_S", "15")
    pg = retry.server_connect_args("postgresql://u@h/db")
    assert pg["connect_timeout"] == 5 and pg["options"] == "-c statement_timeout=5000"
    assert pg["tcp_user_timeout"] == 5000 and pg["keepalives"] == 1
    my = retry.server_connect_args("mysql+pymysql://u@h/db")
    assert my == {"connect_timeout": 5, "read_timeout": 5, "write_timeout": 5}
    monkeypatch.setenv("STUDY_STORAGE_PATIENCE_S", "300")
    assert retry.connect_timeout_s() == 10 and retry.answer_timeout_s() == 30
    monkeypatch.setenv("STUDY_STORAGE_PATIENCE_S", "0")
    assert retry.connect_timeout_s() == 2  # libpq's least
    own = retry.server_connect_args("postgresql://u@h/db?connect_timeout=60&options=-cx%3D1")
    assert "connect_timeout" not in own and "options" not in own  # the URL's own stand
    assert retry.server_connect_args("sqlite:///x.db") == {}
    assert store.engine_kwargs("mysql+pymysql://u@h/db")["connect_args"]["read_timeout"] == 2
