"""End-to-end test of ``python -m study.run`` on the real corpus with tiny models and budgets:
a study completes with everything recorded, and running it again with more trials adds exactly
the difference; and a database that stays away past the patience ends the command with one line.

Kills and resume, many workers, readers, database servers and numerical faults are in
tests/test_faults.py and tests/test_servers.py; bad input in tests/test_bad_input.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest
from studyrun import (
    CURVE_POINTS,
    REPO,
    assert_clean_output,
    check_finished,
    records,
    run,
    study_args,
    view,
    write_sweep,
)

from study import run as run_module
from study.storage import store


@pytest.mark.slow
def test_study_completes_then_resume_adds_exactly_one(tmp_path: Path, cache_dir: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    sweep = write_sweep(tmp_path)
    first = run(study_args(url, sweep, cache_dir, "--trials", "3"))
    assert first.returncode == 0, first.stderr
    v = view(url, "tiny")
    check_finished(v, target=3, name="tiny")  # every attribute, curve row and sample
    assert v.by_state() == {"COMPLETE": 3}
    for trial in v.trials:
        a = trial.user_attrs
        assert a["params"] > a["params_nonembedding"] > 0
        assert a["tokens_seen"] > 0 and a["flops_per_token"] > 0
        # Every step trains batch_size x seq_len tokens (x accumulation) and the clock counts
        # training only, until the budget is spent.
        model = a["config"]["model"]
        assert a["tokens_seen"] == (
            a["steps"] * a["batch_size"] * model["seq_len"] * a["config"]["grad_accum"]
        )
        assert a["train_seconds"] >= 1.0 and a["epochs"] > 0
        # The steady-state rate leaves out only the first tenth of the budget, so it lies
        # within a small factor of the average rate over the whole budget.
        average = a["tokens_seen"] / a["train_seconds"]
        assert 0.25 * average < a["tokens_per_second"] < 4 * average, (a, average)
        assert a["config"]["budget"] == 1.0 and a["device"] == "cpu"
        assert {"python", "torch"} <= set(a["versions"])
    study = optuna.load_study(study_name="tiny", storage=url)
    assert study.user_attrs["budget"] == 1.0
    assert study.metric_names == ["held-out perplexity"]  # Optuna's dashboard shows this name
    for trial in v.trials:  # reported by budget second (1 s, 4 points: the point's index)
        assert set(trial.intermediate_values) == set(range(1, CURVE_POINTS + 1))
        assert trial.intermediate_values[CURVE_POINTS] == pytest.approx(trial.value)
    assert "trial 0 complete: ppl" in first.stdout and "    #0 | step" in first.stdout
    assert "3/3 complete" in first.stdout
    assert f"python -m analysis.frontier --storage {url} --study-name tiny" in first.stdout
    before = records(v)

    second = run(study_args(url, sweep, cache_dir, "--trials", "4"))
    assert second.returncode == 0, second.stderr
    v = view(url, "tiny")
    check_finished(v, target=4, name="tiny")
    assert v.by_state() == {"COMPLETE": 4}
    assert {n: r for n, r in records(v).items() if n in before} == before


def test_a_database_gone_for_good_ends_the_run_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def gone(opts: object) -> int:
        raise store.StorageGone(
            "could not read the study: the database did not answer for 300s (connection refused)"
        )

    monkeypatch.setattr(run_module, "run_study", gone)
    assert run_module.main(["--trials", "1"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "error: could not read the study: the database did not answer for 300s "
        "(connection refused); run the same command to go on (trials left running "
        "are queued again then)\n"
    )


@pytest.mark.slow
def test_two_identical_runs_started_together_on_a_new_file_both_succeed(
    tmp_path: Path, cache_dir: Path
) -> None:
    """Issue 18 #6: one of them used to fail creating the tables; together they finish the
    study, each trial once."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    args = study_args(url, write_sweep(tmp_path), cache_dir, "--trials", "2")
    procs = [
        subprocess.Popen(
            args, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    for out in outs:
        assert_clean_output(out)
    v = view(url, "tiny")
    check_finished(v, target=2, name="tiny")
    assert v.by_state() == {"COMPLETE": 2}
