"""``python -m analysis.predict`` on a study built in the test: the law fitted on the smaller
sizes comes true on the two largest, and a device whose trials all repeat their data heavily
gets a reason instead of a number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from analysis_db import make_study_db, run_cli, url

from analysis import predict
from analysis.load import load_study
from analysis.selection import complete_trials
from study.fmt import fmt_count

pytestmark = pytest.mark.slow  # every test here starts processes or trains

CPU, GPU = "cpu", "NVIDIA H100 80GB HBM3"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_db(tmp_path_factory.mktemp("study") / "study.db")


def test_predict_checks_the_held_out_sizes(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "predict.json"
    text = predict.run_predict(storage=url(db), grid="coarse", json_path=out)
    result = json.loads(out.read_text())
    assert result["study"] == "cpu-300s" and set(result["devices"]) == {CPU, GPU}
    cpu = result["devices"][CPU]
    data = load_study(url(db), None)
    sizes = sorted(complete_trials(data).query("device == 'cpu'")["params"])
    assert cpu["trusted"] and cpu["mode"] == "largest-2"
    assert [h["params"] for h in cpu["held_out"]] == sizes[-2:]
    assert cpu["fit_sizes"] == sizes[:-2]
    for held in cpu["held_out"]:  # the database follows one law, with 0.5% noise
        assert abs(held["relative_error"]) < 0.03
    assert cpu["law"]["form"] == "chinchilla" and "within 4 epochs" in cpu["law"]["reason"]
    assert cpu["best"]["measured"] in sizes and cpu["best"]["optimum"] is not None
    # Every GPU trial saw its 5.3 M tokens hundreds of times and none fresh: no law is
    # trusted there, and the output says why rather than printing a number.
    gpu = result["devices"][GPU]
    assert not gpu["trusted"] and all(h["predicted"] is None for h in gpu["held_out"])
    assert "beyond 4 epochs" in gpu["untrusted"][0]
    assert f"device {CPU}:" in text and "NOT TRUSTED" in text and "predicted " in text
    # Sizes, tokens and epochs read as k/M/G with 3 significant digits, never 7.257e+05.
    fit_sizes = ", ".join(fmt_count(s) for s in cpu["fit_sizes"])
    assert f"  fit on {len(sizes) - 2} sizes ({fit_sizes}), " in text and "377k, " in text
    for held in cpu["held_out"]:
        assert (
            f"  N = {fmt_count(held['params'])} (D = {fmt_count(held['tokens'])}): "
            f"measured {held['measured']:.4f}, predicted "
        ) in text
    assert f"  best size: measured {fmt_count(cpu['best']['measured'])}, law's ladder " in text
    assert "beyond 4 epochs (up to 2.4k)" in text and "e+" not in text


def test_predict_around_best_and_one_device(db: Path) -> None:
    results = predict.predict_for(
        load_study(url(db), None), device="cpu", around_best=True, grid="coarse"
    )
    assert list(results) == [CPU]
    res = results[CPU]
    assert not isinstance(res, str) and res.mode == "around-best"
    assert res.best.measured in [h.params for h in res.held_out]


def test_predict_bad_input_is_one_line_and_status_2(db: Path, tmp_path: Path) -> None:
    proc = run_cli("analysis.predict", "--storage", url(db), "--k", "0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("--k must be at least 1, got 0")
    # A k the ladder cannot spare is that device's reason, not the command's failure.
    assert predict.predict_text(
        predict.predict_for(load_study(url(db), None), device="cpu", k=18, grid="coarse")
    ) == (
        f"device {CPU}:\n  no check: k must be between 1 and the number of sizes - 1 (17), got 18"
    )
    proc = run_cli(
        "analysis.predict", "--storage", url(db), "--json", str(tmp_path / "missing" / "x.json")
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_base_study_lets_an_all_repeated_ladder_be_checked(db: Path, tmp_path: Path) -> None:
    # The same database as its own base: the constants come from its fresh (CPU) points, and
    # the GPU ladder, every point repeated, gets the data-constrained law and predictions.
    out = tmp_path / "predict.json"
    text = predict.run_predict(
        storage=url(db), device="cuda", base_study="cpu-300s", grid="coarse", json_path=out
    )
    assert text.startswith(
        "Chinchilla constants for the data-constrained law: from study 'cpu-300s'"
    )
    # R*_D at its bound reads as an epoch count, in the constants and in the warning.
    assert "rd_star = 10k, rn_star = 5.31" in text
    assert "warning: R*_D = 10k sits at a bound of [0.1, 10k]: " in text and "e+" not in text
    gpu = json.loads(out.read_text())["devices"][GPU]
    assert gpu["trusted"] and gpu["law"]["form"] == "data-constrained"
    assert "Chinchilla constants given" in gpu["law"]["reason"]
    # The database's losses ignore repetition: R*_D runs to its bound (repeats as good as new).
    assert gpu["law"]["constants"]["rd_star"] == pytest.approx(1e4, rel=0.02)
    assert all(abs(h["relative_error"]) < 0.06 for h in gpu["held_out"])
