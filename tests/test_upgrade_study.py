"""``study.storage.upgrade_study``: a study of the older kind (objective unnamed, intermediate
values keyed by curve index) upgraded once when a study run opens it; the analysis unaffected."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import sqlalchemy as sa
from analysis_db import REPO, digest, run_cli, url

from analysis.load import load_study
from study.storage.optuna_store import METRIC_NAME, SharedStudy
from study.storage.schema import curve_step
from study.storage.upgrade_study import UPGRADE_ATTR, upgrade_study

OLDER_STUDIES = (
    "default-cpu-60s",
    "default-h100-60s",
    "positions-cpu-60s",
    "positions-h100-60s",
    "ladder-cpu-300s",
    "ladder-h100-300s",
)


def make_older_study(path: Path, name: str = "older") -> None:
    """A study as the harness wrote it before issue 15: no metric name, steps 1 .. 10."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=url(path), direction="minimize")
    study.set_user_attr("budget", 60.0)
    for budget, points in ((60.0, range(1, 11)), (300.0, range(2, 9)), (None, range(1, 5))):
        trial = study.ask()
        if budget is not None:
            trial.set_user_attr("config", {"budget": budget, "curve_points": 10})
        for index in points:  # a point without a finite loss was skipped then too
            trial.report(100.0 / index, index)
        study.tell(trial, 10.0)
    odd = study.ask()  # steps that are not curve indices: left alone
    odd.set_user_attr("config", {"budget": 60.0, "curve_points": 10})
    odd.report(5.0, 45)
    study.enqueue_trial({})  # a waiting trial with no values
    assert study.metric_names is None


def steps(path: Path, name: str = "older") -> list[dict[int, float]]:
    study = optuna.load_study(study_name=name, storage=url(path))
    return [dict(t.intermediate_values) for t in study.get_trials(deepcopy=False)]


def table_rows(path: Path) -> dict[str, list[Any]]:
    engine = sa.create_engine(url(path))
    try:
        with engine.connect() as conn:
            return {
                table: sorted(tuple(row) for row in conn.execute(sa.text(f"SELECT * FROM {table}")))
                for table in ("trial_intermediate_values", "study_system_attributes")
            }
    finally:
        engine.dispose()


@pytest.mark.slow
def test_an_older_study_is_named_and_rekeyed_once_by_a_study_run(tmp_path: Path) -> None:
    path = tmp_path / "older.db"
    make_older_study(path)
    before = steps(path)
    shared = SharedStudy.create(url(path), "older")
    assert shared.study.metric_names == [METRIC_NAME]
    after = steps(path)
    at = [curve_step(i, budget=60.0, curve_points=10) for i in range(1, 11)]
    assert after[0] == {s: 100.0 / i for i, s in zip(range(1, 11), at, strict=True)}
    assert at[:2] == [6, 12] and max(after[0]) == 60
    assert after[1] == {
        curve_step(i, budget=300.0, curve_points=10): 100.0 / i for i in range(2, 9)
    }
    # No config: the study's budget stands in.
    assert after[2] == {curve_step(i, budget=60.0, curve_points=10): 100.0 / i for i in range(1, 5)}
    assert after[3] == before[3] == {45: 5.0} and after[4] == before[4] == {}
    attrs = shared.storage.get_study_system_attrs(shared.storage.get_study_id_from_name("older"))
    assert "3 trials" in attrs[UPGRADE_ATTR]
    rows = table_rows(path)
    again = SharedStudy.create(url(path), "older")
    assert again.study.metric_names == [METRIC_NAME]
    assert table_rows(path) == rows
    assert not upgrade_study(again.storage.engine, "older", metric_name=METRIC_NAME)


def test_a_study_of_today_and_a_missing_one_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    shared = SharedStudy.create(url(path), "new")
    trial = shared.study.ask()
    trial.report(3.0, 30)
    rows = table_rows(path)
    assert not upgrade_study(shared.storage.engine, "new", metric_name=METRIC_NAME)
    assert not upgrade_study(shared.storage.engine, "absent", metric_name=METRIC_NAME)
    SharedStudy.create(url(path), "new")
    assert table_rows(path) == rows
    assert UPGRADE_ATTR not in str(rows["study_system_attributes"])


def test_a_failed_upgrade_leaves_the_study_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One transaction: the steps rekeyed before a failure are rolled back with the rest."""
    from study.storage import upgrade_study as module

    path = tmp_path / "older.db"
    make_older_study(path)
    rows = table_rows(path)
    assert not hasattr(module, "curve_step")  # imported where used: patched at its home
    calls = []

    def breaks_on_the_second_trial(index: int, *, budget: float, curve_points: int) -> int:
        calls.append(index)
        if budget == 300.0:
            raise RuntimeError("disk gone")
        return curve_step(index, budget=budget, curve_points=curve_points)

    monkeypatch.setattr("study.storage.schema.curve_step", breaks_on_the_second_trial)
    engine = sa.create_engine(url(path))
    try:
        with pytest.raises(RuntimeError, match="disk gone"):
            upgrade_study(engine, "older", metric_name=METRIC_NAME)
    finally:
        engine.dispose()
    assert len(calls) > 10 and table_rows(path) == rows


def study_frames(storage: str, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    data = load_study(storage, name)
    return data.trials, data.curves


@pytest.mark.slow
def test_the_shipped_older_studies_upgrade_on_a_copy_and_read_the_same(tmp_path: Path) -> None:
    """The shipped study.db is only copied (its bytes checked); on the copy each of its six
    older studies is upgraded and the analysis reads the same trials and curves as before."""
    shipped = REPO / "study.db"
    shipped_digest = digest(shipped)
    copy = tmp_path / "study.db"
    shutil.copyfile(shipped, copy)
    before = {name: study_frames(url(copy), name) for name in OLDER_STUDIES}
    for name in OLDER_STUDIES:
        assert sorted(steps(copy, name)[0]) == list(range(1, 11))
        shared = SharedStudy.create(url(copy), name)
        assert shared.study.metric_names == [METRIC_NAME]
        budget = float(shared.study.user_attrs["budget"])
        first = steps(copy, name)[0]
        assert sorted(first) == [
            curve_step(i, budget=budget, curve_points=10) for i in range(1, 11)
        ]
        assert all(math.isfinite(v) for v in first.values())
    for name in OLDER_STUDIES:
        trials, curves = study_frames(url(copy), name)
        pd.testing.assert_frame_equal(trials, before[name][0])
        pd.testing.assert_frame_equal(curves, before[name][1])
    assert digest(shipped) == shipped_digest


@pytest.mark.slow
def test_the_curves_command_answers_the_same_after_the_upgrade(tmp_path: Path) -> None:
    copy = tmp_path / "study.db"
    shutil.copyfile(REPO / "study.db", copy)
    args = ("--storage", url(copy), "--study-name", "default-cpu-60s", "--no-baseline")

    def curves(plot: str) -> str:
        result = run_cli("analysis.curves", *args, "--plot", str(tmp_path / plot))
        assert result.returncode == 0, result.stderr
        return result.stdout.replace(str(tmp_path / plot), "PLOT")

    first = curves("before.png")
    SharedStudy.create(url(copy), "default-cpu-60s")
    assert curves("after.png") == first and "400 curve points" in first
    assert digest(tmp_path / "after.png") == digest(tmp_path / "before.png")  # the same figure
