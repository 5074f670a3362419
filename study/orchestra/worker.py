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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from study.config import FixedTerms
from study.errors import UsageError, first_line, stop_like_ctrl_c
from study.objective import final_value, point_value, study_objective
from study.orchestra import keep as keeping
from study.orchestra import progress
from study.orchestra.job import Outcome, WarmPool, die_with_parent, prestart_enabled, run_job
from study.orchestra.machine_load import LoadMeter
from study.orchestra.optuna_setup import make_pruner, make_sampler, quiet_optuna
from study.orchestra.repeat import repeat_seed
from study.result import TrainResult, trial_attrs
from study.storage import pending, stale
from study.storage.optuna_store import SharedStudy, TrialWrittenOff
from study.storage.store import StorageFull, StorageGone
from study.storage.study_lock import StudyLock
from sweeps import load_sweep

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from multiprocessing.sharedctypes import Synchronized
    from pathlib import Path

    import optuna

    from study.config import TrainConfig

    # What the workers of one run share: the process-local lock in front of the study lock,
    # and the count of trials failed in this run.
    Lock = AbstractContextManager[Any]
    Failures = Synchronized[int]

log = logging.getLogger(__name__)

TRAIN_COMMAND = (sys.executable, "-m", "study.train")
WAIT_S = 1.0  # seconds between looks at the study while its last trials run elsewhere


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
    keep: str = "top-3"  # --keep: which trials' final weights stay (study.kept.checkpoint)
    checkpoint_dir: str | None = None  # --checkpoint-dir (else beside an SQLite file)


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
    except (StorageGone, StorageFull) as exc:  # its trial stays RUNNING (see Worker.record)
        print(f"error: worker {spec.index}: {exc}", file=sys.stderr)
        sys.exit(1)


def run_worker(spec: WorkerSpec, lock: Lock, failures: Failures) -> None:
    """Run trials until the study has ``spec.trials`` complete ones or too many failed."""
    Worker(spec, lock, failures).run()


class Standing(enum.Enum):
    """Where the study stands, as a worker sees it under the lock."""

    DONE = "done"  # enough complete trials, or this run failed too often
    WAIT = "wait"  # the trials still needed are all running (elsewhere)
    OPEN = "open"  # more trials are needed: ask for one


class Worker:
    """One worker's run: under the lock it reads the study's ``standing``, ``claim`` s a trial
    and ``configure`` s it; outside the lock it trains the trial in a child and records it."""

    def __init__(self, spec: WorkerSpec, lock: Lock, failures: Failures) -> None:
        quiet_optuna()
        self.spec, self.lock, self.failures = spec, lock, failures
        self.sweep = load_sweep(spec.sweep)
        self.shared = SharedStudy.load(
            spec.storage,
            spec.study_name,
            sampler=make_sampler(self.sweep.sampler, seed=spec.sampler_seed),
            pruner=make_pruner(
                spec.pruner, curve_points=spec.curve_points, budget=spec.fixed.budget
            ),
        )
        # Known from the vocabularies alone: the runner records the same as the study's term.
        self.objective = study_objective(spec.fixed.vocab_sizes)
        self.env = {**os.environ, **spec.env}
        self.study_lock = StudyLock(spec.storage, spec.study_name)
        self.pool = WarmPool(
            spec.train_command,
            cache_dir=spec.cache_dir,
            env=self.env,
            enabled=prestart_enabled(spec.fixed.device),
            checkpoint=self.keep_to(0) is not None,
        )
        self.display = progress.Display(
            spec.study_name,
            target=spec.trials,
            workers=spec.workers,
            done=_complete(self.shared),
            budget=spec.fixed.budget,
            objective=self.objective,
        )
        self.waiting = False

    def run(self) -> None:
        try:
            while True:
                with self.lock, self.study_lock:
                    standing = self.standing()
                    if standing is Standing.DONE:
                        return
                    trial = self.claim() if standing is Standing.OPEN else None
                    config = self.configure(trial) if trial is not None else None
                if standing is Standing.WAIT:
                    self.wait()
                    continue
                if trial is None:
                    continue  # failed before it could be stamped: look again
                self.waiting = False
                if config is not None:
                    self.train_and_record(trial, config)
        finally:
            self.display.close()
            self.pool.close()
            self.study_lock.close()

    def standing(self) -> Standing:
        """Under the lock: record kept results, recover stale trials, count."""
        from optuna.trial import TrialState

        spec = self.spec
        # Results kept while the disk was full first: their trials are RUNNING, and recovery
        # would throw the trained result away and queue the configuration again.
        pending.record(self.shared, spec.storage, cache_dir=spec.cache_dir)
        stale.recover_stale(self.shared, locked=True)
        trials = self.shared.trials()
        complete = sum(t.state == TrialState.COMPLETE for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if complete >= spec.trials or self.failures.value >= spec.max_failures:
            return Standing.DONE
        if complete + running >= spec.trials:
            return Standing.WAIT
        return Standing.OPEN

    def claim(self) -> optuna.Trial | None:
        """Under the lock: a new trial, stamped with this worker and a heartbeat; None if it
        was failed before it could be stamped (only a process that skips the study lock can)."""
        trial = self.shared.ask()
        try:
            self.shared.set_attrs(
                trial.number, {"worker": stale.this_worker(), "heartbeat": time.time()}
            )
        except TrialWrittenOff:
            log.warning("trial %d was failed before it could be stamped", trial.number)
            return None
        return trial

    def configure(self, trial: optuna.Trial) -> TrainConfig | None:
        """Under the lock: the trial's config, stored on it; None (trial failed) if invalid."""
        try:
            config = self.sweep.build(trial, self.spec.fixed)
            seed = repeat_seed(trial.user_attrs)  # a --repeat-top trial: the original, reseeded
            if seed is not None:
                config = config.replace(seed=seed)
        except UsageError as exc:
            self.fail(trial.number, f"invalid config: {exc}")
            return None
        try:
            self.shared.set_attrs(trial.number, {"config": config.to_dict()})
        except TrialWrittenOff:
            return None  # only a process that skips the study lock fails a trial this young
        return config

    def wait(self) -> None:
        if not self.waiting:
            self.display.line(
                f"[worker {self.spec.index}] the last trials needed are running "
                f"elsewhere; waiting for them"
            )
        self.waiting = True
        time.sleep(WAIT_S)

    def train_and_record(self, trial: optuna.Trial, config: TrainConfig) -> None:
        display = self.display
        display.trial_started(trial.number, self.spec.index, trial.params)
        try:
            meter = LoadMeter.start()
            outcome = self.train(trial, config)
            self.record_load(trial.number, meter)
            self.record(trial, outcome)
        except KeyboardInterrupt:
            # Under the study lock, as every recovery is: another worker finishing recoveries
            # must not see this trial failed but not yet queued again, and queue it a second time.
            with self.study_lock:
                stale.fail_and_retry(self.shared, trial.number, reason="interrupted")
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
        display.trial_ended(trial.number, outcome, self.shared.trials())

    def train(self, trial: optuna.Trial, config: TrainConfig) -> Outcome:
        """Train ``trial`` in a child, beating its heartbeat and reporting its curve.

        Raises:
            TrialWrittenOff: another worker failed the trial meanwhile (the child is stopped).
        """
        shared, display = self.shared, self.display
        last_beat, every = time.monotonic(), stale.heartbeat_s()
        prune = self.spec.pruner != "none"

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
                    point_value(event, self.objective),
                    budget=config.budget,
                    curve_points=config.curve_points,
                    ask_pruner=prune,
                )
            return False

        return run_job(
            config,
            command=self.spec.train_command,
            cache_dir=self.spec.cache_dir,
            env=self.env,
            on_progress=lambda e: display.trial_progress(trial.number, e),
            on_curve=on_curve,
            on_tick=on_tick,
            pool=self.pool,
            keep_to=self.keep_to(trial.number),
        )

    def keep_to(self, number: int) -> Path | None:
        """Where trial ``number``'s final weights go (None: the policy keeps none)."""
        spec = self.spec
        return keeping.stem_for(
            spec.storage,
            spec.study_name,
            number,
            keep=spec.keep,
            checkpoint_dir=spec.checkpoint_dir,
        )

    def record_load(self, number: int, meter: LoadMeter) -> None:
        """The machine's load during the trial, before it is COMPLETE as every attribute; a
        database that cannot take it now loses only these readings (``record`` keeps the result)."""
        try:
            self.shared.set_attrs(number, meter.attrs())
        except (StorageFull, StorageGone) as exc:
            log.warning("trial %d: machine load not recorded: %s", number, first_line(exc))

    def record(self, trial: optuna.Trial, outcome: Outcome) -> None:
        """Store how the trial ended.

        Raises:
            TrialWrittenOff: another worker failed the trial meanwhile (nothing of it is kept).
            StorageFull, StorageGone: the database's disk is full or it is unreachable past the
                patience (a complete result is kept on disk first, ``study.storage.pending``).
        """
        if outcome.state == "complete" and outcome.result is not None:
            result, attrs = outcome.result, trial_attrs(outcome.result)
            if outcome.checkpoint is not None:  # written with the rest, before COMPLETE
                attrs[keeping.ATTR] = outcome.checkpoint
            try:
                self.shared.complete(trial, self.value(result), attrs=attrs, result=result)
            except (StorageFull, StorageGone) as exc:
                # Nothing of the trial is half-written (each write is one transaction, COMPLETE
                # last) and it stays RUNNING; keep the result to record at the next chance.
                raise type(exc)(f"{exc}; {self.keep(trial.number, result, attrs)}") from None
            with _unless_unwritable("the --keep policy"):  # the trial is complete regardless
                spec = self.spec
                keeping.enforce(
                    self.shared, spec.storage, keep=spec.keep, checkpoint_dir=spec.checkpoint_dir
                )
        elif outcome.state == "pruned":
            self.shared.prune(trial)
        else:
            self.fail(trial.number, outcome.reason)

    def value(self, result: TrainResult) -> float:
        """The trial's Optuna value: its result under the study's objective."""
        return final_value(val_ppl=result.val_ppl, val_bpb=result.val_bpb, objective=self.objective)

    def keep(self, number: int, result: TrainResult, attrs: dict[str, Any]) -> str:
        """Keep a result the database would not take on disk; where it went, as a clause."""
        try:
            kept = pending.keep(
                self.shared,
                self.spec.storage,
                cache_dir=self.spec.cache_dir,
                number=number,
                value=self.value(result),
                attrs=attrs,
                result=result,
            )
        except OSError as why:
            return f"trial {number}'s result could not be kept either ({first_line(why)})"
        return f"trial {number}'s result is kept in {kept} and recorded by the next run"

    def fail(self, number: int, reason: str) -> None:
        if self.shared.fail(number, reason):
            with self.failures.get_lock():
                self.failures.value += 1


def _complete(shared: SharedStudy) -> int:
    from optuna.trial import TrialState

    return shared.count(TrialState.COMPLETE)


@contextlib.contextmanager
def _unless_unwritable(what: str) -> Iterator[None]:
    """Skip a write made while a trial trains if the disk is full or the database stayed away
    past the patience, with a warning: the trial trains on, and its result is kept on disk if
    it cannot be written either (``Worker.record``)."""
    try:
        yield
    except (StorageFull, StorageGone) as exc:
        log.warning("skipped %s: %s", what, first_line(exc))
