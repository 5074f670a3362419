"""bench/compare_recipes.sh and the two scripts that run issue 24's comparisons on it: the named
variants (one for each switch), and bad input refused before anything runs (no training here)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("compare_recipes.sh", "h200_recipes_120s.sh", "cpu_recipes_300s.sh")


def bash(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", *args], cwd=REPO, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


@pytest.mark.slow
def test_scripts_parse_and_name_a_variant_for_each_switch() -> None:
    for script in SCRIPTS:
        assert bash("-n", f"bench/{script}").returncode == 0, script
    listed = bash("bench/compare_recipes.sh", "--list")
    assert listed.returncode == 0
    flags = dict(line.split(": ", 1) for line in listed.stdout.splitlines())
    assert flags["embed-shortcut"] == "--embed-shortcut"
    assert flags["value-embeds"] == "--value-embeds 2"
    assert flags["vocab1024"] == "--vocab-size 1024" and flags["wsd"] == "--schedule wsd"
    assert flags["muon-lr0.04"] == "--optimizer muon --muon-lr 0.04"
    assert flags["relu2-rmsnorm-qknorm"] == "--mlp relu2 --norm rmsnorm --qk-norm"


@pytest.mark.slow
def test_bad_variants_are_refused_before_anything_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    bad = bash("bench/compare_recipes.sh", "1", str(out), "--n-layer 1", "base", "sgd")
    assert bad.returncode == 2 and "unknown variant sgd" in bad.stderr and not out.exists()
    for args in ((), ("base", "wsd", "muon", "vocab1024")):
        usage = bash("bench/h200_recipes_120s.sh", *args, env={"OUT": str(out)})
        assert usage.returncode == 2 and "1 to 3 per call" in usage.stderr
    no_out = bash("bench/h200_recipes_120s.sh", "base", env={"OUT": ""})
    assert no_out.returncode == 2 and "set OUT" in no_out.stderr
    assert not out.exists()
