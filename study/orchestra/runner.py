"""The Optuna study: validate everything, create the study once, run the workers, summarise.

Bad input (unknown sweep, a sweep file without ``suggest``, a storage that cannot be opened,
is read-only or is another application's, ``--trials 0``, a study of the same name that
maximises or ran with another budget, data that cannot be read, a device this machine lacks) is
refused before anything is written to the database. Then the token cache is built once (for
each vocabulary the sweep can use: ``study.orchestra.vocabularies``), the
study and the harness tables are created (or upgraded), the study's terms are checked under the
study lock (``study.orchestra.comparability``: a run whose trials would not compare is refused), results
kept while the database could not take them are recorded, trials orphaned by a killed run are
failed and queued again, and ``workers`` processes train trials until the study holds
``trials`` complete ones.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.config import FixedTerms
from study.data import resolve_data
from study.errors import UsageError
from study.objective import LABELS, OBJECTIVE_ATTR, of_study, study_objective
from study.orchestra import launch, progress
from study.orchestra.comparability import (
    check_terms,
    fixed_settings,
    heldout_digest,
    late_terms_note,
    search_space,
)
from study.orchestra.options import DEFAULT_STORAGE, RunOptions
from study.orchestra.optuna_setup import quiet_optuna
from study.orchestra.vocabularies import (
    prepare_vocabularies,
    study_eval_bytes,
    study_vocabularies,
)
from study.orchestra.worker import WorkerSpec, process_main, run_worker
from study.storage import pending, stale, store
from study.storage.optuna_store import SharedStudy
from study.storage.study_lock import StudyLock
from sweeps import Sweep, load_sweep

if TYPE_CHECKING:
    from study.config import TrainConfig
    from study.data import TokenData
    from study.orchestra.worker import Failures, Lock

log = logging.getLogger(__name__)


def run_study(opts: RunOptions) -> int:
    """Run (or resume) the study. Returns 0 once it holds ``opts.trials`` complete trials, 1 if
    it stopped early (too many failures, a worker process died).

    Raises:
        UsageError: bad input, found before anything is written.
    """
    opts.validate()
    from optuna.trial import TrialState

    quiet_optuna()
    sweep = load_sweep(opts.sweep)
    study_name = opts.study_name or sweep.name
    # Which corpus "no --data" means here (the hub, or the bundled sample when the hub cannot
    # be reached) is decided once, so the trials neither probe again nor record None.
    fixed = FixedTerms(
        budget=float(opts.budget),
        data=resolve_data(opts.data),
        device=opts.device,
        seed=opts.seed,
    )
    probe, space, vocabs, settings = probe_config(sweep, fixed)
    check_device(opts.device)
    if opts.storage == DEFAULT_STORAGE:
        Path(DEFAULT_STORAGE.removeprefix("sqlite:///")).parent.mkdir(exist_ok=True)
    state = store.inspect_storage(opts.storage, study_name)
    check_existing(state, study_name, budget=opts.budget, early={"settings": settings})
    fixed, terms = prepare_study(
        opts, probe, vocabs, fixed=fixed, stored=state.study_attrs.get("max_stories")
    )
    terms.update(sweep=sweep.name, search_space=space, settings=settings)

    shared, run_index = open_study(opts, study_name, terms)
    progress.emit(
        f"[{study_name}] {state.url}: {shared.count(TrialState.COMPLETE)}/"
        f"{opts.trials} complete; sweep {sweep.name}, budget {opts.budget:g}s, "
        f"{opts.workers} worker(s)"
    )
    ctx = multiprocessing.get_context("spawn")
    lock, failures = ctx.Lock(), ctx.Value("i", 0)
    specs = launch.worker_specs(
        opts,
        study_name=study_name,
        sweep=sweep,
        fixed=fixed,
        curve_points=probe.curve_points,
        run_index=run_index,
    )
    dead_workers = run_workers(specs, lock, failures)

    trials = shared.trials()
    objective = study_objective(fixed.vocab_sizes)
    for line in progress.summary(
        study_name, state.url, trials, target=opts.trials, objective=objective
    ):
        progress.emit(line)
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    return exit_status(opts, dead_workers, complete=complete, failed=failures.value)


def prepare_study(
    opts: RunOptions,
    probe: TrainConfig,
    vocabs: tuple[int, ...],
    *,
    fixed: FixedTerms,
    stored: Any,
) -> tuple[FixedTerms, dict[str, Any]]:
    """Build the tokens of every vocabulary of the study (``study_tokens``, then
    ``vocabularies.prepare_vocabularies``) and settle what every trial trains under.

    Returns:
        ``fixed`` with the study's story limit, vocabularies and held-out bytes, and the terms
        of the study its corpus and evaluation make (``comparability``; the sweep's are added
        by the caller).
    """
    tokens = study_tokens(
        probe, cache_dir=opts.cache_dir, max_stories=opts.max_stories, stored=stored
    )
    prepare_vocabularies(probe, vocabs, cache_dir=opts.cache_dir, max_stories=tokens.max_stories)
    eval_bytes = study_eval_bytes(probe, vocabs)
    fixed = dataclasses.replace(
        fixed, max_stories=tokens.max_stories, vocab_sizes=vocabs, eval_bytes=eval_bytes
    )
    terms: dict[str, Any] = {
        "budget": float(opts.budget),
        "corpus": tokens.fingerprint,
        "heldout": heldout_digest(tokens.valid),
        "max_stories": tokens.max_stories,
        "eval_tokens": probe.eval_tokens,
    }
    if len(vocabs) > 1:  # a study of one vocabulary records none of these, as before
        terms["vocab_sizes"] = list(vocabs)
        terms[OBJECTIVE_ATTR] = study_objective(vocabs)
    if eval_bytes is not None:
        terms["eval_bytes"] = eval_bytes
    return fixed, terms  # the workers' trainers map the token cache themselves


def exit_status(
    opts: RunOptions, dead_workers: list[tuple[str, int]], *, complete: int, failed: int
) -> int:
    """0 once the study holds its trials; 1, with the reason on stderr, if it stopped short."""
    if dead_workers:
        for name, code in dead_workers:
            print(f"error: {name} exited with status {code}", file=sys.stderr)
        return 1
    if complete < opts.trials:
        print(
            f"error: stopped at {complete}/{opts.trials} complete trials after "
            f"{failed} failed ones in this run (--max-failures "
            f"{opts.failure_limit}); run the same command to go on",
            file=sys.stderr,
        )
        return 1
    return 0


def check_existing(
    state: store.StorageState,
    study_name: str,
    *,
    budget: float,
    early: dict[str, Any] | None = None,
) -> None:
    """Refuse to continue an existing study that maximises or ran with another budget (or
    another of the ``early`` terms, known before the token cache is built: the sweep's fixed
    settings).

    Raises:
        UsageError: the study exists and its trials would not compare with this run's.
    """
    if not state.study_exists:
        return
    if state.directions != ("MINIMIZE",):
        raise UsageError(
            f"study {study_name!r} in {state.url} optimises {'/'.join(state.directions)}; "
            f"this harness minimises (choose another --study-name)"
        )
    # Checked again under the study lock (open_study); the same words whichever check refuses.
    ours = {"budget": budget, **(early or {})}
    check_terms(
        {k: v for k, v in state.study_attrs.items() if k in ours},
        ours,
        study_name=study_name,
    )


def open_study(opts: RunOptions, study_name: str, terms: dict[str, Any]) -> tuple[SharedStudy, int]:
    """Under the study lock: create or load the study, check this run's ``terms`` against the
    ones it was made with (``study.orchestra.comparability``) and record any it lacks, recover trials
    orphaned by a killed run (after recording results kept while the disk was full,
    ``study.storage.pending``), and count this run.

    Returns:
        The study, and this run's index among all runs of it (0 for the first), so runs at the
        same time, even on one host, seed their samplers apart.

    Raises:
        UsageError: a term differs from the study's (checked under the lock, so of two runs
            started together on a new study the one that comes second is refused).
    """
    study_lock = StudyLock(opts.storage, study_name)
    try:
        with study_lock:
            label = LABELS[of_study(terms)]  # the objective, as Optuna's dashboard names it
            shared = SharedStudy.create(opts.storage, study_name, metric_name=label)
            stored = shared.user_attrs()
            missing = check_terms(stored, terms, study_name=study_name)
            check_objective(shared, missing, study_name=study_name)
            for key, value in missing.items():
                shared.tag(key, value)
            kept = pending.record(shared, opts.storage, cache_dir=opts.cache_dir)
            recovered = stale.recover_stale(shared, locked=True)
            run_index = shared.bump(RUNS_ATTR)
    finally:
        study_lock.close()
    if note := late_terms_note(stored, missing, study_name=study_name):
        progress.emit(f"[{study_name}] {note}")
    if kept:
        progress.emit(
            f"[{study_name}] recorded the kept result of trial(s) "
            + ", ".join(f"#{n}" for n in kept)
        )
    if recovered:
        progress.emit(
            f"[{study_name}] {len(recovered)} trial(s) left running by a dead worker "
            f"failed and queued again: " + ", ".join(f"#{n}" for n in recovered)
        )
    return shared, run_index


def check_objective(shared: SharedStudy, missing: dict[str, Any], *, study_name: str) -> None:
    """Refuse to start minimising bits per byte in a study whose complete trials were valued in
    perplexity (one of several vocabularies made before the ``objective`` term existed): their
    values would mix two units.

    Raises:
        UsageError: the study lacks the term and holds complete trials.
    """
    from optuna.trial import TrialState

    if OBJECTIVE_ATTR in missing and shared.count(TrialState.COMPLETE):
        raise UsageError(
            f"study {study_name!r} valued its trials in held-out perplexity; this run would "
            f"value them in bits per byte, as a study of several vocabularies does (choose "
            f"another --study-name)"
        )


def run_workers(specs: list[WorkerSpec], lock: Lock, failures: Failures) -> list[tuple[str, int]]:
    """Run one worker in this process, or each in a process of its own, until all are done.

    Returns:
        (name, exit status) of each worker process that did not exit cleanly.
    """
    if len(specs) == 1:
        run_worker(specs[0], lock, failures)
        return []
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=process_main, args=(s, lock, failures), name=f"study-worker-{s.index}")
        for s in specs
    ]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        # Ctrl-C reached every worker already; a SIGTERM only this process. Pass it on: a
        # worker stops once, so one that is already stopping ignores the second signal.
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:  # each worker fails and requeues its trial
            p.join(30)
        raise
    return [(p.name, p.exitcode or 0) for p in procs if p.exitcode != 0]


def probe_config(
    sweep: Sweep, fixed: FixedTerms
) -> tuple[TrainConfig, dict[str, str], tuple[int, ...], dict[str, Any]]:
    """One suggestion from a throwaway in-memory study: proves the sweep works before the
    database is touched, and gives the tokenizer settings to prepare, the search space
    (``comparability.search_space``), every vocabulary the trials may use
    (``vocabularies.study_vocabularies``, the suggestion's first) and the sweep's fixed settings
    (``comparability.fixed_settings``). Seeded, so every run of a sweep sees the same branch."""
    import optuna

    scratch = optuna.create_study(
        sampler=sweep.sampler(seed=0)
        if sweep.sampler is not None
        else optuna.samplers.RandomSampler(seed=0)
    )
    trial = scratch.ask()
    probe = sweep.build(trial, fixed)
    settings = fixed_settings(lambda t: sweep.build(t, fixed), trial, probe)
    vocabs = study_vocabularies(sweep, trial.distributions, probe)
    return probe, search_space(trial), vocabs, settings


def check_device(device: str) -> None:
    """Refuse a device this machine lacks before anything is written (``auto`` always works).

    Raises:
        UsageError: ``cuda`` without a CUDA device, ``mps`` without Apple MPS.
    """
    if device in ("cuda", "mps"):
        from study.device import resolve_device  # the call imports torch: only on these paths

        resolve_device(device)


def prepare_tokens(
    config: TrainConfig,
    *,
    cache_dir: str | None,
    max_stories: int | str = "auto",
    stored: Any = None,
) -> int | None:
    """``study_tokens``' number of training stories every trial reads."""
    return study_tokens(
        config, cache_dir=cache_dir, max_stories=max_stories, stored=stored
    ).max_stories


def study_tokens(
    config: TrainConfig,
    *,
    cache_dir: str | None,
    max_stories: int | str = "auto",
    stored: Any = None,
) -> TokenData:
    """Resolve ``max_stories`` (the flag's number, else the sweep's ``config.max_stories``) once
    for the whole study (a study keeps the number it stored first), then build the tokenizer and
    token cache before workers start (the trainer reuses it). Returns the study's tokens (their
    ``max_stories``: the training stories every trial reads).

    Raises:
        UsageError: a number other than the one the study stored; bad data.
    """
    from study.data import load_tokens, resolve_max_stories

    folder = Path(cache_dir) if cache_dir is not None else None
    if max_stories == "auto":  # the flag left it to the sweep, whose own default is auto
        max_stories = config.max_stories
    limit = (
        stored
        if max_stories == "auto" and isinstance(stored, int)
        else resolve_max_stories(
            config.data,
            max_stories=max_stories,
            budget=config.budget,
            device=config.device,
            cache_dir=folder,
        )
    )
    if stored is not None and limit != stored:
        raise UsageError(
            f"the study was run with --max-stories {stored}; trials of different "
            f"corpora do not compare (use {stored} or another --study-name)"
        )
    progress.emit(
        f"preparing tokens ({config.data or 'TinyStories'}, vocab "
        f"{config.model.vocab_size}, {limit} training stories)"
    )
    return load_tokens(
        config.data, vocab_size=config.model.vocab_size, cache_dir=folder, max_stories=limit
    )


RUNS_ATTR = "five_minute_study:runs"  # study system attribute: runs started so far
