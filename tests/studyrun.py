"""Helpers for the tests that run real ``python -m study.run`` processes on tiny models.

``view`` reads a study the way a user would (Optuna plus the harness tables); ``check_records``
asserts what must hold whenever anyone reads it, ``check_finished`` what must hold once a run of
the command has ended cleanly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.trial import FrozenTrial, TrialState

from study import schema
from study.schema import TRIAL_ATTRS
from study.stale import intended_params

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "tinystories"
CURVE_POINTS = 4
BUDGET = 1.0

# Four sizes and a continuous learning rate, so no two trials share a configuration by chance.
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


def write_sweep(folder: Path, lr: str = NORMAL_LR, name: str = "tiny") -> Path:
    path = folder / f"{name}.py"
    path.write_text(TINY_SWEEP.format(lr=lr))
    return path


def study_args(storage: str, sweep: Path, cache_dir: Path, *extra: str,
               budget: float = BUDGET) -> list[str]:
    return [sys.executable, "-m", "study.run", "--sweep", str(sweep), "--storage", storage,
            "--data", str(DATA), "--cache-dir", str(cache_dir), "--budget", str(budget),
            "--device", "cpu", *extra]


def run(args: list[str], env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def assert_clean_output(text: str) -> None:
    """No lock errors, deadlocks or tracebacks anywhere in a run's output."""
    lowered = text.lower()
    for bad in ("database is locked", "deadlock", "traceback"):
        assert bad not in lowered, text


# ------------------------------------------------------------------------------------ reading

@dataclass(frozen=True)
class View:
    """One read of a study: its trials and the harness rows of its trials, by Optuna trial id."""

    trials: list[FrozenTrial]
    curve: dict[int, list[tuple[Any, ...]]]
    sample: dict[int, list[tuple[Any, ...]]]

    def by_state(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state.name] = out.get(t.state.name, 0) + 1
        return out

    def complete(self) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state == TrialState.COMPLETE]


def view(url: str, name: str) -> View:
    """Read ``name`` at ``url`` as a dashboard would: ``optuna.load_study`` and ``get_trials``
    (a missing study reads as empty), then the harness rows."""
    try:
        trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    except KeyError:
        trials = []
    engine = sa.create_engine(url)
    curve: dict[int, list[tuple[Any, ...]]] = {}
    sample: dict[int, list[tuple[Any, ...]]] = {}
    try:
        with engine.connect() as conn:
            for table, out in ((schema.curve, curve), (schema.sample, sample)):
                if not sa.inspect(conn).has_table(table.name):
                    continue
                order = [table.c.trial_id] + ([table.c.idx] if "idx" in table.c else [])
                query = sa.select(table).where(table.c.study_name == name).order_by(*order)
                for row in conn.execute(query):
                    out.setdefault(row.trial_id, []).append(tuple(row))
    finally:
        engine.dispose()
    return View(trials=trials, curve=curve, sample=sample)


def records(v: View) -> dict[int, tuple[Any, ...]]:
    """Everything stored about each complete trial, by trial number."""
    return {
        t.number: (t.value, t.params, t.user_attrs, t.intermediate_values, t.datetime_complete,
                   v.curve.get(t._trial_id), v.sample.get(t._trial_id))
        for t in v.complete()
    }


def check_records(v: View, *, target: int, name: str, budget: float = BUDGET) -> None:
    """What holds at any moment: a complete trial has all its attributes and rows, no more
    trials complete than asked for, trial numbers without gaps."""
    assert [t.number for t in v.trials] == list(range(len(v.trials)))
    complete = v.complete()
    assert len(complete) <= target, v.by_state()
    for t in complete:
        a = t.user_attrs
        assert set(TRIAL_ATTRS) <= set(a), set(TRIAL_ATTRS) - set(a)
        assert t.value == a["val_ppl"] and a["budget"] == budget
        assert a["config"]["model"]["d_model"] == t.params["d_model"] == a["d_model"]
        assert sorted(t.intermediate_values) == list(range(1, CURVE_POINTS + 1))
        curve = v.curve.get(t._trial_id, [])
        assert [row[1] for row in curve] == list(range(CURVE_POINTS)), curve
        assert all(row[2] == name and row[3] == t.number for row in curve)
        assert curve[-1][7] == a["val_loss"], (curve[-1], a["val_loss"])  # full precision
        samples = v.sample.get(t._trial_id, [])
        assert len(samples) == 1 and samples[0][4].startswith(samples[0][3])


def check_finished(v: View, *, target: int, name: str, budget: float = BUDGET) -> None:
    """What holds once a run has ended cleanly: exactly ``target`` complete, nothing running or
    queued, harness rows only for complete trials, every requeued trial retried as it was."""
    check_records(v, target=target, name=name, budget=budget)
    states = v.by_state()
    assert states.get("COMPLETE") == target, states
    assert not states.get("RUNNING") and not states.get("WAITING"), states
    complete_ids = {t._trial_id for t in v.complete()}
    assert set(v.curve) <= complete_ids and set(v.sample) <= complete_ids
    retries: dict[int, list[FrozenTrial]] = {}
    for t in v.trials:
        if "retry_of" in t.user_attrs:
            retries.setdefault(t.user_attrs["retry_of"], []).append(t)
    assert all(len(r) == 1 for r in retries.values()), retries  # each queued again once
    for t in v.trials:
        reason = str(t.user_attrs.get("fail_reason", ""))
        meant = intended_params(t)
        if t.state == TrialState.FAIL and reason.startswith(("stale: ", "interrupted")) and meant:
            assert t.number in retries, f"trial {t.number} ({reason}) was never retried"
            retry = retries[t.number][0]
            assert retry.system_attrs["fixed_params"] == meant
            assert {k: retry.params[k] for k in retry.params if k in meant} == {
                k: meant[k] for k in retry.params if k in meant}


# ---------------------------------------------------------------------------------- processes

def marked_processes(mark: str) -> list[int]:
    """Live processes (zombies aside) whose environment carries ``STUDY_TEST_MARK=mark``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"STUDY_TEST_MARK={mark}".encode() not in (entry / "environ").read_bytes():
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2] not in "ZX":
            pids.append(int(entry.name))
    return pids


def trainer_children(mark: str) -> list[int]:
    """The marked ``python -m study.train`` processes."""
    out = []
    for pid in marked_processes(mark):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"study.train" in cmdline:
            out.append(pid)
    return out


def wait_for_no_marked(mark: str, *, timeout: float = 30.0) -> list[int]:
    """Wait until no marked process is left; returns those still alive at the timeout."""
    deadline = time.monotonic() + timeout
    while (left := marked_processes(mark)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left
