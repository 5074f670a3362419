"""One worker: ask the study for a trial, train it in a child process, record how it ended.

Several workers (processes on one machine, or on many machines against one server) share the
study through its storage. A worker recovers stale trials, counts, asks and samples while holding
the study lock (``study_lock.StudyLock``, shared by every process of the study, and a process-local
lock in front of it), so together they start exactly as many trials as are still needed. When the
last trials needed are running elsewhere a worker waits for them (recovering any whose worker
dies) rather than leave the study short. Workers of one run share a failure counter that stops
the run after too many failed trials.

A complete trial is recorded in this order: its curve and sample rows (one transaction), its
user attributes, then the value that makes it COMPLETE. A worker killed anywhere before that last
step leaves a RUNNING trial, which the next worker recovers as stale (failed, its rows dropped,
its parameters queued again); so a COMPLETE trial always has all its attributes and rows.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from study.config import FixedTerms
from study.errors import UsageError, first_line, stop_like_ctrl_c
from study.orchestra import progress
from study.orchestra.job import Outcome, WarmPool, die_with_parent, prestart_enabled, run_job
from study.result import trial_attrs
from study.storage import pending, stale
from study.storage.optuna_store import SharedStudy, TrialWrittenOff, curve_step
from study.storage.store import StorageFull, StorageGone
from study.storage.study_lock import StudyLock
from sweeps import load_sweep

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from multiprocessing.sharedctypes import Synchronized

    import optuna

    from study.config import TrainConfig
    from sweeps import Sweep

    # What the workers of one run share: the process-local lock in front of the study lock,
    # and the count of trials failed in this run.
    Lock = AbstractContextManager[Any]
    Failures = Synchronized[int]

log = logging.getLogger(__name__)

PRUNERS = ("none", "median", "hyperband")
TRAIN_COMMAND = (sys.executable, "-m", "study.train")
WAIT_S = 1.0  # seconds between looks at the study while its last trials run elsewhere


class _Wait(enum.Enum):
    WAIT = "wait"


WAIT = _Wait.WAIT  # _next_trial: no trial to start now, but the study is not done yet


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs (picklable, so it crosses a spawn)."""

    storage: str
    study_name: str
    sweep: str  # name or absolute path, reloaded in the worker
    fixed: FixedTerms  # budget, data, device, seed, max_stories: on top of every suggestion
    trials: int  # the study's target of COMPLETE trials
    max_failures: int  # stop after this many failed trials in this run (all workers together)
    pruner: str
    curve_points: int
    sampler_seed: int
    train_command: tuple[str, ...] = TRAIN_COMMAND
    cache_dir: str | None = None
    index: int = 0
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)  # child environment overrides
    parent_pid: int | None = None  # set when this worker is a process of its own


def make_pruner(name: str, *, curve_points: int, budget: float) -> optuna.pruners.BasePruner:
    """``median`` waits for a quarter of the budget: early on, small models always lead.
    Steps are ``curve_step`` s (budget seconds)."""
    import optuna

    def step(index: int) -> int:
        return curve_step(index, budget=budget, curve_points=curve_points)

    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=5, n_warmup_steps=step(max(1, curve_points // 4))
        )
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=step(1), max_resource=step(curve_points))
    raise UsageError(f"unknown pruner {name!r}; use {', '.join(PRUNERS)}")


def make_sampler(
    sweep_sampler: Callable[..., Any] | None, *, seed: int
) -> optuna.samplers.BaseSampler:
    """The sweep's own sampler if it has one, else TPE."""
    import optuna

    if sweep_sampler is not None:
        sampler: optuna.samplers.BaseSampler = sweep_sampler(seed=seed)
        return sampler
    # constant_liar keeps parallel workers from sampling the same point while trials run.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def process_main(spec: WorkerSpec, lock: Lock, failures: Failures) -> None:
    """Entry point of a spawned worker process."""
    die_with_parent()
    if spec.parent_pid is not None and os.getppid() != spec.parent_pid:
        return  # the parent died before we could tie ourselves to it
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        with stop_like_ctrl_c():
            run_worker(spec, lock, failures)
    except KeyboardInterrupt:
        pass  # the trial in hand was already failed and queued again
    except (StorageGone, StorageFull) as exc:  # its trial stays RUNNING (see _record)
        print(f"error: worker {spec.index}: {exc}", file=sys.stderr)
        sys.exit(1)


def run_worker(spec: WorkerSpec, lock: Lock, failures: Failures) -> None:
    """Run trials until the study has ``spec.trials`` complete ones or too many failed."""
    quiet_optuna()
    sweep = load_sweep(spec.sweep)
    shared = SharedStudy.load(
        spec.storage,
        spec.study_name,
        sampler=make_sampler(sweep.sampler, seed=spec.sampler_seed),
        pruner=make_pruner(spec.pruner, curve_points=spec.curve_points, budget=spec.fixed.budget),
    )
    env = {**os.environ, **spec.env}
    study_lock = StudyLock(spec.storage, spec.study_name)
    pool = WarmPool(
        spec.train_command,
        cache_dir=spec.cache_dir,
        env=env,
        enabled=prestart_enabled(spec.fixed.device),
    )
    display = progress.Display(
        spec.study_name,
        target=spec.trials,
        workers=spec.workers,
        done=_complete(shared),
        budget=spec.fixed.budget,
    )
    waiting = False
    try:
        while True:
            with lock, study_lock:
                trial = _next_trial(spec, shared, failures)
                if trial is None:
                    return
                config = None if trial is WAIT else _configure(sweep, spec, shared, trial, failures)
            if trial is WAIT:
                if not waiting:
                    display.line(
                        f"[worker {spec.index}] the last trials needed are running "
                        f"elsewhere; waiting for them"
                    )
                waiting = True
                time.sleep(WAIT_S)
                continue
            waiting = False
            if config is not None:
                _train_and_record(
                    spec, shared, trial, config, env, failures, study_lock, pool, display
                )
    finally:
        display.close()
        pool.close()
        study_lock.close()


def _configure(
    sweep: Sweep, spec: WorkerSpec, shared: SharedStudy, trial: optuna.Trial, failures: Failures
) -> TrainConfig | None:
    """Under the lock: the trial's config, stored on it; None (trial failed) if it is invalid."""
    try:
        config = sweep.build(trial, spec.fixed)
    except UsageError as exc:
        _fail(shared, trial.number, f"invalid config: {exc}", failures)
        return None
    try:
        shared.set_attrs(trial.number, {"config": config.to_dict()})
    except TrialWrittenOff:
        return None  # only a process that skips the study lock fails a trial this young
    return config


def _train_and_record(
    spec: WorkerSpec,
    shared: SharedStudy,
    trial: optuna.Trial,
    config: TrainConfig,
    env: dict[str, str],
    failures: Failures,
    study_lock: StudyLock,
    pool: WarmPool,
    display: progress.Display,
) -> None:
    display.trial_started(trial.number, spec.index, trial.params)
    try:
        outcome = _run(spec, shared, trial, config, env, pool, display)
        _record(spec, shared, trial, outcome, failures)
    except KeyboardInterrupt:
        # Under the study lock, as every recovery is: another worker finishing recoveries
        # must not see this trial failed but not yet queued again, and queue it a second time.
        with study_lock:
            stale.fail_and_retry(shared, trial.number, reason="interrupted")
        raise
    except TrialWrittenOff:
        # Another worker judged this trial stale (no heartbeat within the grace period, e.g.
        # this process was stopped) and queued it again: drop it, so each configuration
        # counts once, and go on with the study.
        display.line(
            f"trial {trial.number} was failed as stale by another worker and queued "
            f"again; dropping it here"
        )
        return
    display.trial_ended(trial.number, outcome, shared.trials())


def _complete(shared: SharedStudy) -> int:
    from optuna.trial import TrialState

    return shared.count(TrialState.COMPLETE)


def _next_trial(
    spec: WorkerSpec, shared: SharedStudy, failures: Failures
) -> optuna.Trial | _Wait | None:
    """Under the lock: recover stale trials; ask for a new one if more are still needed.

    Returns the new ``optuna.Trial`` (stamped with this worker and a heartbeat), ``WAIT`` while
    the trials still needed are all running, or None when the study is done (or this run has
    failed too often).
    """
    from optuna.trial import TrialState

    while True:
        # Results kept while the disk was full first: their trials are RUNNING, and recovery
        # would throw the trained result away and queue the configuration again.
        pending.record(shared, spec.storage, cache_dir=spec.cache_dir)
        stale.recover_stale(shared, locked=True)
        trials = shared.trials()
        complete = sum(t.state == TrialState.COMPLETE for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if complete >= spec.trials or failures.value >= spec.max_failures:
            return None
        if complete + running >= spec.trials:
            return WAIT
        trial = shared.ask()
        try:
            shared.set_attrs(
                trial.number, {"worker": stale.this_worker(), "heartbeat": time.time()}
            )
        except TrialWrittenOff:
            # Only a process that skips the study lock can fail a trial this young; take another.
            log.warning("trial %d was failed before it could be stamped", trial.number)
            continue
        return trial


def _run(
    spec: WorkerSpec,
    shared: SharedStudy,
    trial: optuna.Trial,
    config: TrainConfig,
    env: dict[str, str],
    pool: WarmPool,
    display: progress.Display,
) -> Outcome:
    """Train ``trial`` in a child, beating its heartbeat and reporting its curve.

    Raises:
        TrialWrittenOff: another worker failed the trial meanwhile (the child is stopped).
    """
    last_beat, every = time.monotonic(), stale.heartbeat_s()
    prune = spec.pruner != "none"

    def on_tick() -> None:
        nonlocal last_beat
        if time.monotonic() - last_beat >= every:
            last_beat = time.monotonic()
            with _unless_unwritable("a heartbeat"):  # the trial trains on; its result is kept
                shared.heartbeat(trial.number)
        display.tick()

    def on_curve(event: dict[str, Any]) -> bool:
        # Fixed budget fractions, so pruners compare trials at the same point.
        index = round(float(event.get("frac", 0.0)) * config.curve_points)
        with _unless_unwritable(f"point {index} of the curve"):
            return shared.report_point(
                trial,
                index,
                event.get("val_loss"),
                budget=config.budget,
                curve_points=config.curve_points,
                ask_pruner=prune,
            )
        return False

    return run_job(
        config,
        command=spec.train_command,
        cache_dir=spec.cache_dir,
        env=env,
        on_progress=lambda e: display.trial_progress(trial.number, e),
        on_curve=on_curve,
        on_tick=on_tick,
        pool=pool,
    )


def _record(
    spec: WorkerSpec, shared: SharedStudy, trial: optuna.Trial, outcome: Outcome, failures: Failures
) -> None:
    """Store how the trial ended.

    Raises:
        TrialWrittenOff: another worker failed the trial meanwhile (nothing of it is kept).
        StorageFull, StorageGone: the database's disk is full or it is unreachable past the
            patience (a complete result is kept on disk first, ``study.storage.pending``).
    """
    if outcome.state == "complete" and outcome.result is not None:
        result, attrs = outcome.result, trial_attrs(outcome.result)
        try:
            shared.complete(trial, result.val_ppl, attrs=attrs, result=result)
        except (StorageFull, StorageGone) as exc:
            # Nothing of the trial is half-written (each write is one transaction, COMPLETE
            # last) and it stays RUNNING; keep the result to record at the next chance.
            try:
                kept = pending.keep(
                    spec.storage,
                    shared.name,
                    cache_dir=spec.cache_dir,
                    number=trial.number,
                    value=result.val_ppl,
                    attrs=attrs,
                    result=result,
                )
            except OSError as why:
                raise type(exc)(
                    f"{exc}; trial {trial.number}'s result could not be kept "
                    f"either ({first_line(why)})"
                ) from None
            raise type(exc)(
                f"{exc}; trial {trial.number}'s result is kept in {kept} and "
                f"recorded by the next run"
            ) from None
    elif outcome.state == "pruned":
        shared.prune(trial)
    else:
        _fail(shared, trial.number, outcome.reason, failures)


@contextlib.contextmanager
def _unless_unwritable(what: str) -> Iterator[None]:
    """Skip a write made while a trial trains if the disk is full or the database stayed away
    past the patience, with a warning: the trial trains on, and its result is kept on disk if
    it cannot be written either (``_record``)."""
    try:
        yield
    except (StorageFull, StorageGone) as exc:
        log.warning("skipped %s: %s", what, first_line(exc))


def _fail(shared: SharedStudy, number: int, reason: str, failures: Failures) -> None:
    if shared.fail(number, reason):
        with failures.get_lock():
            failures.value += 1
