"""Riding out a database that is briefly away or busy: ``retry`` and its patience.

Every storage call of the harness goes through ``retry`` (``study.storage.store``, ``study.storage.optuna_store``,
the study lock): it retries what waiting cures (SQLite busy, a server restarting or failing over)
for up to ``patience_s()`` seconds, and turns what waiting does not cure into exceptions the
commands report on one line (``StorageGone``, ``StorageFull``). ``server_connect_args`` bounds each
attempt on a server by the patience too, so a frozen server fails attempts instead of hanging.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from study.errors import UsageError, first_line

log = logging.getLogger(__name__)

T = TypeVar("T")

PATIENCE_S = 300.0  # default seconds ``retry`` rides out a database outage
WARN_EVERY_S = 30.0  # seconds between warnings while it does


class StorageGone(Exception):
    """The database stayed unreachable for longer than ``patience_s()``."""


class StorageFull(Exception):
    """The database could not write: its disk (or table space) is full."""


def retry(
    fn: Callable[..., T],
    *args: Any,
    what: str,
    on_recovered: Callable[[], None] | None = None,
    **kwargs: Any,
) -> T:
    """Run ``fn(*args, **kwargs)``, retrying with backoff (up to 5 s apart) while the database
    reports a transient lock or a lost connection, for up to ``patience_s()`` seconds.

    Optuna wraps driver errors in ``StorageInternalError`` (whose text blames "invalid data");
    those are retried when the cause is an ``OperationalError`` (SQLite's "database is locked",
    a server that went away), and the cause is what the warning names. SQLite errors that
    waiting does not cure (a read-only file, a full disk) are raised at once.
    ``on_recovered`` is called when a call succeeds after transient failures.

    Raises:
        StorageGone: still unreachable after ``patience_s()`` seconds.
        StorageFull: the database's disk is full.
    """
    delay, started, warned = 0.1, time.monotonic(), -math.inf
    while True:
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            cause = _transient_cause(exc)
            waited = time.monotonic() - started
            if cause is None:
                full = _disk_full(exc)
                if full is not None:
                    raise StorageFull(
                        f"could not {what}: the database's disk is full ({first_line(full)})"
                    ) from exc
                raise
            if waited + delay > patience_s():
                raise StorageGone(
                    f"could not {what}: the database did not answer for "
                    f"{waited:.0f}s ({first_line(cause)})"
                ) from exc
            if waited - warned >= WARN_EVERY_S:  # a long outage: a line now and then
                warned = waited
                log.warning(
                    "could not %s (%s); retrying for up to %.0fs more",
                    what,
                    first_line(cause),
                    patience_s() - waited,
                )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        else:
            if delay > 0.1 and on_recovered is not None:
                on_recovered()
            return result


def patience_s() -> float:
    """How long ``retry`` keeps trying: ``$STUDY_STORAGE_PATIENCE_S`` seconds, default
    ``PATIENCE_S`` (a database server restarted or failed over is back within minutes)."""
    text = os.environ.get("STUDY_STORAGE_PATIENCE_S", "").strip()
    if not text:
        return PATIENCE_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        message = (
            f"STUDY_STORAGE_PATIENCE_S must be a number of seconds (finite, >= 0), got {text!r}"
        )
        raise UsageError(message)
    return value


def answer_timeout_s() -> int:
    """Whole seconds one attempt to reach a database server (connecting, or one statement) may
    wait for an answer: a third of ``patience_s()``, at least 2 (libpq's smallest
    ``connect_timeout``) and at most 30, so a server that takes the connection and then says
    nothing (frozen, not refusing) fails the attempt in time for ``retry`` to say so and try
    again within the patience."""
    return int(min(30, max(2, math.ceil(patience_s() / 3))))


def connect_timeout_s() -> int:
    """Whole seconds connecting to a server may take: ``answer_timeout_s()``, at most 10 (a
    connection that needs longer is not coming). libpq's waits are deaf to Ctrl-C, so this is
    also how long a PostgreSQL connection can delay Ctrl-C."""
    return min(10, answer_timeout_s())


def server_connect_args(url: str) -> dict[str, Any]:
    """Driver options that bound every wait on a PostgreSQL or MySQL/MariaDB server by the
    patience (``connect_timeout_s``, ``answer_timeout_s``), so a server that takes
    the connection and never answers fails the attempt (an ``OperationalError``, retried like
    a refused connection) instead of hanging: psycopg2's ``connect_timeout``, TCP keepalives and
    ``tcp_user_timeout`` (a vanished host) and a ``statement_timeout`` (psycopg likewise); PyMySQL's
    ``connect_timeout``, ``read_timeout`` and ``write_timeout`` (its reads cover a frozen
    server). An option the URL's query already sets is left as the URL says; other drivers get
    none.
    """
    parsed = sa.engine.make_url(url)
    connect, answer = connect_timeout_s(), answer_timeout_s()
    args: dict[str, Any]
    if parsed.get_driver_name() in ("psycopg2", "psycopg"):  # libpq's options
        args = {
            "connect_timeout": connect,
            "keepalives": 1,
            "keepalives_idle": answer,
            "keepalives_interval": max(1, answer // 3),
            "keepalives_count": 3,
            "tcp_user_timeout": answer * 1000,
            "options": f"-c statement_timeout={answer * 1000}",
        }
    elif parsed.get_driver_name() == "pymysql":
        args = {"connect_timeout": connect, "read_timeout": answer, "write_timeout": answer}
    else:
        return {}
    return {key: value for key, value in args.items() if key not in parsed.query}


def _transient_cause(exc: BaseException) -> BaseException | None:
    """The ``OperationalError`` behind ``exc`` if waiting may cure it, else None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sa.exc.OperationalError):
            # sqlite3 names its errors; only a busy or locked database frees itself. An sqlite3
            # error without a name is Python's own (text that cannot be decoded): no wait cures it.
            name = getattr(seen.orig, "sqlite_errorname", None)
            if name is None and not isinstance(seen.orig, sqlite3.Error):
                return seen  # a server's driver: a lost connection, a restart
            if name is not None and name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
                return seen
            return None
        seen = seen.__cause__
    return None


# How each backend says its disk is full: SQLite's error name, PostgreSQL's SQLSTATE (53100
# disk_full), MySQL's error numbers (1021 disk full, 1114 table full); any: the OS's ENOSPC.
DISK_FULL = ({"SQLITE_FULL"}, {"53100"}, {1021, 1114})


def _disk_full(exc: BaseException) -> BaseException | None:
    """The driver's error behind ``exc`` that says the disk is full, else None."""
    seen: BaseException | None = exc
    while seen is not None:
        orig = getattr(seen, "orig", None) or seen
        args = getattr(orig, "args", ())
        if (
            getattr(orig, "sqlite_errorname", None) in DISK_FULL[0]
            or getattr(orig, "pgcode", None) in DISK_FULL[1]
            or (args and args[0] in DISK_FULL[2])
            or "No space left on device" in str(orig)
        ):
            return orig
        seen = seen.__cause__
    return None
