"""SQLite lock files (the study lock and the creation lock): beside the database, opened
without following a link planted in their place, and removed when let go."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from study.errors import UsageError
from study.storage import lock_file
from study.storage.harness_tables import creation_lock
from study.storage.optuna_store import SharedStudy
from study.storage.study_lock import StudyLock


def test_lock_files_lie_beside_the_database_and_are_removed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    with StudyLock(url, "tiny") as lock:
        shared = SharedStudy.create(url, "tiny")  # takes the creation lock, too
        assert lock._path is not None and lock._path.parent == tmp_path
        assert lock._path.is_file()
    shared.storage.engine.dispose()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db"]


@pytest.mark.parametrize("which", ["study", "creation"])
@pytest.mark.parametrize("planted", ["symlink", "fifo"])
def test_a_link_or_fifo_planted_as_a_lock_file_is_refused(
    tmp_path: Path, which: str, planted: str
) -> None:
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    path = lock_file.path_for(db, "tiny" if which == "study" else None)
    target = tmp_path / "elsewhere" / "victim"
    target.parent.mkdir()
    if planted == "symlink":
        path.symlink_to(target)
    else:
        os.mkfifo(path)
    with pytest.raises(UsageError, match="lock file .* is not a regular file"):
        if which == "study":
            with StudyLock(url, "tiny"):
                pass
        else:
            with creation_lock(url):
                pass
    assert not target.exists()  # the link was not followed
    assert path.is_symlink() or path.exists()  # and not removed: it is not ours
