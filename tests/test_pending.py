"""``study.storage.pending``: a kept result is recorded into the study it came from and no other:
the same relative SQLite URL in two folders, a study deleted and made again under its name."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from studyrun import make_result

from study.storage import pending
from study.storage.optuna_store import SharedStudy

URL = "sqlite:///study.db"  # relative: the same text names a different file in each folder


@pytest.fixture
def two_folders(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    here = Path.cwd()
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    try:
        yield a, b
    finally:
        os.chdir(here)


def _running_study(folder: Path, name: str = "tiny") -> SharedStudy:
    os.chdir(folder)
    shared = SharedStudy.create(URL, name)
    shared.ask()  # trial 0, RUNNING
    return shared


def _keep(shared: SharedStudy, cache: Path) -> Path:
    result = make_result()
    return pending.keep(
        shared, URL, cache_dir=str(cache), number=0, value=result.val_ppl, attrs={}, result=result
    )


def _states(shared: SharedStudy) -> list[TrialState]:
    return [t.state for t in shared.trials()]


def test_a_kept_result_is_not_recorded_into_a_namesake_study_in_another_folder(
    two_folders: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = two_folders
    cache = tmp_path / "cache"  # one cache for both, as on one machine
    kept = _keep(_running_study(a), cache)
    other = _running_study(b)
    assert pending.record(other, URL, cache_dir=str(cache)) == []
    assert _states(other) == [TrialState.RUNNING] and kept.exists()
    os.chdir(a)
    mine = SharedStudy.load(URL, "tiny")
    assert pending.record(mine, URL, cache_dir=str(cache)) == [0]
    assert _states(mine) == [TrialState.COMPLETE] and not kept.exists()


def test_a_kept_result_is_not_recorded_into_a_study_made_again_under_its_name(
    two_folders: tuple[Path, Path], tmp_path: Path
) -> None:
    a, _ = two_folders
    cache = tmp_path / "cache"
    kept = _keep(_running_study(a), cache)
    optuna.delete_study(study_name="tiny", storage=URL)
    again = _running_study(a)
    assert pending.record(again, URL, cache_dir=str(cache)) == []
    assert _states(again) == [TrialState.RUNNING] and kept.exists()


def test_the_storage_identity_names_the_file_or_the_server_in_full(
    two_folders: tuple[Path, Path],
) -> None:
    a, b = two_folders
    os.chdir(a)
    in_a = pending.storage_identity(URL)
    os.chdir(b)
    assert in_a == f"sqlite:{a.resolve() / 'study.db'}" != pending.storage_identity(URL)
    servers = {
        pending.storage_identity(url)
        for url in (
            "postgresql+psycopg2://u:secret@db.example:5432/test",
            "mysql+pymysql://u@db.example/test",
            "postgresql://db.example:5433/test",
            "postgresql://other.example/test",
        )
    }
    assert len(servers) == 4 and not any("secret" in s or "u@" in s for s in servers)
    assert pending.storage_identity("postgresql://DB.example/test") == (
        "postgresql://db.example:5432/test"
    )
