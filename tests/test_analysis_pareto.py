"""``analysis.views.frontier`` and ``python -m analysis.frontier``: held-out quality against size and its
Pareto frontier."""

from __future__ import annotations

from pathlib import Path

import pytest
from analysis_db import make_study_db, url

from analysis import frontier
from analysis.load import load_study
from analysis.views.frontier import run_frontier


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_db(tmp_path_factory.mktemp("study") / "study.db")


@pytest.mark.slow
def test_frontier_plots_perplexity_and_bits_per_byte(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ppl, bpb = tmp_path / "frontier.png", tmp_path / "frontier_bpb.svg"
    frontier.main(["--storage", url(db), "--plot", str(ppl)])
    text = capsys.readouterr().out
    frontier.main(
        ["--storage", url(db), "--plot", str(bpb), "--metric", "bpb", "--color-by", "pos"]
    )
    assert ppl.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and ppl.stat().st_size > 10_000
    assert b"<svg" in bpb.read_bytes()[:2000]
    # The printed frontier gets strictly better as models grow, and holds the best trial.
    data = load_study(url(db))
    best = data.complete().sort_values("value").iloc[0]
    rows = [line.split() for line in text.splitlines()[2:] if line.split()[0].isdigit()]
    ppls = [float(r[2]) for r in rows]
    assert ppls == sorted(ppls, reverse=True) and len(set(ppls)) == len(ppls)
    assert int(rows[-1][0]) == int(best["number"])
    assert "N* (20 tokens/param, 300 s) on cpu" in text


def test_frontier_on_one_device_only(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = run_frontier(storage=url(db), device="cpu")
    assert "of 18 complete trials" in run and "NVIDIA" not in run
