from __future__ import annotations

import functools
import multiprocessing.process
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# The same 22 MB of TinyStories is bundled with the package (study/sample), so a plain clone
# without ../shared runs every test that needs real text.
BUNDLED = REPO / "study" / "sample"
TINYSTORIES = (
    SHARED_DATA / "tinystories"
    if (SHARED_DATA / "tinystories" / "train.txt.xz").exists()
    else BUNDLED
)


@pytest.fixture(scope="session")
def tinystories() -> Path:
    if not (TINYSTORIES / "train.txt.xz").exists():
        pytest.skip(f"no TinyStories corpus at {TINYSTORIES} (the bundled sample is missing)")
    return TINYSTORIES


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tokenizer/token cache for the whole test session (trained once, shared by tests)."""
    path = tmp_path_factory.mktemp("study-cache")
    os.environ["STUDY_CACHE_DIR"] = str(path)
    return path


@functools.cache
def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(autouse=True)
def _subprocesses_only_in_slow_tests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast tier (``-m "not slow"``) starts no process: a test that does without the ``slow``
    mark fails here, so the promise of ``pytest -m "not slow"`` cannot rot unseen."""
    if request.node.get_closest_marker("slow") is not None or _cuda():
        return  # on a GPU machine Inductor and Triton compile in processes of their own
    name = request.node.nodeid

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{name} starts a process: mark it @pytest.mark.slow")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refuse)
