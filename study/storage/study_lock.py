"""``StudyLock``: mutual exclusion among every process that works on one study, on any machine.

Held only for the short steps that decide which trial runs next (recover stale trials, count,
ask, sample, stamp), so that workers on one machine or many start exactly as many trials as the
study still needs.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from types import TracebackType

import sqlalchemy as sa

from study.storage import lock_file, store
from study.storage.server_lock import ServerLock

log = logging.getLogger(__name__)


class StudyLock:
    """Mutual exclusion among every process that works on one study, on any machine.

    On PostgreSQL an advisory lock and on MySQL/MariaDB a named lock, both held by a connection
    of their own, so the server frees them when the holder dies; on SQLite (one machine) an
    ``flock`` on a file beside the database named after the study (``lock_file``), freed by the
    kernel when the holder dies (the file is removed when it lets go). Other backends get no
    lock beyond the caller's own. Held only for the short step that recovers orphaned trials,
    counts, and starts the next trial. Waiting for it never blocks where a signal cannot reach
    (``_acquire``), so a run waiting behind a frozen holder can be stopped and says why it waits.
    """

    POLL_S = 0.5  # at most this many seconds between attempts while another process holds it
    FIRST_REPORT_S = 5.0  # a wait this long says what it waits for, and again every REPORT_S
    REPORT_S = 30.0

    def __init__(self, url: str, study_name: str) -> None:
        parsed = sa.engine.make_url(url)
        self.backend = parsed.get_backend_name()
        self._server = ServerLock.for_study(parsed.database, study_name)
        self._engine: sa.Engine | None = None
        self._conn: sa.Connection | None = None
        self._fd: int | None = None
        self._path: Path | None = None
        self._what = f"study {study_name!r} on {store.safe_url(url)}"
        if self.backend in ("postgresql", "mysql", "mariadb"):
            self._engine = sa.create_engine(
                url, poolclass=sa.pool.NullPool, connect_args=store.server_connect_args(url)
            )
        elif self.backend == "sqlite":
            self._path = lock_file.path_for(Path(parsed.database or ""), study_name)

    def __enter__(self) -> StudyLock:
        store.retry(self._acquire, what="take the study lock")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()

    def _acquire(self) -> None:
        """Take the lock, asking again (soon, then every ``POLL_S`` seconds) rather than
        blocking in the database or the kernel: the wait stays interruptible (Ctrl-C, SIGTERM),
        and after
        ``FIRST_REPORT_S`` and every ``REPORT_S`` seconds more it says what it waits for."""
        started, reported, delay = time.monotonic(), -math.inf, 0.02
        conn = None
        if self._engine is not None:
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            while not self._try(conn):
                waited = time.monotonic() - started
                if waited >= self.FIRST_REPORT_S and waited - reported >= self.REPORT_S:
                    reported = waited
                    log.warning(
                        "waiting %.0fs for the study lock of %s, held by another run "
                        "of this study (a process stopped while holding it keeps every "
                        "run waiting: resume or end it)",
                        waited,
                        self._what,
                    )
                time.sleep(delay)
                delay = min(2 * delay, self.POLL_S)
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        self._conn = conn

    def _try(self, conn: sa.Connection | None) -> bool:
        """One attempt at the lock, without waiting; True if this process now holds it."""
        if conn is not None:
            got = self._server.try_take(conn)
            if got is None:
                raise RuntimeError(f"MySQL GET_LOCK({self._server.name!r}) failed")
            return got
        if self._path is None:
            return True
        self._fd = lock_file.try_lock(self._path)
        return self._fd is not None

    def _release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:  # closing the connection frees the lock anyway; unlocking first is tidier
                self._server.free(conn)
            except sa.exc.SQLAlchemyError as exc:
                log.debug("could not release the study lock (%s); closing its connection", exc)
            finally:
                conn.close()
        if self._fd is not None and self._path is not None:
            fd, self._fd = self._fd, None
            lock_file.release(self._path, fd)

    def close(self) -> None:
        self._release()
        if self._engine is not None:
            self._engine.dispose()
