"""One worker: ask the study for a trial, train it in a child process, record how it ended.

Several workers (processes on one machine, or on many machines against one server) share the
study through its storage. A worker recovers stale trials, counts, asks and samples while holding
the study lock (``store.StudyLock``, shared by every process of the study, and a process-local
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

import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from study import progress, stale, store
from study.errors import UsageError, stop_like_ctrl_c
from study.job import Outcome, die_with_parent, run_job
from study.result import TrainResult
from study.schema import TRIAL_ATTRS
from sweeps import load_sweep

if TYPE_CHECKING:
    import optuna
    from optuna.storages import RDBStorage

    from study.config import TrainConfig
    from sweeps import Sweep

log = logging.getLogger(__name__)

PRUNERS = ("none", "median", "hyperband")
TRAIN_COMMAND = (sys.executable, "-m", "study.train")
WAIT_S = 1.0  # seconds between looks at the study while its last trials run elsewhere
WAIT = object()  # _next_trial: no trial to start now, but the study is not done yet


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs (picklable, so it crosses a spawn)."""

    storage: str
    study_name: str
    sweep: str  # name or absolute path, reloaded in the worker
    base: dict[str, Any]  # budget, data, device, seed: applied on top of every suggestion
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


def trial_attrs(result: TrainResult) -> dict[str, Any]:
    """The user attributes of a complete trial: exactly ``schema.TRIAL_ATTRS``."""
    config, model = result.config, result.config["model"]
    attrs = {
        "config": config,
        **{k: model[k] for k in ("arch", "n_layer", "d_model", "n_head", "pos", "mlp")},
        "lr": config["lr"], "budget": config["budget"], "seed": config["seed"],
        "batch_size": result.batch_size,
        **{k: getattr(result, k) for k in (
            "params", "params_nonembedding", "flops_per_token", "tokens_seen",
            "tokens_per_second", "train_seconds", "steps", "epochs", "val_loss", "val_ppl",
            "val_bpb", "val_is_bound", "device", "device_name", "versions")},
    }
    assert set(attrs) == set(TRIAL_ATTRS), set(attrs) ^ set(TRIAL_ATTRS)
    return attrs


def make_pruner(name: str, *, curve_points: int) -> Any:
    """``median`` waits for a quarter of the curve points: early on, small models always lead."""
    import optuna

    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5,
                                           n_warmup_steps=max(1, curve_points // 4))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=curve_points)
    raise UsageError(f"unknown pruner {name!r}; use {', '.join(PRUNERS)}")


def make_sampler(sweep_sampler: Callable[..., Any] | None, *, seed: int) -> Any:
    import optuna

    if sweep_sampler is not None:
        return sweep_sampler(seed=seed)
    # constant_liar keeps parallel workers from sampling the same point while trials run.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def process_main(spec: WorkerSpec, lock: Any, failures: Any) -> None:
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


def run_worker(spec: WorkerSpec, lock: Any, failures: Any) -> None:
    """Run trials until the study has ``spec.trials`` complete ones or too many failed."""
    import optuna

    quiet_optuna()
    sweep = load_sweep(spec.sweep)
    storage = optuna.storages.RDBStorage(spec.storage, engine_kwargs=store.engine_kwargs(
        spec.storage), skip_table_creation=True)
    study = optuna.load_study(
        study_name=spec.study_name, storage=storage,
        sampler=make_sampler(sweep.sampler, seed=spec.sampler_seed),
        pruner=make_pruner(spec.pruner, curve_points=spec.curve_points),
    )
    env = {**os.environ, **spec.env}
    study_lock = store.StudyLock(spec.storage, spec.study_name)
    waiting = False
    try:
        while True:
            with lock, study_lock:
                trial = _next_trial(spec, study, storage, failures)
                config = None if trial is None or trial is WAIT else _configure(
                    sweep, spec, study, storage, trial, failures)
            if trial is None:
                return
            if trial is WAIT:
                if not waiting:
                    progress.emit(f"[worker {spec.index}] the last trials needed are running "
                                  f"elsewhere; waiting for them")
                waiting = True
                time.sleep(WAIT_S)
                continue
            waiting = False
            if config is not None:
                _train_and_record(spec, study, storage, trial, config, env, failures)
    finally:
        study_lock.close()


def _configure(sweep: Sweep, spec: WorkerSpec, study: optuna.Study, storage: RDBStorage,
               trial: Any, failures: Any) -> TrainConfig | None:
    """Under the lock: the trial's config, stored on it; None (trial failed) if it is invalid."""
    try:
        config = sweep.build(trial, **spec.base)
    except UsageError as exc:
        _fail(study, storage, trial, f"invalid config: {exc}", failures)
        return None
    store.retry(trial.set_user_attr, "config", config.to_dict(), what="store the config")
    return config


def _train_and_record(spec: WorkerSpec, study: optuna.Study, storage: RDBStorage, trial: Any,
                      config: TrainConfig, env: dict[str, str], failures: Any) -> None:
    progress.emit(progress.start_line(trial.number, spec.index, trial.params))
    try:
        outcome = _run(spec, study, trial, config, env)
    except KeyboardInterrupt:
        stale.fail_and_retry(study, storage, storage.engine, trial, reason="interrupted")
        raise
    progress.emit(progress.end_line(trial.number, outcome))
    _record(study, storage, trial, outcome, failures)
    trials = store.retry(study.get_trials, deepcopy=False, what="read the study")
    progress.emit(progress.study_line(spec.study_name, trials, target=spec.trials,
                                      workers=spec.workers))


def _next_trial(spec: WorkerSpec, study: optuna.Study, storage: RDBStorage,
                failures: Any) -> Any:
    """Under the lock: recover stale trials; ask for a new one if more are still needed.

    Returns the new trial, ``WAIT`` while the trials still needed are all running, or None when
    the study is done (or this run has failed too often).
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    while True:
        stale.recover_stale(study, storage, storage.engine, locked=True)
        trials = store.retry(study.get_trials, deepcopy=False, what="read the study")
        complete = sum(t.state == TrialState.COMPLETE for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if complete >= spec.trials or failures.value >= spec.max_failures:
            return None
        if complete + running >= spec.trials:
            return WAIT
        trial = store.retry(study.ask, what="start a trial")
        try:
            store.retry(trial.set_user_attr, "worker", stale.this_worker(), what="stamp the trial")
            store.retry(trial.set_user_attr, "heartbeat", time.time(), what="stamp the trial")
        except UpdateFinishedTrialError:
            # Only a process that skips the study lock can fail a trial this young; take another.
            log.warning("trial %d was failed before it could be stamped", trial.number)
            continue
        return trial


def _run(spec: WorkerSpec, study: optuna.Study, trial: Any, config: Any,
         env: dict[str, str]) -> Outcome:
    last_beat = time.monotonic()
    prune = spec.pruner != "none"

    def on_tick() -> None:
        nonlocal last_beat
        if time.monotonic() - last_beat >= stale.HEARTBEAT_S:
            last_beat = time.monotonic()
            store.retry(trial.set_user_attr, "heartbeat", time.time(), what="send a heartbeat")

    def on_curve(event: dict[str, Any]) -> bool:
        # Fixed budget fractions as steps, so pruners compare trials at the same point.
        step = round(float(event.get("frac", 0.0)) * config.curve_points)
        val_loss = event.get("val_loss")
        if not isinstance(val_loss, (int, float)) or not math.isfinite(val_loss):
            return False
        store.retry(trial.report, math.exp(min(val_loss, 700.0)), step, what="report a point")
        if not prune or step >= config.curve_points:  # the last point is the result itself
            return False
        return bool(store.retry(trial.should_prune, what="ask the pruner"))

    return run_job(
        config, command=spec.train_command, cache_dir=spec.cache_dir, env=env,
        on_progress=lambda e: progress.emit(progress.progress_line(trial.number, e)),
        on_curve=on_curve, on_tick=on_tick,
    )


def _record(study: optuna.Study, storage: RDBStorage, trial: Any, outcome: Outcome,
            failures: Any) -> None:
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        if outcome.state == "complete" and outcome.result is not None:
            result = outcome.result
            store.write_trial_rows(storage.engine, trial_id=trial._trial_id,
                                   study_name=study.study_name, trial_number=trial.number,
                                   result=result)
            for key, value in trial_attrs(result).items():
                store.retry(trial.set_user_attr, key, value, what="store a result")
            store.retry(study.tell, trial, result.val_ppl, what="complete the trial")
        elif outcome.state == "pruned":
            store.retry(study.tell, trial, state=TrialState.PRUNED, what="prune the trial")
        else:
            _fail(study, storage, trial, outcome.reason, failures)
    except UpdateFinishedTrialError:
        # Another worker judged this trial stale (no heartbeat within the grace period) and
        # queued it again; its result is dropped so each configuration counts once.
        log.warning("trial %d was failed as stale by another worker; its result is dropped",
                    trial.number)
        store.delete_trial_rows(storage.engine, trial._trial_id)


def _fail(study: optuna.Study, storage: RDBStorage, trial: Any, reason: str,
          failures: Any) -> None:
    from optuna.trial import TrialState

    store.retry(trial.set_user_attr, "fail_reason", reason, what="record the failure")
    store.retry(study.tell, trial, state=TrialState.FAIL, what="fail the trial")
    with failures.get_lock():
        failures.value += 1
