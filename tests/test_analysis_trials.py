"""``python -m analysis.trials`` and ``analysis.load.trials_table``: one row per trial."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from analysis_db import make_study_db, run_cli, url

from analysis import trials
from analysis.load import trials_table


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_db(tmp_path_factory.mktemp("study") / "study.db")


def check_table(frame: pd.DataFrame) -> None:
    assert len(frame) == 25
    assert frame["state"].value_counts().to_dict() == {"COMPLETE": 24, "FAIL": 1}
    for col in (
        "number",
        "value",
        "params",
        "tokens_seen",
        "val_loss",
        "val_bpb",
        "epochs",
        "config.model.n_layer",
        "config.lr",
        "param.lr",
        "fail_reason",
    ):
        assert col in frame.columns, col
    failed = frame[frame["state"] == "FAIL"].iloc[0]
    assert failed["fail_reason"] == "diverged: loss became nan at step 12"
    done = frame[frame["state"] == "COMPLETE"]
    assert (done["config.model.n_layer"].astype(int) == done["n_layer"].astype(int)).all()
    assert done["fail_reason"].isna().all()


def test_trials_table_is_the_pandas_one_liner(db: Path) -> None:
    check_table(trials_table(url(db)))


@pytest.mark.slow
def test_csv_file_round_trips_through_pandas(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "trials.csv"
    done = run_cli("analysis.trials", "--storage", url(db), "--csv", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("wrote 25 trials x ") and str(out) in done.stdout
    frame = pd.read_csv(out)
    check_table(frame)
    expected = trials_table(url(db))
    assert list(frame.columns) == list(expected.columns)
    assert frame["val_loss"].tolist() == pytest.approx(expected["val_loss"].tolist(), nan_ok=True)


def test_csv_to_stdout(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trials.main(["--storage", url(db), "--csv", "-"])
    check_table(pd.read_csv(io.StringIO(capsys.readouterr().out)))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--csv", "trials.txt"], "error: --csv path trials.txt must end in one of: .csv"),
        (["--csv", "no/trials.csv"], "error: --csv folder no does not exist"),
    ],
)
@pytest.mark.slow
def test_bad_paths_are_one_line_and_exit_2(
    db: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    done = run_cli("analysis.trials", "--storage", url(db), *args, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == message
    assert not list(tmp_path.iterdir())
