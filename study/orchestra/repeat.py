"""``--repeat-top K --seeds N``: the K best configurations of a study re-run with seeds 1..N-1
as trials of the same study, so an answer can be named with its spread over seeds.

Each repeat is an enqueued trial: Optuna hands the original's parameters back to the sweep
(``enqueue_trial``), and its user attributes ``repeats`` (the original's number) and
``repeat_seed`` make the worker train it with that seed. Which repeats are due is worked out
from the study each time: the K best are chosen among trials that are not repeats (so a rerun
picks the same K), and a repeat counts as done or due once it is COMPLETE, RUNNING or WAITING,
so a rerun after a kill adds only what is missing (a trial recovered as stale is queued again
with these attributes, ``study.storage.stale``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from study.errors import UsageError

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from study.orchestra.options import RunOptions
    from study.storage.optuna_store import SharedStudy

REPEATS_ATTR = "repeats"
SEED_ATTR = "repeat_seed"
REPEAT_ATTRS = (REPEATS_ATTR, SEED_ATTR)


def missing_repeats(
    trials: list[FrozenTrial], *, top: int, seeds: int
) -> tuple[list[tuple[FrozenTrial, int]], int]:
    """(original, seed) pairs still to enqueue, and how many repeats are queued or running.

    Raises:
        UsageError: top or seeds below their minimum, or no complete trial to repeat.
    """
    from optuna.trial import TrialState

    if top < 1:
        raise UsageError(f"--repeat-top must be at least 1, got {top}")
    if seeds < 2:
        raise UsageError(f"--seeds must be at least 2 (seed 0 is the original), got {seeds}")
    originals = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and REPEATS_ATTR not in t.user_attrs and t.value
    ]
    if not originals:
        raise UsageError("the study has no complete trial to repeat")
    best = sorted(originals, key=lambda t: (t.value, t.number))[:top]
    live = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
    have = {
        (t.user_attrs[REPEATS_ATTR], repeat_seed(t.user_attrs))
        for t in trials
        if isinstance(t.user_attrs.get(REPEATS_ATTR), int) and t.state in live
    }
    pending = sum(
        1
        for t in trials
        if REPEATS_ATTR in t.user_attrs and t.state in (TrialState.RUNNING, TrialState.WAITING)
    )
    todo = [(t, s) for t in best for s in range(1, seeds) if (t.number, s) not in have]
    return todo, pending


def enqueue_repeats(shared: SharedStudy, *, top: int, seeds: int) -> int:
    """Enqueue the missing repeats (call under the study lock). Returns the complete trials the
    study must hold once every repeat has run: its complete trials now plus every repeat that
    is queued or running."""
    from optuna.trial import TrialState

    from study.storage.stale import intended_params

    trials = shared.trials()
    todo, pending = missing_repeats(trials, top=top, seeds=seeds)
    for original, seed in todo:
        shared.enqueue(
            intended_params(original), user_attrs={REPEATS_ATTR: original.number, SEED_ATTR: seed}
        )
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    return complete + pending + len(todo)


def prepare_repeats(opts: RunOptions, *, top: int | None, seeds: int | None) -> RunOptions:
    """Enqueue what ``--repeat-top``/``--seeds`` still need and return the options that run
    them (``trials``: the complete trials the study holds once they have run).

    Raises:
        UsageError: one flag without the other, no --study-name, a study that does not exist.
    """
    import dataclasses

    from study.storage import store
    from study.storage.optuna_store import SharedStudy
    from study.storage.study_lock import StudyLock

    if top is None or seeds is None:
        raise UsageError("--repeat-top and --seeds go together")
    if opts.study_name is None:
        raise UsageError("--repeat-top needs --study-name (the study whose best to repeat)")
    state = store.inspect_storage(opts.storage, opts.study_name)
    if not state.study_exists:
        raise UsageError(f"no study named {opts.study_name!r} in {state.url}")
    lock = StudyLock(opts.storage, opts.study_name)
    try:
        with lock:
            target = enqueue_repeats(
                SharedStudy.load(opts.storage, opts.study_name), top=top, seeds=seeds
            )
    finally:
        lock.close()
    return dataclasses.replace(opts, trials=target)


def repeat_seed(user_attrs: dict[str, object]) -> int | None:
    """The seed a queued repeat must train with (None: not a repeat)."""
    seed = user_attrs.get(SEED_ATTR)
    return int(seed) if isinstance(seed, int) else None
