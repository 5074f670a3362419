"""Lock files of an SQLite study: the ``flock`` files of the study lock and the creation lock.

They lie beside the database, in the folder the study must be able to write anyway (SQLite
writes its journal there), not in the shared temporary folder, where any local user could plant
a file or a link under a predictable name. A lock file is opened without following a link
(``O_NOFOLLOW``) and without blocking on a FIFO (``O_NONBLOCK``), and anything but a regular
file is refused; the holder removes it as it lets go, so none pile up.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from study.errors import UsageError

OPEN_FLAGS = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def path_for(db: Path, study_name: str | None) -> Path:
    """The lock file of study ``study_name`` in SQLite file ``db``, or (None) of creating its
    tables."""
    db = db.resolve()
    kind = (
        "create"
        if study_name is None
        else "study-" + hashlib.sha256(study_name.encode()).hexdigest()[:16]
    )
    return db.parent / f".{db.name}.{kind}.lock"


def try_lock(path: Path) -> int | None:
    """One attempt at an exclusive ``flock`` on ``path`` (made if missing), without waiting.

    Returns:
        The open descriptor holding the lock, or None while another process holds it.

    Raises:
        UsageError: ``path`` is a link, a FIFO or anything but a regular file.
        OSError: it cannot be made or opened (e.g. its folder is read-only).
    """
    import fcntl

    try:
        fd = os.open(path, OPEN_FLAGS, 0o644)
    except OSError as exc:
        if path.is_symlink():  # ELOOP from O_NOFOLLOW
            raise _refused(path) from None
        raise exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _refused(path)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # The holder before us removes the file as it lets go: lock the file that is there
        # now, not one already unlinked.
        if os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino:
            return fd
    except (BlockingIOError, FileNotFoundError):
        pass
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def release(path: Path, fd: int) -> None:
    """Remove ``path`` and let go of the lock ``fd`` holds on it; waiters notice the unlink
    and make a new file."""
    try:
        path.unlink()
    except OSError:
        pass
    os.close(fd)  # frees the flock


def _refused(path: Path) -> UsageError:
    return UsageError(
        f"lock file {path} is not a regular file (a link or a FIFO put in its place?); "
        f"remove it and run again"
    )
