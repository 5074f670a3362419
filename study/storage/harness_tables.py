"""Creating the harness tables (``study.storage.schema``) and bringing older ones up to date in place.

Every step here is idempotent and safe when several processes (machines) do it at once: tables
are created only where missing, a column is added only where missing (and another process
adding it first is not an error), and the recorded schema version only ever moves up. The
caller (``store.open_storage``) retries the whole on transient database errors, holds
``creation_lock`` (SQLite) around it, and gives a creation race on a server a
``second_chance``: Optuna's own table creation is not safe when two processes make one new
database's tables at once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa

from study.storage import schema
from study.storage.server_lock import ServerLock

log = logging.getLogger(__name__)

T = TypeVar("T")


def create_or_upgrade(engine: sa.Engine) -> None:
    """Create the harness tables where missing, record ``schema.SCHEMA_VERSION`` in a new
    database, and upgrade one of a version in ``schema.MIGRATES_FROM`` in place (nullable
    columns added, so rows already there stay as they are and older readers still work)."""
    schema.metadata.create_all(engine)
    found = _version(engine)
    if found is None:
        _insert_version(engine)
    elif found.isdigit() and int(found) in schema.MIGRATES_FROM:
        _add_missing_columns(engine, schema.curve)
        with engine.begin() as conn:
            # Only upward: a concurrent upgrader may have moved it already.
            conn.execute(
                sa.update(schema.meta)
                .where(schema.meta.c.key == "schema_version", schema.meta.c.value == found)
                .values(value=str(schema.SCHEMA_VERSION))
            )
        log.info("harness tables upgraded from schema %s to %s", found, schema.SCHEMA_VERSION)
    widen_mysql_columns(engine)


def _version(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
        ).scalar()
    return None if found is None else str(found)


def _insert_version(engine: sa.Engine) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(
                schema.meta.insert().values(key="schema_version", value=str(schema.SCHEMA_VERSION))
            )
    except sa.exc.IntegrityError:
        if _version(engine) is None:  # not the race with another creator: a real problem
            raise


def _add_missing_columns(engine: sa.Engine, table: sa.Table) -> None:
    """``ALTER TABLE ... ADD`` each nullable column of ``table`` the database lacks."""
    quote = engine.dialect.identifier_preparer.quote
    for column in table.columns:
        if column.name in _column_names(engine, table):
            continue
        if not column.nullable:
            raise RuntimeError(f"cannot add NOT NULL column {table.name}.{column.name} in place")
        kind = column.type.compile(dialect=engine.dialect)
        try:
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        f"ALTER TABLE {quote(table.name)} "
                        f"ADD COLUMN {quote(column.name)} {kind} NULL"
                    )
                )
        except (sa.exc.OperationalError, sa.exc.ProgrammingError):
            # Another process added it between our look and our ALTER ("duplicate column").
            if column.name not in _column_names(engine, table):
                raise


def _column_names(engine: sa.Engine, table: sa.Table) -> set[str]:
    with engine.connect() as conn:
        return {c["name"] for c in sa.inspect(conn).get_columns(table.name)}


def widen_mysql_columns(engine: sa.Engine) -> None:
    """Tables made before ``study.storage.schema`` asked MySQL for DOUBLE and MEDIUMTEXT hold curve
    points as 4-byte FLOAT and samples in 64 KB TEXT; widen them in place (lossless)."""
    if engine.dialect.name not in ("mysql", "mariadb"):
        return
    quote = engine.dialect.identifier_preparer.quote
    with engine.begin() as conn:
        inspector = sa.inspect(conn)
        for table in (schema.curve, schema.sample):
            found = {
                c["name"]: c["type"].compile(dialect=engine.dialect)
                for c in inspector.get_columns(table.name)
            }
            changes = [
                f"MODIFY {quote(col.name)} {col.type.compile(dialect=engine.dialect)} "
                f"{'NULL' if col.nullable else 'NOT NULL'}"
                for col in table.columns
                if col.name in found
                and not col.primary_key
                and found[col.name] != col.type.compile(dialect=engine.dialect)
            ]
            if changes:
                log.info("widening %s: %s", table.name, ", ".join(changes))
                conn.execute(sa.text(f"ALTER TABLE {quote(table.name)} " + ", ".join(changes)))


def second_chance(fn: Callable[[], T]) -> T:
    """``fn()``, and once more a second later if it failed on the database: another machine
    creating the same tables this moment ("already exists", a duplicate alembic version) has
    finished by then, and what it made is found rather than made."""
    try:
        return fn()
    except sa.exc.SQLAlchemyError as exc:
        log.debug("creating tables raced with another process (%s); once more", exc)
        time.sleep(1.0)
        return fn()


@contextlib.contextmanager
def creation_lock(url: str) -> Iterator[None]:
    """Held while a database's tables are created: Optuna's table creation (alembic) is not safe
    when two processes make a new database's tables at once. On SQLite an ``flock`` on a file
    beside the database (``lock_file``), removed as it is let go; on a server a lock the server holds
    (``server_creation_lock``), since MySQL's DDL is not transactional and a loser can meet half
    of the winner's tables (``second_chance`` stays as the fallback)."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() in ("postgresql", "mysql", "mariadb"):
        with server_creation_lock(url):
            yield
        return
    if parsed.get_backend_name() != "sqlite":
        yield
        return
    from study.storage import lock_file

    path = lock_file.path_for(Path(parsed.database or ""), None)
    delay = 0.01
    while (fd := lock_file.try_lock(path)) is None:
        time.sleep(delay)  # held for seconds at most; polled, so Ctrl-C stops a waiter
        delay = min(2 * delay, 0.2)
    try:
        yield
    finally:
        lock_file.release(path, fd)


@contextlib.contextmanager
def server_creation_lock(url: str, *, patience: float = 60.0) -> Iterator[None]:
    """A PostgreSQL advisory lock or a MySQL/MariaDB ``GET_LOCK`` named after the database, taken
    by polling (so Ctrl-C stops a waiter) for at most ``patience`` seconds: creation takes a few
    seconds, and a holder frozen longer than that is left to ``second_chance``."""
    lock = ServerLock.for_creation(sa.engine.make_url(url).database)
    from study.storage.retry import server_connect_args

    engine = sa.create_engine(
        url, poolclass=sa.pool.NullPool, connect_args=server_connect_args(url)
    )
    try:
        with engine.connect() as conn:
            deadline = time.monotonic() + patience
            held = False
            while not held and time.monotonic() < deadline:
                held = bool(lock.try_take(conn))  # GET_LOCK's NULL: not held, ask again
                conn.commit()
                if not held:
                    time.sleep(0.2)
            try:
                yield
            finally:
                if held:
                    lock.free(conn)
                    conn.commit()
    finally:
        engine.dispose()
