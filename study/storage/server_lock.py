"""``ServerLock``: a lock that a PostgreSQL or MySQL/MariaDB server holds for one connection.

The one place that knows the SQL of these locks and how each of the harness's locks is named:
the study lock (``study_lock.StudyLock``) and the lock held while a new database's tables are
made (``harness_tables.server_creation_lock``) both take theirs here, each waiting its own way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import sqlalchemy as sa


@dataclass(frozen=True)
class ServerLock:
    """A lock that a PostgreSQL or MySQL/MariaDB server holds for the connection that took it,
    so the server frees it when the holder dies: an advisory lock (``key``) on PostgreSQL, a
    named lock (``name``) on MySQL/MariaDB. ``try_take`` never waits in the server, where no
    signal reaches a waiter: callers poll it, so Ctrl-C and SIGTERM stop them. Neither method
    ends a transaction: ``conn`` is in AUTOCOMMIT, or its caller commits.
    """

    key: int  # PostgreSQL's advisory lock key, a signed bigint
    name: str  # MySQL's lock name, 64 characters at most

    # The two derivations differ only by history; they stay as they were so that processes of
    # an earlier version of the harness still take the same locks as this one.
    @classmethod
    def for_study(cls, database: str | None, study_name: str) -> ServerLock:
        """The lock of one study (``StudyLock``). Machines may name the server differently;
        the database and study name are what agree."""
        digest = hashlib.sha256(f"{database}/{study_name}".encode()).hexdigest()
        return cls(key=int(digest[:15], 16), name=f"five-minute-study:{digest[:40]}")

    @classmethod
    def for_creation(cls, database: str | None) -> ServerLock:
        """The lock held while a database's tables are created
        (``harness_tables.server_creation_lock``)."""
        tag = hashlib.sha256(f"create {database}".encode()).digest()
        return cls(
            key=int.from_bytes(tag[:8], "big", signed=True),
            name=f"five-minute-study-create-{tag.hex()[:24]}",
        )

    def try_take(self, conn: sa.Connection) -> bool | None:
        """One attempt, without waiting: True if ``conn`` now holds the lock, False if another
        connection does, None where MySQL's ``GET_LOCK`` answers NULL (an error in the server,
        which each caller reads its own way)."""
        if conn.dialect.name == "postgresql":
            return bool(
                conn.execute(
                    sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}
                ).scalar()
            )
        got = conn.execute(sa.text("SELECT GET_LOCK(:name, 0)"), {"name": self.name}).scalar()
        return None if got is None else bool(got == 1)

    def free(self, conn: sa.Connection) -> None:
        """Let go of the lock that ``conn`` holds."""
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
        else:
            conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": self.name})
