"""End-to-end tests of ``python -m study.run`` on the real corpus with tiny models and budgets."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from study import schema
from study.schema import TRIAL_ATTRS

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "tinystories"
CURVE_POINTS = 4

TINY_SWEEP = f"""
from study.config import ModelConfig, TrainConfig

def suggest(trial):
    d_model = trial.suggest_categorical("d_model", [32, 48])
    n_layer = trial.suggest_int("n_layer", 1, 2)
    lr = {{lr}}
    return TrainConfig(
        model=ModelConfig(n_layer=n_layer, d_model=d_model, n_head=2, vocab_size=512, seq_len=64),
        lr=lr, batch_size=16, eval_tokens=4096, curve_eval_tokens=1024,
        curve_points={CURVE_POINTS}, max_stories=2000, sample_tokens=8)
"""
NORMAL_LR = 'trial.suggest_float("lr", 1e-3, 1e-2, log=True)'
# Trial 0 diverges: after one AdamW step at this rate every weight overflows float32, so the
# trainer stops on a NaN loss (however few steps the budget allows); the others train normally.
DIVERGING_LR = f'1e30 if trial.number == 0 else {NORMAL_LR}'


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One token cache for the session, so the tokenizer is trained once."""
    return tmp_path_factory.mktemp("token-cache")


def write_sweep(folder: Path, lr: str = NORMAL_LR) -> Path:
    path = folder / "tiny.py"
    path.write_text(TINY_SWEEP.format(lr=lr))
    return path


def study_args(db: Path, sweep: Path, cache_dir: Path, *extra: str,
               budget: float = 1.0) -> list[str]:
    return [sys.executable, "-m", "study.run", "--sweep", str(sweep), "--storage",
            f"sqlite:///{db}", "--data", str(DATA), "--cache-dir", str(cache_dir), "--budget",
            str(budget), "--device", "cpu", *extra]


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def load(url: str, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def harness_rows(url: str, table: sa.Table, trial_id: int) -> list[Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.select(table).where(table.c.trial_id == trial_id)))
    finally:
        engine.dispose()


def check_complete_trial(url: str, trial: optuna.trial.FrozenTrial) -> None:
    assert set(TRIAL_ATTRS) <= set(trial.user_attrs), set(TRIAL_ATTRS) - set(trial.user_attrs)
    a = trial.user_attrs
    assert trial.value == pytest.approx(a["val_ppl"])
    assert a["params"] > a["params_nonembedding"] > 0
    assert a["tokens_seen"] > 0 and a["flops_per_token"] > 0
    assert a["tokens_per_second"] >= 0  # steady-state rate; a budget this short may have none
    assert a["budget"] == 1.0 and a["config"]["budget"] == 1.0 and a["device"] == "cpu"
    assert a["config"]["model"]["d_model"] == trial.params["d_model"] == a["d_model"]
    assert {"python", "torch"} <= set(a["versions"])
    assert sorted(trial.intermediate_values) == list(range(1, CURVE_POINTS + 1))
    curve = harness_rows(url, schema.curve, trial._trial_id)
    assert [row.idx for row in curve] == list(range(CURVE_POINTS))
    assert all(row.study_name == "tiny" and row.trial_number == trial.number for row in curve)
    assert curve[-1].val_loss == pytest.approx(a["val_loss"], rel=1e-6)
    samples = harness_rows(url, schema.sample, trial._trial_id)
    assert len(samples) == 1 and samples[0].text.startswith(samples[0].prompt)


def test_study_completes_then_resume_adds_exactly_one(tmp_path: Path, cache_dir: Path) -> None:
    db, sweep = tmp_path / "study.db", write_sweep(tmp_path)
    url = f"sqlite:///{db}"
    first = run(study_args(db, sweep, cache_dir, "--trials", "3"))
    assert first.returncode == 0, first.stderr
    study = load(url)
    assert states(study) == {"COMPLETE": 3}
    for trial in study.trials:
        check_complete_trial(url, trial)
    assert study.user_attrs["budget"] == 1.0
    assert "trial 0 complete: ppl" in first.stdout and "    #0 | step" in first.stdout
    assert "3/3 complete" in first.stdout
    assert f"python -m analysis.frontier --storage {url} --study-name tiny" in first.stdout
    before = {t.number: t.value for t in study.trials}

    second = run(study_args(db, sweep, cache_dir, "--trials", "4"))
    assert second.returncode == 0, second.stderr
    study = load(url)
    assert states(study) == {"COMPLETE": 4}
    assert {t.number: t.value for t in study.trials if t.number in before} == before
    check_complete_trial(url, study.trials[3])


def _marked_processes(mark: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"STUDY_TEST_MARK={mark}".encode() in (entry / "environ").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_sigkill_mid_trial_then_restart_finishes(tmp_path: Path, cache_dir: Path) -> None:
    db, sweep = tmp_path / "study.db", write_sweep(tmp_path)
    url = f"sqlite:///{db}"
    mark = uuid.uuid4().hex
    args = study_args(db, sweep, cache_dir, "--trials", "1", budget=2)
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "STUDY_TEST_MARK": mark})
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # the first progress line: trial 0's child is training
        seen.append(line)
        if line.startswith("    #0 | step"):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert any(line.startswith("    #0 | step") for line in seen), "".join(seen)
    study = load(url)
    assert [t.state for t in study.trials] == [TrialState.RUNNING]
    killed = study.trials[0]
    if sys.platform.startswith("linux"):  # the trainer child died with its parent
        deadline = time.monotonic() + 10
        while _marked_processes(mark) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _marked_processes(mark) == []

    restart = run(args)
    assert restart.returncode == 0, restart.stderr
    assert "left running by a dead worker" in restart.stdout
    study = load(url)
    assert states(study) == {"FAIL": 1, "COMPLETE": 1}
    failed = study.trials[0]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["fail_reason"].startswith("stale: worker")
    retried = study.trials[1]
    assert retried.params == killed.params and retried.user_attrs["retry_of"] == 0
    assert harness_rows(url, schema.curve, failed._trial_id) == []


def test_two_workers_share_one_sqlite_file(tmp_path: Path, cache_dir: Path) -> None:
    db, sweep = tmp_path / "study.db", write_sweep(tmp_path)
    result = run(study_args(db, sweep, cache_dir, "--trials", "4", "--workers", "2"))
    assert result.returncode == 0, result.stderr
    assert "locked" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    study = load(f"sqlite:///{db}")
    assert states(study) == {"COMPLETE": 4}
    assert len({t.user_attrs["worker"]["pid"] for t in study.trials}) == 2
    assert {t.user_attrs["config"]["seed"] for t in study.trials} == {0}


def test_failed_trials_are_recorded_and_the_study_goes_on(tmp_path: Path,
                                                          cache_dir: Path) -> None:
    db, sweep = tmp_path / "study.db", write_sweep(tmp_path, lr=DIVERGING_LR)
    url = f"sqlite:///{db}"
    result = run(study_args(db, sweep, cache_dir, "--trials", "1"))
    assert result.returncode == 0, result.stderr
    study = load(url)
    assert states(study) == {"FAIL": 1, "COMPLETE": 1}
    reason = study.trials[0].user_attrs["fail_reason"]
    assert reason.startswith("diverged: ") and "NaN" in reason
    assert harness_rows(url, schema.curve, study.trials[0]._trial_id) == []
    assert "trial 0 failed: diverged:" in result.stdout

    # Every trial runs out of memory (the trainer's fault hook): the run stops at the limit.
    oom_db = tmp_path / "oom.db"
    oom = run(study_args(oom_db, write_sweep(tmp_path), cache_dir, "--trials", "1",
                         "--max-failures", "2"), env={"STUDY_FAULT_OOM_AT_STEP": "0"})
    assert oom.returncode == 1
    assert "error: stopped at 0/1 complete trials after 2 failed" in oom.stderr
    study = load(f"sqlite:///{oom_db}")
    assert states(study) == {"FAIL": 2}
    assert all(t.user_attrs["fail_reason"].startswith("oom: out of memory at step 0")
               for t in study.trials)


SERVERS = {"postgresql": "STUDY_TEST_POSTGRES_URL", "mysql": "STUDY_TEST_MYSQL_URL"}


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_two_workers_on_a_database_server(server: str, tmp_path: Path, cache_dir: Path) -> None:
    url = os.environ.get(SERVERS[server])
    if not url:
        pytest.skip(f"{SERVERS[server]} is not set")
    engine = sa.create_engine(url)
    try:
        engine.connect().close()
    except sa.exc.SQLAlchemyError as exc:
        pytest.skip(f"{server} at {SERVERS[server]} is not reachable: {exc}")
    name = f"test-{uuid.uuid4().hex[:12]}"
    sweep = write_sweep(tmp_path)
    args = study_args(tmp_path / "unused.db", sweep, cache_dir, "--trials", "2", "--workers", "2",
                      "--study-name", name)
    args[args.index("--storage") + 1] = url
    try:
        result = run(args)
        assert result.returncode == 0, result.stderr
        study = load(url, name)
        assert states(study) == {"COMPLETE": 2}
        for trial in study.trials:
            assert len(harness_rows(url, schema.curve, trial._trial_id)) == CURVE_POINTS
    finally:
        try:
            study = load(url, name)
            with engine.begin() as conn:
                for trial in study.trials:
                    for table in (schema.curve, schema.sample):
                        conn.execute(table.delete().where(table.c.trial_id == trial._trial_id))
            optuna.delete_study(study_name=name, storage=url)
        except KeyError:
            pass
        engine.dispose()


# ------------------------------------------------------------------------------------ bad input

def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    from study.run import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def _argv(db: Path, *extra: str) -> list[str]:
    return ["--storage", f"sqlite:///{db}", "--data", str(DATA), "--budget", "1", *extra]


@pytest.mark.parametrize(("extra", "message"), [
    (["--sweep", "no_such_sweep"], "unknown sweep 'no_such_sweep'"),
    (["--sweep", "{tmp}/empty.py"], "does not define a function suggest"),
    (["--sweep", "{tmp}/missing.py"], "sweep file not found"),
    (["--trials", "0"], "--trials must be at least 1"),
    (["--workers", "0"], "--workers must be at least 1"),
    (["--data", "{tmp}/no-corpus"], "no-corpus"),
])
def test_bad_input_exits_2_and_creates_nothing(extra: list[str], message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               cache_dir: Path) -> None:
    (tmp_path / "empty.py").write_text("x = 1\n")
    db = tmp_path / "study.db"
    argv = _argv(db, "--cache-dir", str(cache_dir), *[e.format(tmp=tmp_path) for e in extra])
    assert message in _main(argv, capsys)
    assert not db.exists()


def test_storage_that_cannot_be_opened_exits_2(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert "cannot open storage" in _main(
        _argv(tmp_path / "no-such-folder" / "study.db"), capsys)
    assert "cannot parse storage URL" in _main(["--storage", "not a url"], capsys)
    assert "cannot open storage" in _main(
        ["--storage", "postgresql+psycopg2://nobody@127.0.0.1:1/none"], capsys)
    not_a_db = tmp_path / "notes.db"
    not_a_db.write_text("these are notes, not a database\n" * 100)
    before = not_a_db.read_bytes()
    assert "cannot open storage" in _main(_argv(not_a_db), capsys)
    assert not_a_db.read_bytes() == before


def _snapshot(db: Path) -> list[tuple[str, list[Any]]]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                             "ORDER BY name")]
        return [(t, conn.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables]


def test_existing_study_that_does_not_match_exits_2_untouched(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    optuna.create_study(storage=url, study_name="default", direction="maximize")
    other = optuna.create_study(storage=url, study_name="other", direction="minimize")
    other.set_user_attr("budget", 300.0)
    before = _snapshot(db)
    assert "maximize" in _main(_argv(db), capsys).lower()
    assert "was run with --budget 300" in _main(_argv(db, "--study-name", "other"), capsys)
    assert _snapshot(db) == before
