from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TINYSTORIES = SHARED_DATA / "tinystories"


@pytest.fixture(scope="session")
def tinystories() -> Path:
    if not (TINYSTORIES / "train.txt.xz").exists():
        pytest.skip(f"shared corpus not found at {TINYSTORIES}")
    return TINYSTORIES


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tokenizer/token cache for the whole test session (trained once, shared by tests)."""
    path = tmp_path_factory.mktemp("study-cache")
    os.environ["STUDY_CACHE_DIR"] = str(path)
    return path
