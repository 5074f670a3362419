"""``analysis.views.scaling_law`` and ``python -m analysis.scaling_law``: the loss law fitted on a study or a
CSV file, and its prediction per device."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from analysis_db import LAW, law_loss, make_study_db, url

from analysis import scaling_law
from analysis.load import load_study
from analysis.selection import complete_trials, loss_points
from analysis.views.scaling_law import run_scaling_law
from study.errors import UsageError


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_db(tmp_path_factory.mktemp("study") / "study.db")


@pytest.mark.slow
def test_scaling_law_on_study_uses_finals_and_curves(db: Path, tmp_path: Path) -> None:
    out_json, out_png = tmp_path / "law.json", tmp_path / "law.png"
    text = run_scaling_law(storage=url(db), json_path=out_json, plot_path=out_png, grid="coarse")
    result = json.loads(out_json.read_text())
    assert list(result) == ["E", "A", "B", "alpha", "beta", "a", "b"]
    # 24 finals + 24 * 5 curve points, less the one stored null.
    assert "on 143 points (119 curve, 24 final)" in text
    assert result["E"] == pytest.approx(LAW["E"], abs=0.2)
    assert result["alpha"] == pytest.approx(LAW["alpha"], abs=0.05)
    assert result["beta"] == pytest.approx(LAW["beta"], abs=0.05)
    assert result["a"] == pytest.approx(result["beta"] / (result["alpha"] + result["beta"]))
    # A prediction per device, beside the 20x heuristic.
    assert text.count("loss-optimal N = ") == 2 and "20x heuristic N* = " in text
    # Sizes and tokens read as k/M/G, in the warnings too (the GPU's N_opt, not 4.47e+08).
    assert "e+" not in text, text
    assert re.search(
        r"N_opt = \d+(\.\d+)?M lies outside the sizes the loss law saw \[377k, "
        r"12\.2M\]",
        text,
    ), text
    assert out_png.stat().st_size > 10_000


@pytest.mark.slow
def test_scaling_law_on_csv_prints_the_seven_numbers(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n, d = (a.ravel() for a in np.meshgrid(np.geomspace(1e5, 1e7, 6), np.geomspace(1e6, 1e8, 6)))
    loss = np.array([law_loss(a, b) for a, b in zip(n, d, strict=True)])
    loss *= np.exp(rng.normal(0, 0.003, n.size))
    csv = tmp_path / "points.csv"
    csv.write_text(
        "params,tokens,loss\n"
        + "".join(f"{a:.17g},{b:.17g},{c:.17g}\n" for a, b, c in zip(n, d, loss, strict=True))
    )
    out_json = tmp_path / "law.json"
    scaling_law.main(["--csv", str(csv), "--json", str(out_json), "--grid", "coarse"])
    result = json.loads(out_json.read_text())
    assert set(result) == {"E", "A", "B", "alpha", "beta", "a", "b"}
    assert result["alpha"] == pytest.approx(LAW["alpha"], abs=0.05)


@pytest.mark.slow
def test_scaling_law_max_epochs_fits_fresh_points_only(db: Path) -> None:
    data = load_study(url(db), None)
    fresh = loss_points(data, complete_trials(data), max_epochs=1.0)
    text = run_scaling_law(storage=url(db), max_epochs=1.0, grid="coarse")
    assert f"on {len(fresh)} points (" in text and len(fresh) < 143
    with pytest.raises(UsageError, match="max-epochs"):
        run_scaling_law(storage=url(db), max_epochs=1e-12, grid="coarse")
    with pytest.raises(UsageError, match="--max-epochs must be positive"):
        run_scaling_law(storage=url(db), max_epochs=0.0, grid="coarse")


def test_scaling_law_refuses_bad_options_before_reading(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    with pytest.raises(UsageError, match="--grid must be one of chinchilla, coarse"):
        run_scaling_law(storage=missing, grid="fine")
    csv = tmp_path / "points.csv"
    csv.write_text("params,tokens,loss\n1e6,1e7,3.0\n")
    with pytest.raises(UsageError, match="--budget and --device need a study"):
        run_scaling_law(csv=csv, budget=60.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points.csv"]
