"""Checks of a study database made before anything is written to it: whose tables it holds,
whether its harness schema can be read, whether the study could write it, and the recovery of
a journal a killed writer left (which read-only connections cannot roll back themselves).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import sqlalchemy as sa

from study.errors import UsageError, first_line
from study.storage import schema

log = logging.getLogger(__name__)

SQLITE_TIMEOUT_S = 60  # seconds a SQLite connection waits for a lock before "database is locked"


def recover_journal(path: Path) -> None:
    """Roll back a hot journal left beside SQLite file ``path`` by a process killed in the
    middle of a write (``path-journal``, or a write-ahead log ``path-wal``), so read-only
    connections can open it: SQLite rolls a hot journal back on the first read, which a
    read-only connection cannot do ("attempt to write a readonly database"). The file ends as
    it was at its last commit, which is what any reader would see anyway. Nothing is done
    where there is no journal, or where the file or its folder cannot be written (the
    read-only open then fails with SQLite's own words).
    """
    import sqlite3

    journals = [path.with_name(path.name + suffix) for suffix in ("-journal", "-wal")]
    if not any(j.is_file() and j.stat().st_size > 0 for j in journals):
        return
    if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        return
    # A live writer holds its lock, so SQLite leaves its journal alone (it is not hot).
    conn = sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
        log.info("rolled back the journal a killed writer left beside %s", path)
    except sqlite3.Error as exc:
        log.debug("could not roll back the journal beside %s (%s)", path, exc)
    finally:
        conn.close()


# Optuna's own tables, any one of which marks a database Optuna has written.
OPTUNA_TABLES = frozenset({"studies", "trials", "version_info", "alembic_version"})


def check_tables_are_ours(tables: set[str], shown: str, *, sqlite: bool) -> None:
    """Refuse a database whose tables are another application's: Optuna would add its own
    tables beside them, and a table named like one of Optuna's (``trials``, ``studies``) that
    is not Optuna's would fail deep inside Optuna. Optuna's tables are known by its
    ``version_info`` table. On SQLite, which is a file of its own, any tables without it refuse
    the file; a server database may hold others beside a study, but none named like Optuna's.

    Raises:
        UsageError: one line naming the storage and some of the tables found.
    """
    if "version_info" in tables or not tables:
        return
    named = sorted(tables & (OPTUNA_TABLES | set(schema.metadata.tables)))
    if named:
        raise UsageError(
            f"storage {shown} has a table named {named[0]} that is not Optuna's; "
            f"give a database of its own"
        )
    if sqlite:
        listed = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise UsageError(
            f"storage {shown} holds another application's tables ({listed}), no "
            f"study; give a new file, e.g. sqlite:///study.db"
        )


def check_writable(path: Path, shown: str) -> None:
    """Refuse an SQLite file that the study could not write: read-only by its mode (even to
    root, who could write it anyway: the mode says it is not to change), its folder (SQLite
    writes a journal beside it) or its file system. A run always writes (it counts itself),
    even on a complete study.

    Raises:
        UsageError: one line naming the storage and why.
    """
    for where in (path, path.parent):
        try:
            read_only_fs = bool(os.statvfs(where).f_flag & os.ST_RDONLY)
            mode_read_only = where.stat().st_mode & 0o222 == 0
        except OSError as exc:
            raise UsageError(f"cannot open storage {shown}: {first_line(exc)}") from None
        if read_only_fs or mode_read_only or not os.access(where, os.W_OK):
            why = (
                "is on a read-only file system"
                if read_only_fs
                else "is read-only"
                if where == path
                else f"is in a read-only folder ({where})"
            )
            raise UsageError(
                f"storage {shown} {why}; a study run records itself in its "
                f"database (copy it somewhere writable to go on)"
            )


def check_harness_version(
    conn: sa.Connection, tables: set[str], shown: str, *, allow_older: bool
) -> None:
    """Refuse a storage whose harness tables (``tables``: the names it holds) another version of
    the harness wrote. A newer schema is always refused: this code cannot know its layout. An
    older one is refused unless ``allow_older`` or the study can upgrade it in place
    (``schema.MIGRATES_FROM``): the study writes, and must not mix two layouts in one database,
    while the analysis only reads, and old studies are what it is for.

    Raises:
        UsageError: one line naming ``shown`` (the storage), the version found and the one read.
    """
    if schema.meta.name not in tables:
        return
    row = conn.execute(sa.select(schema.meta.c.value).where(schema.meta.c.key == "schema_version"))
    found = row.scalar()
    if found is None or found == str(schema.SCHEMA_VERSION):
        return
    if found.isdigit() and int(found) > schema.SCHEMA_VERSION:
        raise UsageError(
            f"storage {shown} was written by a newer version of this harness "
            f"(schema {found}, this one reads {schema.SCHEMA_VERSION}); upgrade it"
        )
    if found.isdigit() and (allow_older or int(found) in schema.MIGRATES_FROM):
        return  # the study upgrades it in place as it opens it (``harness_tables``)
    raise UsageError(
        f"storage {shown} holds harness schema version {found}; this version "
        f"reads {schema.SCHEMA_VERSION}"
    )
