"""``bench.big_study``: a generated study that the analysis commands read as they read a real
one (what issue 27 #8's timings of the analysis on 50 and 500 trials run on)."""

from __future__ import annotations

import importlib
from pathlib import Path

import optuna
import pytest
from analysis_db import digest
from test_bad_input import refused

from bench.big_study import main, make_study
from study.result import TRIAL_ATTRS


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("big")
    url = f"sqlite:///{folder / 'big.db'}"
    # A corpus that is not there: the analysis skips its n-gram baseline (minutes to score).
    made = make_study(url, study_name="big", trials=30, data=str(folder / "absent"), fail_every=10)
    assert made == 30
    return url


def test_the_generated_study_holds_what_a_run_records(big: str) -> None:
    study = optuna.load_study(study_name="big", storage=big)
    trials = study.get_trials()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(trials) == 30 and len(complete) == 27
    first = complete[0]
    assert set(TRIAL_ATTRS) <= set(first.user_attrs)
    assert {"load_avg_5m", "child_cpu_share", "worker", "heartbeat"} <= set(first.user_attrs)
    assert len(first.intermediate_values) == first.user_attrs["config"]["curve_points"] == 10
    assert {"budget", "corpus", "heldout", "sweep", "search_space", "settings"} <= set(
        study.user_attrs
    )
    assert len({t.params["d_model"] for t in complete}) >= 4  # a spread of sizes


@pytest.mark.parametrize(
    ("module", "flags"),
    [
        ("analysis.trials", ["--csv", "{out}/t.csv"]),
        ("analysis.frontier", ["--plot", "{out}/f.png", "--no-baseline"]),
        ("analysis.curves", ["--plot", "{out}/c.png", "--no-baseline"]),
        ("analysis.scaling_law", ["--grid", "coarse", "--json", "{out}/law.json"]),
        ("analysis.report", ["--grid", "coarse", "--out", "{out}/r.html"]),
    ],
)
def test_the_analysis_commands_accept_it(
    big: str, tmp_path: Path, module: str, flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = Path(big.removeprefix("sqlite:///"))
    before = digest(path)
    argv = ["--storage", big, "--study-name", "big", *(f.format(out=tmp_path) for f in flags)]
    importlib.import_module(module).main(argv)  # returns: no SystemExit, no traceback
    assert capsys.readouterr().out.strip()
    assert digest(path) == before


def test_predict_refuses_it_as_no_ladder(big: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A random search over sizes and networks is not a ladder: predict says so in one line."""
    path = Path(big.removeprefix("sqlite:///"))
    before = digest(path)
    with pytest.raises(SystemExit) as exc:
        importlib.import_module("analysis.predict").main(
            ["--storage", big, "--study-name", "big", "--grid", "coarse"]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "not a ladder" in err and "\n" not in err
    assert digest(path) == before


def test_an_existing_study_is_refused(big: str, capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(main, ["--storage", big, "--study-name", "big", "--trials", "2"], capsys)
    assert "already holds a study 'big'" in err
