"""``python -m study.run`` under faults and load: SIGKILLs at random points, four workers on one
SQLite file with readers at work, NaN and out-of-memory trials.

Each test runs the real command on the shared corpus with tiny models and 1-second budgets.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from studyrun import (
    CURVE_POINTS,
    REPO,
    assert_clean_output,
    check_finished,
    check_records,
    records,
    run,
    study_args,
    tmpfs,
    trainer_children,
    view,
    wait_for_no_marked,
    write_sweep,
)

pytestmark = pytest.mark.slow  # every test here starts processes or trains

# ------------------------------------------------------------------------------ kill and resume

KILL_SEED = 8
KILL_TARGET = 5
# (what to kill, workers): the study process, or one trial's trainer child and then the study.
KILL_PLAN = (("study", 1), ("child", 1), ("study", 2), ("study", 1), ("child", 2), ("study", 1))


def _sigkill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def _wait_or_exit(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """Sleep up to ``seconds`` or until ``proc`` exits; True if it is still running."""
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        return True
    return False


def _kill_a_trainer(proc: subprocess.Popen[bytes], mark: str, rng: random.Random) -> bool:
    """Wait for a trial's trainer child, let it live a random while, SIGKILL it."""
    while proc.poll() is None:
        children = trainer_children(mark)
        if children:
            time.sleep(rng.uniform(0.5, 4.0))
            return any(_sigkill(pid) for pid in trainer_children(mark))
        time.sleep(0.1)
    return False


def test_random_sigkills_then_reruns_lose_nothing(tmp_path: Path, cache_dir: Path) -> None:
    """Every round runs the same command and SIGKILLs it at a seeded random moment (start-up,
    token preparation, asking, training, recording), or first SIGKILLs a trial's trainer child.
    After every round each trial completed so far is stored exactly as it was; a last clean run
    ends with exactly the asked number of complete trials, none running, nothing lost."""
    rng = random.Random(KILL_SEED)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    args = study_args(url, write_sweep(tmp_path), cache_dir, "--trials", str(KILL_TARGET))
    kept: dict[int, tuple] = {}
    tried = {"study": 0, "child": 0}
    landed = {"study": 0, "child": 0}
    for victim, workers in KILL_PLAN:
        mark = uuid.uuid4().hex
        log = tmp_path / f"round-{mark}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [*args, "--workers", str(workers)],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "STUDY_TEST_MARK": mark},
            )
        try:
            if victim == "child":
                tried["child"] += 1
                landed["child"] += _kill_a_trainer(proc, mark, rng)
            tried["study"] += 1
            if _wait_or_exit(proc, rng.uniform(0.5, 9.0)):
                landed["study"] += _sigkill(proc.pid)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        text = log.read_text()
        assert "database is locked" not in text and "Traceback" not in text, text
        # The parent-death signal takes the workers and trainers down with the study process.
        assert wait_for_no_marked(mark) == []
        v = view(url, "tiny")
        check_records(v, target=KILL_TARGET, name="tiny")
        now = records(v)
        assert {n: now[n] for n in kept} == kept  # nothing completed earlier has changed
        kept.update(now)

    final = run([*args, "--workers", "1"])
    assert final.returncode == 0, final.stdout + final.stderr
    assert_clean_output(final.stdout + final.stderr)
    v = view(url, "tiny")
    check_finished(v, target=KILL_TARGET, name="tiny")
    assert {n: records(v)[n] for n in kept} == kept
    # A rerun of a finished study changes nothing at all.
    again = run([*args, "--workers", "2"])
    assert again.returncode == 0, again.stderr
    after = view(url, "tiny")
    assert len(after.trials) == len(v.trials) and records(after) == records(v)

    reasons = [str(t.user_attrs.get("fail_reason")) for t in v.trials if t.state == TrialState.FAIL]
    crashed = [r for r in reasons if r.startswith("crash: killed by SIGKILL")]
    assert 1 <= len(crashed) <= landed["child"], reasons
    assert all(r.startswith(("stale: ", "crash: killed by SIGKILL")) for r in reasons), reasons
    print(
        f"\nkills: {tried['study']} of the study process tried, {landed['study']} landed "
        f"before it finished; {tried['child']} of a trainer child, {landed['child']} landed; "
        f"{len(v.trials)} trials: {v.by_state()}; {len(kept)} complete records unchanged"
    )


# Long enough that a trainer child seen starting is still training when the signal lands (start-up
# and evaluation come on top), short enough for the rerun to train the queued trials quickly.
SIGTERM_BUDGET = 6.0


def _sighup_default() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("stop", "workers"), [(signal.SIGTERM, 1), (signal.SIGTERM, 2), (signal.SIGHUP, 1)]
)
def test_sigterm_fails_and_requeues_the_running_trials(
    tmp_path: Path, cache_dir: Path, stop: signal.Signals, workers: int
) -> None:
    """``kill PID`` of the study process alone (as a scheduler stops a job), or SIGHUP (the
    terminal closed), stops it the way Ctrl-C does: every trial in training is failed as
    interrupted and queued again, once; no process is left behind, the message says how to
    resume, and the next run trains the queued trials and nothing else."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    sweep = write_sweep(tmp_path)
    mark = uuid.uuid4().hex
    args = study_args(
        url,
        sweep,
        cache_dir,
        "--trials",
        str(workers),
        "--workers",
        str(workers),
        budget=SIGTERM_BUDGET,
    )
    proc = subprocess.Popen(
        args,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "STUDY_TEST_MARK": mark},
        # as from a terminal: a suite run under nohup would pass its ignored SIGHUP on, which
        # the study rightly keeps ignoring (study.errors.stop_like_ctrl_c)
        preexec_fn=_sighup_default,
    )
    try:
        deadline = time.monotonic() + 120
        while len(trainer_children(mark)) < workers and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.1)
        assert len(trainer_children(mark)) == workers
        proc.send_signal(stop)
        output = proc.communicate(timeout=90)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output, output
    assert "queued again; resume with: python -m study.run --sweep" in output, output
    assert "leaked semaphore" not in output, output
    assert wait_for_no_marked(mark) == []
    v = view(url, "tiny")
    assert v.by_state() == {"FAIL": workers, "WAITING": workers}, v.by_state()
    failed = [t for t in v.trials if t.state == TrialState.FAIL]
    assert all(t.user_attrs["fail_reason"] == "interrupted" for t in failed)
    assert not v.curve and not v.sample

    rerun = run(study_args(url, sweep, cache_dir, "--trials", str(workers), budget=SIGTERM_BUDGET))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    v = view(url, "tiny")
    check_finished(v, target=workers, name="tiny", budget=SIGTERM_BUDGET)
    assert len(v.trials) == 2 * workers  # the queued retries, no new draws


STOP_GRACE = 6.0  # STUDY_HEARTBEAT_GRACE_S for the stopped-worker test: a run beats each 1 s


def test_a_stopped_worker_written_off_drops_its_trial_when_it_comes_back(
    tmp_path: Path, cache_dir: Path
) -> None:
    """A study process stopped (SIGSTOP) mid-trial for longer than the grace period: a second
    run on the same host writes its trial off (the process is alive but silent), queues it
    again and finishes the study; resumed (SIGCONT), the first run drops the written-off trial
    quietly and exits 0. Nothing is counted twice or lost."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    mark = uuid.uuid4().hex
    env = {**os.environ, "STUDY_TEST_MARK": mark, "STUDY_HEARTBEAT_GRACE_S": str(STOP_GRACE)}
    args = study_args(url, write_sweep(tmp_path), cache_dir, "--trials", "2", budget=3.0)
    log = tmp_path / "stopped.log"
    with open(log, "wb") as out:
        first = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while not trainer_children(mark):
            assert first.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        first.send_signal(signal.SIGSTOP)
        try:
            second = run(args, env={"STUDY_HEARTBEAT_GRACE_S": str(STOP_GRACE)})
        finally:
            first.send_signal(signal.SIGCONT)
        first.wait(120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    text = log.read_text()
    assert second.returncode == 0, second.stdout + second.stderr
    assert first.returncode == 0, text
    assert_clean_output(text + second.stdout + second.stderr)
    assert "trial 0 was failed as stale by another worker and queued again" in text
    v = view(url, "tiny")
    check_finished(v, target=2, name="tiny", budget=3.0)
    assert v.by_state() == {"FAIL": 1, "COMPLETE": 2}
    assert (
        v.trials[0]
        .user_attrs["fail_reason"]
        .startswith(f"stale: no heartbeat from worker {v.trials[0].user_attrs['worker']['host']}:")
    )


# --------------------------------------------------------------------- many workers, readers

WORKERS, MANY = 4, 12


def _analysis(module: str, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(
        [
            sys.executable,
            "-m",
            f"analysis.{module}",
            "--storage",
            url,
            "--study-name",
            "tiny",
            *extra,
        ],
        timeout=120,
    )


def test_four_workers_on_one_sqlite_file_with_readers(tmp_path: Path, cache_dir: Path) -> None:
    """4 workers, 12 trials, one SQLite file; meanwhile an Optuna-dashboard-style reader polls
    it and the analysis commands read it. All trials complete once each, numbers contiguous,
    no 'database is locked' anywhere, and every read sees whole trials only."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    log = tmp_path / "study.log"
    args = study_args(
        url, write_sweep(tmp_path), cache_dir, "--trials", str(MANY), "--workers", str(WORKERS)
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    reads = 0
    analyses: dict[str, subprocess.CompletedProcess[str]] = {}
    while_running: list[str] = []
    try:
        while proc.poll() is None:
            if f"[tiny] {url}: 0/{MANY} complete" not in log.read_text():
                time.sleep(0.2)  # readers open a study that exists (its tables made)
                continue
            v = view(url, "tiny")  # optuna.load_study + get_trials, as the dashboard does
            check_records(v, target=MANY, name="tiny")
            reads += 1
            if len(v.complete()) >= 3 and not analyses:
                for module, extra in (
                    ("frontier", ()),
                    ("crossover", ()),
                    ("report", ("--out", str(tmp_path / "r.html"), "--grid", "coarse")),
                ):
                    analyses[module] = _analysis(module, url, *extra)
                    if proc.poll() is None:
                        while_running.append(module)
            time.sleep(0.5)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert proc.returncode == 0, text
    assert_clean_output(text)

    v = view(url, "tiny")
    check_finished(v, target=MANY, name="tiny")
    assert v.by_state() == {"COMPLETE": MANY}
    assert sum(len(rows) for rows in v.curve.values()) == MANY * CURVE_POINTS
    assert sum(len(rows) for rows in v.sample.values()) == MANY
    configs = {tuple(sorted(t.params.items())) for t in v.trials}
    assert len(configs) == MANY  # no trial recorded twice
    assert len({t.user_attrs["worker"]["pid"] for t in v.trials}) == WORKERS
    assert re.search(rf"\[tiny\] {MANY}/{MANY} complete", text)

    assert reads >= 5 and while_running[:1] == ["frontier"], (reads, while_running)
    for module, result in analyses.items():
        assert "Traceback" not in result.stderr and "locked" not in result.stderr, result.stderr
        if module == "crossover" and result.returncode == 2:
            # Too few sizes with a steady-state rate this early is the data's fault, not a read
            # error: one line naming what the fit lacks.
            assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
            assert "storage" not in result.stderr and "cannot" not in result.stderr
        else:
            assert result.returncode == 0, f"{module}: {result.stderr}"
    assert "tiny" in analyses["report"].stdout and (tmp_path / "r.html").stat().st_size > 0
    # The finished study reads the same through the analysis loader.
    from analysis.load import load_study

    loaded = load_study(url, "tiny")
    assert len(loaded.complete()) == MANY and len(loaded.curves) == MANY * CURVE_POINTS


# --------------------------------------------------------------------------- numerical faults

OOM_LR = 0.00123  # the trial with this learning rate runs out of memory (see OOM_HOOK)
FAULT_LR = (
    f"1e30 if trial.number in (0, 3) else {OOM_LR} if trial.number == 1 "
    f'else trial.suggest_float("lr", 1e-3, 1e-2, log=True)'
)
# Long enough for many steps: a diverging trial must stop at its first non-finite loss (the
# second step: the first step's update at this rate overflows the weights), not at the end.
FAULT_BUDGET = 3.0
# Arms the trainer's own fault hook (STUDY_FAULT_OOM_AT_STEP, which raises
# torch.OutOfMemoryError) in the one trainer child whose config has OOM_LR, so a single trial
# of the study runs out of memory. Python imports sitecustomize from PYTHONPATH at start-up.
OOM_HOOK = f"""
import json, os, sys
if "--config" in sys.argv:
    with open(sys.argv[sys.argv.index("--config") + 1]) as f:
        if json.load(f).get("lr") == {OOM_LR!r}:
            os.environ["STUDY_FAULT_OOM_AT_STEP"] = "1"
"""


def test_nan_and_oom_fail_their_trial_and_the_study_goes_on(
    tmp_path: Path, cache_dir: Path
) -> None:
    """Trial 0 diverges (NaN loss), trial 1 runs out of memory, trial 2 trains: the run ends
    with one complete trial and both failures recorded with their reasons. A second run whose
    failure limit is 1 stops at trial 3's divergence with a clear line and status 1."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(OOM_HOOK)
    env = {"PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    url = f"sqlite:///{tmp_path / 'study.db'}"
    sweep = write_sweep(tmp_path, lr=FAULT_LR)

    first = run(study_args(url, sweep, cache_dir, "--trials", "1", budget=FAULT_BUDGET), env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert_clean_output(first.stdout + first.stderr)
    v = view(url, "tiny")
    assert [t.state for t in v.trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    diverged, oom = (t.user_attrs["fail_reason"] for t in v.trials[:2])
    # Stopped at once: at the first non-finite loss (the second step; a device that checks
    # without syncing may see it a step or two later), before the first curve point.
    found = re.fullmatch(r"diverged: training loss became NaN or infinite by step (\d+)", diverged)
    assert found and int(found.group(1)) <= 4, diverged
    assert v.trials[0].intermediate_values == {}
    assert oom.startswith("oom: out of memory at step 1: simulated out of memory"), oom
    assert v.trials[1].user_attrs["config"]["lr"] == OOM_LR
    # The complete trial is whole, and no rows were written for either failure.
    check_finished(v, target=1, name="tiny", budget=FAULT_BUDGET)
    assert "trial 0 failed: diverged:" in first.stdout
    assert "trial 1 failed: oom: out of memory" in first.stdout
    assert "trial 2 complete: ppl" in first.stdout

    second = run(
        study_args(
            url, sweep, cache_dir, "--trials", "2", "--max-failures", "1", budget=FAULT_BUDGET
        ),
        env=env,
    )
    assert second.returncode == 1
    assert second.stderr.strip() == (
        "error: stopped at 1/2 complete trials after 1 failed ones "
        "in this run (--max-failures 1); run the same command to "
        "go on"
    )
    v = view(url, "tiny")
    assert v.by_state() == {"FAIL": 3, "COMPLETE": 1}
    assert v.trials[3].user_attrs["fail_reason"].startswith("diverged: ")
    assert optuna.load_study(study_name="tiny", storage=url).best_trial.number == 2


# ------------------------------------------------------------------------------ a full disk


def _fill(folder: Path) -> Path:
    """Write zeros into ``folder`` until its file system is full; returns the filler."""
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def _training(db: Path) -> bool:
    """True once a trial of the study in ``db`` is RUNNING with its config stored (training)."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return bool(
                conn.execute(
                    "SELECT COUNT(*) FROM trials JOIN trial_user_attributes USING (trial_id) "
                    "WHERE state = 'RUNNING' AND key = 'config'"
                ).fetchone()[0]
            )
    except sqlite3.Error:
        return False


def test_a_full_disk_keeps_the_trained_result_and_a_rerun_records_it(
    tmp_path: Path, cache_dir: Path
) -> None:
    """The database's disk fills while a trial trains (a 4 MB tmpfs): the run ends with one
    line, exit 1, the trained result kept in a pending file; a rerun on the still-full disk
    says the same in one line; a rerun with room records the kept result without training it
    again (issue 18 #7)."""
    with tmpfs(tmp_path / "disk") as disk:
        url = f"sqlite:///{disk / 'study.db'}"
        args = study_args(url, write_sweep(tmp_path), cache_dir, "--trials", "1", budget=3.0)
        proc = subprocess.Popen(
            args, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        while not _training(disk / "study.db") and proc.poll() is None:
            time.sleep(0.05)
        filler = _fill(disk)
        out = proc.communicate(timeout=300)[0]
        assert proc.returncode == 1 and "Traceback" not in out, out
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "the database's disk is full" in errors[0], out
        assert "trial 0's result is kept in " in errors[0], out
        kept = sorted((cache_dir / "pending-results").glob("*/trial-0.json"))
        assert len(kept) == 1 and kept[0].parent.name in errors[0]
        assert view(url, "tiny").by_state() == {"RUNNING": 1}

        again = run(args)
        assert again.returncode == 1 and "Traceback" not in again.stderr, again.stderr
        assert again.stderr.count("\n") == 1 and "disk is full" in again.stderr, again.stderr
        value = json.loads(kept[0].read_text())["value"]

        filler.unlink()
        final = run(args)
        assert final.returncode == 0, final.stderr
        assert "recorded the kept result of trial(s) #0" in final.stdout + final.stderr
        v = view(url, "tiny")
        check_finished(v, target=1, name="tiny", budget=3.0)
        assert v.by_state() == {"COMPLETE": 1}  # recorded, not trained again
        assert v.trials[0].value == value and not kept[0].exists()
