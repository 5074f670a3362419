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
    text = run_scaling_law(
        storage=url(db), json_path=out_json, plot_path=out_png, grid="coarse", curve_points=True
    )
    result = json.loads(out_json.read_text())
    assert list(result) == ["E", "A", "B", "alpha", "beta", "a", "b"]
    # 24 finals + 24 * 5 curve points, less the one stored null.
    assert "on 143 points (24 end-of-training, 119 mid-run curve)" in text
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
    scaling_law.main(
        ["--csv", str(csv), "--json", str(out_json), "--grid", "coarse", "--bootstrap", "0"]
    )
    result = json.loads(out_json.read_text())
    assert set(result) == {"E", "A", "B", "alpha", "beta", "a", "b"}  # no bootstrap: no more
    assert result["alpha"] == pytest.approx(LAW["alpha"], abs=0.05)


def test_scaling_law_fits_end_of_training_points_by_default(db: Path) -> None:
    text = run_scaling_law(storage=url(db), grid="coarse")
    assert "on 24 points (24 end-of-training)" in text


@pytest.mark.slow
def test_scaling_law_max_epochs_fits_fresh_points_only(db: Path) -> None:
    data = load_study(url(db), None)
    fresh = loss_points(data, complete_trials(data), max_epochs=1.0)
    text = run_scaling_law(storage=url(db), max_epochs=1.0, grid="coarse", curve_points=True)
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


def test_scaling_law_on_a_degenerate_study_is_not_trusted_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Three trials of three sizes, each beyond 4 epochs: what a 3-trial GPU study on the sample
    # gives. The law fits (5 constants to 3 points) but must not be read as a prediction.
    import optuna
    from analysis_db import trial_attrs

    storage = url(tmp_path / "three.db")
    study = optuna.create_study(study_name="three", storage=storage)
    rng = np.random.default_rng(0)
    for i, (d_model, n_layer) in enumerate(((64, 2), (128, 4), (256, 6))):
        attrs = trial_attrs(i, "cpu (2 threads)", d_model=d_model, n_layer=n_layer, seed=0, rng=rng)
        attrs["epochs"] = 12.0 * (i + 1)
        attrs["unique_tokens"] = attrs["tokens_seen"] / attrs["epochs"]
        study.add_trial(optuna.trial.create_trial(value=attrs["val_ppl"], user_attrs=attrs))
    plot = tmp_path / "law.png"
    scaling_law.main(["--storage", storage, "--grid", "coarse", "--plot", str(plot)])
    out = capsys.readouterr().out
    assert "NOT TRUSTED: 3 of 3 points saw their data more than 4 times" in out
    assert plot.stat().st_size > 10_000


def test_untrusted_reasons_name_each_failed_check() -> None:
    import dataclasses

    from analysis.fits.loss_law import fit_loss_law
    from analysis.fits.trust import untrusted_reasons
    from analysis.views.scaling_law import COARSE_GRID

    n, d = (a.ravel() for a in np.meshgrid(np.geomspace(1e5, 1e7, 4), np.geomspace(1e6, 1e8, 4)))
    loss = np.array([law_loss(a, b) for a, b in zip(n, d, strict=True)])
    law = fit_loss_law(n, d, loss, grid=COARSE_GRID)
    assert untrusted_reasons(law, params=n, epochs=np.ones_like(n)) == ()
    bad = dataclasses.replace(law, alpha=6.0, e_vanished=True)
    why = untrusted_reasons(bad, params=np.full(2, 1e5), epochs=np.full(2, 9.0))
    assert any("alpha = 6 is outside (0, 2]" in w for w in why), why
    assert any("irreducible loss ran to zero" in w for w in why)
    assert any("only 1 distinct sizes" in w for w in why)
    assert any("2 of 2 points saw their data more than 4 times" in w for w in why)
