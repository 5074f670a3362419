"""Trials left RUNNING by a dead or written-off worker: find them, fail them, queue them again.

Each running trial carries two user attributes: ``worker`` (host, boot id, pid and process start
time of the worker process that owns it) and ``heartbeat`` (unix time, refreshed every
``heartbeat_s()`` while the trial trains). A trial is stale when its worker is on this host and that
process is gone (checked at once, no waiting: Optuna's own heartbeat cannot see a dead process and
would wait out its grace period), or when its heartbeat is older than ``grace_s()`` wherever its
worker runs (a worker stopped or cut off from the database; host clocks must agree to well within
that, as NTP keeps them). ``study.storage.optuna_store`` says why this is not Optuna's heartbeat.

Workers start and stamp trials while holding the study lock (``study_lock.StudyLock``), so a
caller that holds it and finds a RUNNING trial with no ``worker`` stamp knows its worker was
killed in between. Recovery is idempotent: a worker killed halfway through failing a trial
leaves it either RUNNING (recovered again) or FAIL without its retry or with rows left over,
which the next recovery completes.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.errors import UsageError

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from study.storage.optuna_store import SharedStudy

log = logging.getLogger(__name__)

HEARTBEAT_S = 20.0  # seconds between heartbeats (at most; see heartbeat_s)
GRACE_S = 120.0  # default seconds of silence after which a trial is written off
MIN_GRACE_S = 5.0  # the shortest grace accepted (a heartbeat each 0.8 s)


def grace_s() -> float:
    """Seconds of heartbeat silence after which a trial is stale: ``$STUDY_HEARTBEAT_GRACE_S``,
    default ``GRACE_S``. Every machine of a study should use the same value.

    Raises:
        UsageError: the variable is set but is not a positive number.
    """
    text = os.environ.get("STUDY_HEARTBEAT_GRACE_S", "").strip()
    if not text:
        return GRACE_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and MIN_GRACE_S <= value):
        # Shorter, and the heartbeats (six to a grace) of busy workers on one database come
        # too late: live trials are written off and queued again without end.
        raise UsageError(
            f"STUDY_HEARTBEAT_GRACE_S must be a finite number of seconds >= {MIN_GRACE_S:g}, "
            f"got {text!r}"
        )
    return value


def heartbeat_s() -> float:
    """Seconds between a running trial's heartbeats: six to a grace period, at most
    ``HEARTBEAT_S``."""
    return min(HEARTBEAT_S, grace_s() / 6)


def this_worker() -> dict[str, Any]:
    """Identity of the calling process, stored on each trial it runs."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot": _boot_id(), "pid": pid, "start": _start_time(pid)}


REQUEUED_REASONS = ("stale: ", "interrupted")  # fail reasons whose trial is queued again


def stale_reason(
    trial: FrozenTrial,
    *,
    me: dict[str, Any],
    now: float,
    locked: bool = False,
    reachable_since: float = -math.inf,
) -> str | None:
    """Why ``trial`` (RUNNING) will never finish, or None while its worker may still be alive.

    ``locked``: the caller holds the study lock, under which every trial is started and stamped.
    ``reachable_since``: unix time at which the caller saw the database come back after an
    outage; heartbeats its workers could not write meanwhile are not held against them.
    """
    worker = trial.user_attrs.get("worker")
    if worker is None and locked:
        return "its worker was killed before it stamped the trial"
    if isinstance(worker, dict) and worker.get("host") == me["host"]:
        where = f"{worker.get('host')}:{worker.get('pid')}"
        boot = worker.get("boot")
        if me["boot"] and isinstance(boot, str) and boot and boot != me["boot"]:
            return f"worker {where} was lost in a reboot"
        pid = worker.get("pid", -1)
        # A stamp this harness did not write (a pid that is not a whole number) says nothing
        # of the process: the heartbeat judges.
        if _whole(pid) and not _process_alive(pid, str(worker.get("start", ""))):
            return f"worker {where} died"
        # Alive but silent (stopped, or cut off from the database): judged by its heartbeat.
    stamped = trial.user_attrs.get("heartbeat")
    beat = float(stamped) if isinstance(stamped, int | float) else math.nan
    if not math.isfinite(beat):
        # Killed between creating the trial and stamping it (or a heartbeat this harness did
        # not write): its start time is the last sign.
        started = trial.datetime_start
        beat = started.timestamp() if started is not None else now
    silent = now - max(beat, reachable_since)
    if silent > grace_s():
        owner = (
            f" from worker {worker.get('host')}:{worker.get('pid')}"
            if isinstance(worker, dict)
            else ""
        )
        return f"no heartbeat{owner} for {silent:.0f}s"
    return None


def recover_stale(shared: SharedStudy, *, locked: bool = False) -> list[int]:
    """Fail every stale RUNNING trial of the study and queue its parameters again; finish the
    recovery of trials whose recoverer was itself killed (retry not queued, rows left over).

    ``locked``: the caller holds the study lock (see :func:`stale_reason`).
    Returns the numbers of the trials this call recovered (another worker may win some races).
    """
    from optuna.trial import TrialState

    me, now = this_worker(), time.time()
    trials = shared.trials()
    recovered = []
    for trial in trials:
        if trial.state != TrialState.RUNNING:
            continue
        reason = stale_reason(
            trial, me=me, now=now, locked=locked, reachable_since=shared.reachable_since
        )
        if reason is not None and fail_and_retry(shared, trial.number, reason=f"stale: {reason}"):
            recovered.append(trial.number)
    if recovered:
        log.warning(
            "marked %d stale trial(s) failed and queued them again: %s",
            len(recovered),
            ", ".join(f"#{n}" for n in recovered),
        )
    if locked:
        _finish_recoveries(shared, trials)
    return recovered


def _finish_recoveries(shared: SharedStudy, trials: list[FrozenTrial]) -> None:
    """Queue the missing retries of failed-and-requeued trials; drop rows of unfinished ones."""
    from optuna.trial import TrialState

    retried = {n for t in trials if _whole(n := t.user_attrs.get("retry_of"))}
    for trial in trials:
        reason = str(trial.user_attrs.get("fail_reason", ""))
        if (
            trial.state == TrialState.FAIL
            and reason.startswith(REQUEUED_REASONS)
            and intended_params(trial)
            and trial.number not in retried
        ):
            log.warning("queueing trial %d again (its recovery was cut short)", trial.number)
            _enqueue_retry(shared, trial)
    unfinished = {
        t.number for t in trials if t.state.is_finished() and t.state != TrialState.COMPLETE
    }
    shared.drop_rows(shared.numbers_with_rows() & unfinished)


def fail_and_retry(shared: SharedStudy, number: int, *, reason: str) -> bool:
    """Mark trial ``number`` FAIL with ``fail_reason`` and enqueue its intended parameters as a
    new trial. Call under the study lock: a recovery run meanwhile would see the trial failed
    but not yet queued again, and queue it too.

    Returns False when the trial had already finished (another worker got there first).
    """
    # The stored trial, not a worker's live ``optuna.Trial``: the retry needs its system
    # attributes (the parameters it was queued with).
    trial = shared.stored(number)
    if not shared.fail(number, reason):
        return False
    shared.drop_rows([number])
    if intended_params(trial):
        _enqueue_retry(shared, trial)
    return True


def intended_params(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters ``trial`` was meant to run: those it sampled, and for a queued retry
    killed before sampling them all, the rest of those it was queued with."""
    fixed = trial.system_attrs.get("fixed_params")
    return {**(fixed if isinstance(fixed, dict) else {}), **trial.params}


def _enqueue_retry(shared: SharedStudy, trial: FrozenTrial) -> None:
    # A --repeat-top trial stays one: its retry keeps what it repeats and with which seed.
    kept = {k: v for k, v in trial.user_attrs.items() if k in ("repeats", "repeat_seed")}
    shared.enqueue(intended_params(trial), user_attrs={"retry_of": trial.number, **kept})


def _whole(value: Any) -> bool:
    """Whether a value read from the database is a whole number (JSON's true is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


PID_MAX = 2**31 - 1  # a pid_t; no process has a larger pid


def _process_alive(pid: int, start: str) -> bool:
    if not 0 < pid <= PID_MAX:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc: trust the signal check
    state, started = stat
    if state in ("Z", "X"):  # killed, waiting to be reaped
        return False
    return not start or started == start  # a different start time: the pid was reused


def _proc_stat(pid: int) -> tuple[str, str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after its closing paren do not.
    fields = text[text.rfind(")") + 2 :].split()
    return fields[0], fields[19]  # state (field 3), starttime (field 22)


def _start_time(pid: int) -> str:
    stat = _proc_stat(pid)
    return stat[1] if stat is not None else ""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""
