"""Helpers for the tests of the study runner: real ``python -m study.run`` processes on tiny
models, and a fake trainer for the unit tests of its parts.

``view`` reads a study the way a user would (Optuna plus the harness tables); ``check_records``
asserts what must hold whenever anyone reads it, ``check_finished`` what must hold once a run of
the command has ended cleanly. ``FAKE_TRAINER`` stands in for ``python -m study.train`` where a
test needs an exit status or a timing the real one cannot be made to produce on demand.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.trial import FrozenTrial, TrialState

from study.config import ModelConfig, TrainConfig
from study.result import TRIAL_ATTRS, TrainResult
from study.storage import schema
from study.storage.schema import curve_step
from study.storage.stale import intended_params

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "tinystories"
if not (DATA / "train.txt.xz").exists():
    DATA = REPO / "study" / "sample"  # the same text, bundled: a plain clone runs these tests
# The servers the tests use when STUDY_TEST_POSTGRES_URL / STUDY_TEST_MYSQL_URL are unset: the
# default local addresses (a test skips only when nothing answers there).
SERVER_DEFAULTS = {
    "STUDY_TEST_POSTGRES_URL": "postgresql+psycopg2://postgres@127.0.0.1:5432/test",
    "STUDY_TEST_MYSQL_URL": "mysql+pymysql://root@127.0.0.1:3306/test",
}


def server_url(variable: str) -> str:
    """The test server URL: ``$variable`` if set, else its default local address."""
    return os.environ.get(variable) or SERVER_DEFAULTS[variable]


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
        lr=lr, batch_size=16, eval_tokens=4096,
        curve_points={CURVE_POINTS}, max_stories=2000, sample_tokens=8)
"""
NORMAL_LR = 'trial.suggest_float("lr", 1e-3, 1e-2, log=True)'


def write_sweep(folder: Path, lr: str = NORMAL_LR, name: str = "tiny") -> Path:
    path = folder / f"{name}.py"
    path.write_text(TINY_SWEEP.format(lr=lr))
    return path


def study_args(
    storage: str, sweep: Path, cache_dir: Path, *extra: str, budget: float = BUDGET
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "study.run",
        "--sweep",
        str(sweep),
        "--storage",
        storage,
        "--data",
        str(DATA),
        "--cache-dir",
        str(cache_dir),
        "--budget",
        str(budget),
        "--device",
        "cpu",
        *extra,
    ]


def run(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@contextlib.contextmanager
def tmpfs(folder: Path, *, size: str = "4m") -> Iterator[Path]:
    """A small tmpfs mounted on new ``folder`` for the block (a disk to fill, or to remount
    read-only); the test is skipped where mounting is not allowed (not root)."""
    import pytest

    folder.mkdir()
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def assert_clean_output(text: str) -> None:
    """No lock errors, deadlocks or tracebacks anywhere in a run's output."""
    lowered = text.lower()
    for bad in ("database is locked", "deadlock", "traceback"):
        assert bad not in lowered, text


# ------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class View:
    """One read of a study: its trials and the harness rows of its trials, by trial number."""

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
                order = [table.c.trial_number] + ([table.c.idx] if "idx" in table.c else [])
                query = sa.select(table).where(table.c.study_name == name).order_by(*order)
                for row in conn.execute(query):
                    out.setdefault(row.trial_number, []).append(tuple(row))
    finally:
        engine.dispose()
    return View(trials=trials, curve=curve, sample=sample)


def records(v: View) -> dict[int, tuple[Any, ...]]:
    """Everything stored about each complete trial, by trial number."""
    return {
        t.number: (
            t.value,
            t.params,
            t.user_attrs,
            t.intermediate_values,
            t.datetime_complete,
            v.curve.get(t.number),
            v.sample.get(t.number),
        )
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
        # Reported by budget second (the dashboard's axis), one step per curve point.
        assert sorted(t.intermediate_values) == [
            curve_step(k, budget=budget, curve_points=CURVE_POINTS)
            for k in range(1, CURVE_POINTS + 1)
        ]
        curve = v.curve.get(t.number, [])
        assert [row[1] for row in curve] == list(range(CURVE_POINTS)), curve
        assert all(row[2] == name and row[3] == t.number for row in curve)
        assert curve[-1][7] == a["val_loss"], (curve[-1], a["val_loss"])  # full precision
        samples = v.sample.get(t.number, [])
        assert len(samples) == 1 and samples[0][4].startswith(samples[0][3])


def check_finished(v: View, *, target: int, name: str, budget: float = BUDGET) -> None:
    """What holds once a run has ended cleanly: exactly ``target`` complete, nothing running or
    queued, harness rows only for complete trials, every requeued trial retried as it was."""
    check_records(v, target=target, name=name, budget=budget)
    states = v.by_state()
    assert states.get("COMPLETE") == target, states
    assert not states.get("RUNNING") and not states.get("WAITING"), states
    complete = {t.number for t in v.complete()}
    assert set(v.curve) <= complete and set(v.sample) <= complete
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
                k: meant[k] for k in retry.params if k in meant
            }


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


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------------------ fake trainer

FAKE_TRAINER = """
import argparse, json, os, signal, sys, time
from study import events as ev
p = argparse.ArgumentParser()
for flag in ("--config", "--json", "--events", "--cache-dir", "--checkpoint"):
    p.add_argument(flag)
p.add_argument("--quiet", action="store_true")
a = p.parse_args()
mode = os.environ["FAKE_MODE"]
with open(os.environ["FAKE_PIDFILE"], "w") as f:
    f.write(str(os.getpid()))
events = ev.Events(open(a.events, "a"))
def curve(frac, elapsed_s, tokens, train_loss, val_loss):
    point = dict(elapsed_s=elapsed_s, tokens=tokens, train_loss=train_loss, val_loss=val_loss)
    events.emit(ev.curve(frac=frac, point=point))
events.emit(ev.progress(elapsed_s=0.5, budget=2.0, step=5, train_loss=5.0, lr=1e-3, tok_s=1000.0))
if mode == "wait":  # train until the file FAKE_GO appears, then finish as "ok"
    while not os.path.exists(os.environ["FAKE_GO"]):
        time.sleep(0.05)
    mode = "ok"
curve(0.5, 1.0, 512, 5.0, 5.1)
if mode == "ok":
    curve(1.0, 2.0, 1024, 4.0, None)
    events.emit(ev.final(val_loss=4.2, val_bpb=2.0))
    with open(a.json, "w") as f:
        f.write(os.environ["FAKE_RESULT"])
elif mode == "diverged":
    with open(a.json, "w") as f:
        json.dump({"error": "diverged", "reason": "training loss became NaN by step 3"}, f)
    sys.exit(3)
elif mode == "oom_no_file":
    print("error: out of memory at step 1", file=sys.stderr)
    sys.exit(4)
elif mode == "crash":
    raise RuntimeError("boom in the trainer")
elif mode == "killed":
    os.kill(os.getpid(), signal.SIGKILL)
elif mode == "slow":
    time.sleep(60)
"""


@dataclass(frozen=True)
class FakeTrainer:
    """``command`` runs ``FAKE_TRAINER``; ``env`` (plus ``FAKE_MODE``) is its environment, in
    which it writes its pid to ``pidfile``."""

    command: tuple[str, ...]
    pidfile: Path
    env: dict[str, str]


def fake_trainer(folder: Path) -> FakeTrainer:
    script = folder / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    pidfile = folder / "pid"
    return FakeTrainer(
        command=(sys.executable, str(script)),
        pidfile=pidfile,
        env={
            **os.environ,
            "FAKE_PIDFILE": str(pidfile),
            "FAKE_RESULT": json.dumps(make_result().to_dict()),
        },
    )


def make_result(**changes: Any) -> TrainResult:
    """A complete trial's result as the fake trainer reports it (``changes`` applied)."""
    config = TrainConfig(model=ModelConfig(d_model=64, n_head=2), budget=2.0).to_dict()
    values: dict[str, Any] = dict(
        config=config,
        val_loss=4.2,
        val_ppl=66.7,
        val_bpb=2.0,
        params=300_000,
        params_nonembedding=40_000,
        flops_per_token=2_000_000,
        tokens_seen=1024,
        tokens_per_second=512.0,
        train_seconds=2.0,
        steps=10,
        epochs=0.01,
        batch_size=4,
        device="cpu",
        device_name="cpu x86_64",
        versions={"python": "3", "torch": "2"},
        sample="Once upon a time there was",
        unique_tokens=102_400,
        eval_tokens=4096,
        eval_seconds=0.5,
        curve=[
            {
                "elapsed_s": 1.0,
                "tokens": 512,
                "train_loss": 5.0,
                "val_loss": 5.1,
                "eval_tokens": 4096,
            },
            {
                "elapsed_s": 2.0,
                "tokens": 1024,
                "train_loss": 4.0,
                "val_loss": 4.2,
                "eval_tokens": 4096,
            },
        ],
    )
    values.update(changes)
    return TrainResult(**values)
