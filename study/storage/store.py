"""The study's database: checking a storage URL without writing, opening it, the harness rows.

Optuna's tables hold trials, their values and user attributes; the harness's own tables
(``study.storage.schema``) hold each complete trial's loss curve and sample text. ``inspect_storage``
reads only, so bad input is refused before anything is created; ``open_storage`` creates what is
missing. Every write here runs in one transaction and retries while SQLite reports itself busy
or a server connection drops (``retry``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from study.errors import UsageError, first_line
from study.storage import schema
from study.storage.checks import (
    SQLITE_TIMEOUT_S,
    check_harness_version,
    check_tables_are_ours,
    check_writable,
    recover_journal,
)
from study.storage.retry import StorageFull, StorageGone, patience_s, retry, server_connect_args

__all__ = [  # where callers find them
    "SQLITE_TIMEOUT_S",
    "StorageFull",
    "StorageGone",
    "check_harness_version",
    "patience_s",
    "retry",
    "server_connect_args",
]

if TYPE_CHECKING:
    from optuna.storages import RDBStorage

    from study.result import TrainResult

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class StorageState:
    """What an existing storage says about one study, read without writing anything."""

    url: str  # password hidden, for messages
    has_optuna: bool
    study_exists: bool
    directions: tuple[str, ...]  # e.g. ("MINIMIZE",); empty when the study does not exist
    study_attrs: dict[str, Any]


def engine_kwargs(url: str) -> dict[str, Any]:
    """Connection options: a generous lock timeout for SQLite; for servers, liveness checks and
    the time limits of ``server_connect_args``."""
    if sa.engine.make_url(url).get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    return {"pool_pre_ping": True, "connect_args": server_connect_args(url)}


DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}


def parse_url(url: str) -> sa.URL:
    """The one check of a storage URL's syntax.

    Raises:
        UsageError: one line (the URL shown without its secrets) where it cannot be parsed,
            e.g. a non-numeric port.
    """
    try:
        return sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError, TypeError) as exc:
        raise UsageError(
            f"cannot parse storage URL {safe_url(url)!r} ({first_line(exc)}); "
            f"e.g. sqlite:///study.db or postgresql://user@host:5432/db"
        ) from None


def storage_identity(url: str) -> str:
    """The storage's full identity as this machine names it: ``sqlite:`` and the file's
    absolute path (a relative URL names another file in each folder), or the dialect, host,
    port (the default filled in) and database of a server. No user or password.

    Raises:
        sqlalchemy.exc.ArgumentError: the URL cannot be parsed.
    """
    parsed = sa.engine.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database.startswith("file:"):  # an URI filename: its path, without the options
            database = database[len("file:") :].split("?", 1)[0]
        return f"sqlite:{Path(database).resolve()}"
    port = parsed.port or DEFAULT_PORTS.get(backend) or ""
    return f"{backend}://{(parsed.host or '').lower()}:{port}/{parsed.database or ''}"


def safe_url(url: str) -> str:
    """``url`` with every form of secret hidden (``study.redact``, the one redactor)."""
    from study.redact import safe_url as shown

    return shown(url)


def inspect_storage(url: str, study_name: str) -> StorageState:
    """Open ``url`` read-only and report on ``study_name``; a missing SQLite file is fine.

    Raises:
        UsageError: the URL is malformed, its driver is missing, or it cannot be opened.
    """
    shown = safe_url(url)
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            raise UsageError(
                "an in-memory SQLite storage keeps nothing; give a file, e.g. sqlite:///study.db"
            )
        path = Path(database)
        if not path.exists():
            if not path.parent.is_dir():
                raise UsageError(
                    f"cannot open storage {shown}: folder {path.parent} does not exist"
                )
            return StorageState(
                url=shown, has_optuna=False, study_exists=False, directions=(), study_attrs={}
            )
        if not path.is_file():
            raise UsageError(f"cannot open storage {shown}: {path} is not a file")
        check_writable(path, shown)
        recover_journal(path)
        # Read-only, so a file that is not ours is never touched.
        read_url = f"sqlite:///file:{path.resolve()}?mode=ro&uri=true"
    else:
        read_url = url
    try:
        engine = sa.create_engine(read_url, **engine_kwargs(url))
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise UsageError(f"cannot open storage {shown}: {first_line(exc)}") from None
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            check_harness_version(conn, tables, shown, allow_older=False)
            check_tables_are_ours(tables, shown, sqlite=parsed.get_backend_name() == "sqlite")
        if "studies" not in tables:
            return StorageState(
                url=shown, has_optuna=False, study_exists=False, directions=(), study_attrs={}
            )
        return _read_study(read_url, url, study_name, shown)
    except sa.exc.SQLAlchemyError as exc:
        raise UsageError(f"cannot open storage {shown}: {first_line(exc)}") from None
    finally:
        engine.dispose()


def _read_study(read_url: str, url: str, study_name: str, shown: str) -> StorageState:
    """Read ``study_name`` through Optuna's public storage API (its own SQL quotes what a
    backend reserves, e.g. MySQL's ``key``), on a connection that cannot write to SQLite.

    Raises:
        UsageError: Optuna refuses the storage (e.g. its tables need ``optuna storage upgrade``).
    """
    import optuna

    try:
        storage = optuna.storages.RDBStorage(
            read_url, engine_kwargs=engine_kwargs(url), skip_table_creation=True
        )
    except (RuntimeError, ValueError) as exc:
        raise UsageError(f"cannot open storage {shown}: {first_line(exc)}") from None
    try:
        try:
            study_id = storage.get_study_id_from_name(study_name)
        except KeyError:
            return StorageState(
                url=shown, has_optuna=True, study_exists=False, directions=(), study_attrs={}
            )
        check_trials_readable(storage, study_id, study_name, shown)
        directions = tuple(d.name for d in storage.get_study_directions(study_id))
        return StorageState(
            url=shown,
            has_optuna=True,
            study_exists=True,
            directions=directions,
            study_attrs=storage.get_study_user_attrs(study_id),
        )
    finally:
        storage.engine.dispose()


def check_trials_readable(storage: RDBStorage, study_id: int, study_name: str, shown: str) -> None:
    """Read every trial of the study once, as the run will: a value Optuna cannot decode
    (malformed JSON, a state or distribution it does not know) is refused here, before anything
    is written, rather than deep inside the run.

    Raises:
        UsageError: one line naming the study and what Optuna could not read.
    """
    import optuna

    unreadable = (ValueError, KeyError, TypeError, AttributeError, sa.exc.SQLAlchemyError)
    try:
        retry(storage.get_all_trials, study_id, deepcopy=False, what="read the study's trials")
    except (*unreadable, optuna.exceptions.StorageInternalError) as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, unreadable) else exc  # Optuna's wrap
        raise UsageError(
            f"cannot read study {study_name!r} in {shown}: a trial holds what Optuna cannot "
            f"read ({type(cause).__name__}: {first_line(cause)})"
        ) from None


def open_storage(url: str) -> RDBStorage:
    """Open (creating where missing, upgrading an older harness schema in place) Optuna's
    tables and the harness tables at ``url``. Safe when several processes open a new database
    at once: on SQLite they take turns (``creation_lock``); on a server the loser of a creation
    race tries again once the winner's tables exist (``harness_tables``).

    Raises:
        UsageError: the storage cannot be opened or its tables cannot be made.
    """
    import optuna

    from study.storage.harness_tables import create_or_upgrade, creation_lock, second_chance

    try:
        with creation_lock(url):
            storage = second_chance(
                lambda: optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url))
            )
            second_chance(
                lambda: retry(create_or_upgrade, storage.engine, what="create the harness tables")
            )
    except (sa.exc.SQLAlchemyError, ImportError, RuntimeError, ValueError, OSError) as exc:
        raise UsageError(f"cannot open storage {safe_url(url)}: {first_line(exc)}") from None
    return storage


def write_trial_rows(
    engine: sa.Engine, *, trial_id: int, study_name: str, trial_number: int, result: TrainResult
) -> None:
    """Replace one trial's curve and sample rows, in one transaction."""
    curve_rows = [
        {
            "trial_id": trial_id,
            "idx": i,
            "study_name": study_name,
            "trial_number": trial_number,
            "elapsed_s": float(p["elapsed_s"]),
            "tokens": int(p["tokens"]),
            "train_loss": _finite_or_none(p.get("train_loss")),
            "val_loss": _finite_or_none(p.get("val_loss")),
            "eval_tokens": _int_or_none(p.get("eval_tokens")),
        }
        for i, p in enumerate(result.curve)
    ]
    prompt = str(result.config.get("prompt", ""))

    def write() -> None:
        with engine.begin() as conn:
            _delete(conn, trial_id)
            if curve_rows:
                conn.execute(schema.curve.insert(), curve_rows)
            conn.execute(
                schema.sample.insert().values(
                    trial_id=trial_id,
                    study_name=study_name,
                    trial_number=trial_number,
                    prompt=prompt,
                    text=result.sample,
                )
            )

    retry(write, what=f"write the rows of trial {trial_number}")


def delete_trial_rows(engine: sa.Engine, trial_id: int) -> None:
    """Drop the harness rows of a trial that did not complete."""

    def delete() -> None:
        with engine.begin() as conn:
            _delete(conn, trial_id)

    retry(delete, what="delete harness rows")


def trial_numbers_with_rows(engine: sa.Engine, study_name: str) -> set[int]:
    """Numbers of the trials of study ``study_name`` that have curve or sample rows."""

    def read() -> set[int]:
        with engine.connect() as conn:
            return {
                number
                for table in (schema.curve, schema.sample)
                for (number,) in conn.execute(
                    sa.select(table.c.trial_number)
                    .where(table.c.study_name == study_name)
                    .distinct()
                )
                if isinstance(number, int)  # SQLite keeps whatever was put in: not a number
            }

    return retry(read, what="read which trials have rows")


def _delete(conn: sa.Connection, trial_id: int) -> None:
    conn.execute(schema.curve.delete().where(schema.curve.c.trial_id == trial_id))
    conn.execute(schema.sample.delete().where(schema.sample.c.trial_id == trial_id))


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def read_only_engine_kwargs(url: str) -> dict[str, Any]:
    """Engine options (for ``sa.create_engine`` or Optuna's ``RDBStorage``) that open ``url``
    for reading: an SQLite file through a read-only URI connection, so neither the file nor a
    table in it can be created or changed; a server with ``engine_kwargs``' options (a server
    grants no read-only connection by URL: the caller only reads).

    The SQLite file is not checked here: a missing one fails on connecting.
    """
    import sqlite3
    import urllib.parse

    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return engine_kwargs(url)
    path = Path(parsed.database or "").resolve()
    uri = "file:" + urllib.parse.quote(str(path)) + "?mode=ro"

    def connect() -> sqlite3.Connection:
        recover_journal(path)
        # check_same_thread off: SQLAlchemy's pool hands connections between threads safely.
        return sqlite3.connect(uri, uri=True, timeout=SQLITE_TIMEOUT_S, check_same_thread=False)

    return {"creator": connect}
