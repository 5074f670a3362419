"""``python -m analysis.curves``: loss against seconds and tokens, one line per trial."""

from __future__ import annotations

from pathlib import Path

import pytest
from analysis_db import make_study_db, run_cli, url

from analysis import curves
from analysis.load import load_study
from analysis.views.curves import curve_points

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_db(tmp_path_factory.mktemp("study") / "study.db")


def test_curves_command_draws_every_trial_and_says_where(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "curves.png"
    curves.main(["--storage", url(db), "--plot", str(out)])
    assert out.read_bytes().startswith(PNG) and out.stat().st_size > 20_000
    printed = capsys.readouterr().out
    assert "24 trials, 120 curve points, sizes 377k to 12.2M" in printed
    assert f"wrote {out}" in printed


def test_curve_points_join_each_point_with_its_trials_size(db: Path) -> None:
    data = load_study(url(db))
    points = curve_points(data, device="cuda")
    assert sorted(points["trial"].unique()) == list(range(18, 24))
    sizes = data.trials.set_index("number")["params"]
    assert (points["params"] == points["trial"].map(sizes)).all()
    assert points["val_loss"].isna().sum() == 0  # trial 3's gap is a CPU trial
    assert points.groupby("trial")["elapsed_s"].is_monotonic_increasing.all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--plot", "curves.gif"], "--plot path curves.gif must end in one of: .png, .svg, .pdf"),
        (["--plot", "nowhere/curves.png"], "--plot folder nowhere does not exist"),
        (["--device", "tpu"], "no complete trial ran on device 'tpu'"),
        (["--study-name", "nope"], "no study named 'nope'"),
    ],
)
@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_2(
    db: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    done = run_cli("analysis.curves", "--storage", url(db), *args, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_study_without_curves_is_refused(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from study.storage import schema

    path = make_study_db(tmp_path / "s.db")
    engine = sa.create_engine(url(path))
    with engine.begin() as conn:
        conn.execute(sa.delete(schema.curve))
    engine.dispose()
    done = run_cli("analysis.curves", "--storage", url(path), "--plot", str(tmp_path / "c.png"))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: study 'cpu-300s' stored no loss curves for its "
        "complete trials (table harness_curve)"
    )
    assert not (tmp_path / "c.png").exists()
