"""The main command writes a file of its own, never the shipped, tracked study.db."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from studyrun import DATA, REPO, write_sweep

from analysis.load import DEFAULT_STORAGE
from study.orchestra.options import RunOptions


def test_run_and_analysis_default_to_runs_study_db() -> None:
    assert RunOptions().storage == DEFAULT_STORAGE == "sqlite:///runs/study.db"


@pytest.mark.slow
def test_a_run_with_the_default_storage_leaves_the_shipped_file_alone(
    tmp_path: Path, cache_dir: Path
) -> None:
    shutil.copy(REPO / "study.db", tmp_path / "study.db")  # a fresh clone's working folder
    before = (tmp_path / "study.db").read_bytes()
    sweep = write_sweep(tmp_path)
    args = ["--sweep", str(sweep), "--data", str(DATA), "--cache-dir", str(cache_dir)]
    args += ["--budget", "1", "--device", "cpu", "--trials", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "study.run", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "study.db").read_bytes() == before
    assert (tmp_path / "runs" / "study.db").is_file()
    assert sorted(p.name for p in (tmp_path / "runs" / "study.checkpoints" / "tiny").iterdir()) == [
        "keep.json",
        "trial-00000.json",
        "trial-00000.safetensors",
    ]
    assert "--storage sqlite:///runs/study.db" in proc.stdout
