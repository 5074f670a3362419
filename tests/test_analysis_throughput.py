"""``analysis.views.crossover`` and ``python -m analysis.crossover``: the throughput fit per device and
the crossover N*, from a study or a CSV file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from analysis_db import BUDGET, make_study_db, url

from analysis import crossover
from analysis.fits.core import crossover_n
from study.fmt import fmt_count


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_db(tmp_path_factory.mktemp("study") / "study.db")


@pytest.mark.slow
def test_crossover_on_study_writes_json_and_plot(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_png = tmp_path / "cross.json", tmp_path / "cross.png"
    out_tput = tmp_path / "throughput.png"
    crossover.main(
        [
            "--storage",
            url(db),
            "--device",
            "cpu",
            "--json",
            str(out_json),
            "--plot",
            str(out_png),
            "--throughput-plot",
            str(out_tput),
        ]
    )
    printed = capsys.readouterr().out
    assert out_png.stat().st_size > 10_000 and out_tput.stat().st_size > 10_000
    result = json.loads(out_json.read_text())
    assert {"n_star", "tokens_at_n_star", "c", "k", "n_star_low", "n_star_high"} <= set(result)
    assert result["device"] == "cpu" and result["budget"] == BUDGET
    # Consistent with its own fit, and close to the law the trials were drawn from.
    assert result["n_star"] == pytest.approx(
        crossover_n(result["c"], result["k"], budget=BUDGET, ratio=20.0)
    )
    truth = crossover_n(3.17e8, 0.7, budget=BUDGET, ratio=20.0)
    assert result["n_star"] == pytest.approx(truth, rel=0.05)
    assert result["n_star_low"] <= result["n_star"] <= result["n_star_high"]
    assert result["k"] == pytest.approx(0.7, abs=0.03)
    assert result["tokens_at_n_star"] == pytest.approx(20 * result["n_star"])
    assert f"N* = {fmt_count(result['n_star'])} parameters" in printed
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out_png.stat().st_size > 10_000


def test_crossover_on_csv_matches_hand_solved_case(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "machine.csv"
    n = np.geomspace(1e5, 1e7, 6)
    csv.write_text(
        "params,tokens_per_second\n" + "".join(f"{a:.17g},{2e8 * a**-0.5:.17g}\n" for a in n)
    )
    out_json = tmp_path / "x.json"
    crossover.main(["--csv", str(csv), "--budget", "100", "--json", str(out_json)])
    result = json.loads(out_json.read_text())
    assert result["n_star"] == pytest.approx(1e6, rel=1e-9)
    assert result["tokens_at_n_star"] == pytest.approx(2e7, rel=1e-9)
    assert "N* = 1M parameters" in capsys.readouterr().out


def test_crossover_needs_a_device_when_the_study_has_several(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "never.json"
    with pytest.raises(SystemExit) as exit_info:
        crossover.main(["--storage", url(db), "--json", str(out_json)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "--device" in err
    assert "--device: NVIDIA H100 80GB HBM3, cpu\n" in err
    assert not out_json.exists()


def test_trials_without_a_steady_state_rate_are_left_out_and_named() -> None:
    import pandas as pd

    from analysis.selection import throughput_points
    from analysis.views.crossover import crossover_for, crossover_text

    frame = pd.DataFrame(
        {
            "number": [0, 1, 2, 3, 4],
            "params": [1e5, 2e5, 4e5, 8e5, 1.6e6],
            "tokens_per_second": [3e4, 2.1e4, 0.0, 1.05e4, float("nan")],
        }
    )
    n, t, left_out = throughput_points(frame)
    assert n.tolist() == [1e5, 2e5, 8e5] and left_out == (2, 4)
    text = crossover_text(crossover_for("cpu", n, t, budget=60.0, ratio=20.0, left_out=left_out))
    assert "left out trial(s) 2, 4: no steady-state tokens/s" in text
