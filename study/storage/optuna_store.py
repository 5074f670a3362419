"""Optuna wrapped once: one study in an RDB storage, shared by the workers of every machine.

Workers, the runner and stale-trial recovery reach Optuna only through :class:`SharedStudy`,
which adds to ``optuna.Study`` what a study shared over a database needs:

- every storage call is retried while the database reports a transient error (``store.retry``:
  SQLite busy, a server gone for up to ``$STUDY_STORAGE_PATIENCE_S``), and the time it came
  back is kept (``reachable_since``) so heartbeats missed meanwhile do not condemn trials;
- trials are addressed by their public ``number``; the storage's trial id, which the harness
  rows are keyed by, comes from the storage's public
  ``get_trial_id_from_study_id_trial_number``, never from Optuna's private ``Trial._trial_id``;
- a write to a trial that another process has already finished (failed it as stale) raises
  :class:`TrialWrittenOff`, so the worker drops that trial and goes on;
- a complete trial is recorded in the order that keeps readers whole: harness rows, user
  attributes, then the value that makes it COMPLETE;
- a trial is failed with its reason stored first (``fail_reason``, which the analysis reports).

Why the harness keeps its own heartbeat (a ``heartbeat`` user attribute, ``study.storage.stale``) rather
than Optuna's (``RDBStorage(heartbeat_interval=...)``, ``fail_stale_trials``,
``RetryFailedTrialCallback``):

- ``fail_stale_trials`` marks a trial FAIL before its callback runs, and a finished trial takes
  no more attributes, so why a trial was written off could not be stored with it; a recoverer
  killed between the two steps would leave a failed trial that nothing marks as owed a retry.
- ``RetryFailedTrialCallback`` queues the sampled parameters with the stale trial's user
  attributes (its worker stamp, config and partial results), and loses the queued parameters
  of a retry that died before it sampled them all (``stale.intended_params``).
- Optuna's heartbeat waits out its grace period (minutes) for a worker that died on this very
  host; the harness sees the dead process at once (``stale.stale_reason``).
- ``Study.ask`` warns when the storage's heartbeat is on outside ``Study.optimize``, which the
  harness cannot use: one trial is one child process whose outcome the worker records.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
import warnings
from collections.abc import Callable, Container, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from study.storage import store
from study.storage.schema import curve_step

if TYPE_CHECKING:
    import optuna
    import sqlalchemy as sa
    from optuna.storages import RDBStorage
    from optuna.trial import FrozenTrial, TrialState

    from study.result import TrainResult


T = TypeVar("T")
log = logging.getLogger(__name__)

METRIC_NAME = "held-out perplexity"  # the objective: exp(mean held-out loss per token)
# Study system attribute set once when the harness first opens a study: with Optuna's study id
# it tells this study from one deleted and made again under its name (``pending``).
CREATION_ATTR = "harness:creation_id"


class TrialWrittenOff(Exception):
    """A trial this process runs was finished by another one (failed as stale, queued again)."""

    def __init__(self, number: int) -> None:
        super().__init__(f"trial {number} was failed as stale by another worker")
        self.number = number


class SharedStudy:
    """One Optuna study and its storage, every call retried; see the module docstring."""

    def __init__(self, study: optuna.Study, storage: RDBStorage) -> None:
        self.study = study
        self.storage = storage
        self.name = study.study_name
        # Unix time at which this process last saw the database come back after an outage:
        # heartbeats missed while it was unreachable are not held against their trials.
        self.reachable_since = -math.inf
        self._study_id = self._call(
            storage.get_study_id_from_name, self.name, what="read the study"
        )
        system = self._call(storage.get_study_system_attrs, self._study_id, what="read the study")
        # Read now: a result is kept (``pending.keep``) when the database cannot be reached.
        self.identity = f"{self._study_id}/{system.get(CREATION_ATTR, '')}"
        self._ids: dict[int, int] = {}  # trial number -> storage trial id (never changes)

    @classmethod
    def create(cls, url: str, name: str, *, metric_name: str = METRIC_NAME) -> SharedStudy:
        """Open ``url`` (creating Optuna's and the harness tables) and create or load ``name``,
        a study that minimises ``metric_name`` (named for Optuna's dashboard; held-out bits per
        byte in a study of several vocabularies, ``study.objective``). Intermediate
        values are reported by budget second (:func:`curve_step`); an older study keyed by
        curve index is upgraded once (``study.storage.upgrade_study``). Call under the study
        lock."""
        import optuna

        from study.storage.upgrade_study import upgrade_study

        storage = store.open_storage(url)
        # Before Optuna loads it: a study of the older kind is named and its steps rekeyed once.
        store.retry(
            upgrade_study, storage.engine, name, metric_name=metric_name, what="upgrade the study"
        )
        study = store.retry(
            optuna.create_study,
            storage=storage,
            study_name=name,
            direction="minimize",
            load_if_exists=True,
            what="create the study",
        )
        if study.metric_names is None:  # what Optuna's dashboard calls the objective
            with warnings.catch_warnings():  # "experimental" since Optuna 3.2; still there in 5
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                store.retry(study.set_metric_names, [metric_name], what="name the objective")
        study_id = store.retry(storage.get_study_id_from_name, name, what="read the study")
        if CREATION_ATTR not in store.retry(
            storage.get_study_system_attrs, study_id, what="read the study"
        ):
            store.retry(
                storage.set_study_system_attr,
                study_id,
                CREATION_ATTR,
                f"{uuid.uuid4().hex}@{time.time():.6f}",
                what="name the study",
            )
        return cls(study, storage)

    @classmethod
    def load(
        cls,
        url: str,
        name: str,
        *,
        sampler: optuna.samplers.BaseSampler | None = None,
        pruner: optuna.pruners.BasePruner | None = None,
    ) -> SharedStudy:
        """Load the existing study ``name`` at ``url`` (its tables already made)."""
        import optuna

        storage = optuna.storages.RDBStorage(
            url, engine_kwargs=store.engine_kwargs(url), skip_table_creation=True
        )
        study = store.retry(
            optuna.load_study,
            study_name=name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            what="load the study",
        )
        return cls(study, storage)

    @property
    def engine(self) -> sa.Engine:
        return self.storage.engine

    def _call(self, fn: Callable[..., T], *args: Any, what: str, **kwargs: Any) -> T:
        return store.retry(fn, *args, what=what, on_recovered=self._back, **kwargs)

    def _back(self) -> None:
        self.reachable_since = time.time()

    # ------------------------------------------------------------------------ the study

    def trials(self, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        """The study's trials as stored now (not copies: do not change them)."""
        return self._call(
            self.study.get_trials, deepcopy=False, states=states, what="read the study"
        )

    def count(self, state: TrialState) -> int:
        return len(self.trials(states=(state,)))

    def user_attrs(self) -> dict[str, Any]:
        """The study's user attributes as stored now."""
        return self._call(self.storage.get_study_user_attrs, self._study_id, what="read the study")

    def tag(self, key: str, value: Any) -> None:
        """Set the study's user attribute ``key`` unless it is set already."""
        attrs = self._call(self.storage.get_study_user_attrs, self._study_id, what="read the study")
        if key not in attrs:
            self._call(
                self.storage.set_study_user_attr, self._study_id, key, value, what="tag the study"
            )

    def bump(self, key: str) -> int:
        """Under the study lock: the study system attribute ``key`` (0 if unset), then add one."""
        found = self._call(
            self.storage.get_study_system_attrs, self._study_id, what="read the study"
        ).get(key, 0)
        if not (isinstance(found, int) and not isinstance(found, bool) and found >= 0):
            log.warning("study attribute %s holds %r, not a count; counting from 0", key, found)
            found = 0
        self._call(
            self.storage.set_study_system_attr,
            self._study_id,
            key,
            int(found) + 1,
            what="count the run",
        )
        return int(found)

    # ------------------------------------------------------------------------ trials

    def trial_id(self, number: int) -> int:
        """The storage's id of trial ``number`` (the key of its harness rows)."""
        if number not in self._ids:
            self._ids[number] = self._call(
                self.storage.get_trial_id_from_study_id_trial_number,
                self._study_id,
                number,
                what=f"find trial {number}",
            )
        return self._ids[number]

    def stored(self, number: int) -> FrozenTrial:
        """Trial ``number`` as stored now, system attributes (queued parameters) included."""
        return self._call(
            self.storage.get_trial, self.trial_id(number), what=f"read trial {number}"
        )

    def ask(self) -> optuna.Trial:
        """A new trial: the oldest queued one, or one for the sampler."""
        return self._call(self.study.ask, what="start a trial")

    def set_attrs(self, number: int, attrs: dict[str, Any]) -> None:
        """Store user attributes on a trial this process runs.

        Raises:
            TrialWrittenOff: another process has finished the trial.
        """
        from optuna.exceptions import UpdateFinishedTrialError

        trial_id = self.trial_id(number)
        try:
            for key, value in attrs.items():
                self._call(
                    self.storage.set_trial_user_attr,
                    trial_id,
                    key,
                    value,
                    what=f"store {key} on trial {number}",
                )
        except UpdateFinishedTrialError:
            raise TrialWrittenOff(number) from None

    def heartbeat(self, number: int) -> None:
        """Say that trial ``number`` is alive (unix time; see ``study.storage.stale``)."""
        self.set_attrs(number, {"heartbeat": time.time()})

    def report(self, trial: optuna.Trial, value: float, step: int, *, ask_pruner: bool) -> bool:
        """Report an intermediate value; True if ``ask_pruner`` and the pruner says stop.

        Raises:
            TrialWrittenOff: another process has finished the trial.
        """
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            self._call(trial.report, value, step, what=f"report a point of trial {trial.number}")
        except UpdateFinishedTrialError:
            raise TrialWrittenOff(trial.number) from None
        return ask_pruner and bool(self._call(trial.should_prune, what="ask the pruner"))

    def report_point(
        self,
        trial: optuna.Trial,
        index: int,
        value: float | None,
        *,
        budget: float,
        curve_points: int,
        ask_pruner: bool,
    ) -> bool:
        """Report curve point ``index`` (1 .. ``curve_points``) of ``trial``: its ``value`` under
        the study's objective (``study.objective.point_value``), under step ``curve_step(index)``.
        A point without a finite value is skipped, and one already reported is kept as it was.

        Returns:
            True if ``ask_pruner`` and the pruner says stop (never asked at the last point,
            which is the result itself).

        Raises:
            TrialWrittenOff: another process has finished the trial.
        """
        if value is None or not math.isfinite(value):
            return False
        step = curve_step(index, budget=budget, curve_points=curve_points)
        if step in self.stored(trial.number).intermediate_values:
            return False
        return self.report(
            trial,
            value,
            step,
            ask_pruner=ask_pruner and index < curve_points,
        )

    def complete(
        self, trial: optuna.Trial, value: float, *, attrs: dict[str, Any], result: TrainResult
    ) -> None:
        """Record a complete trial: its harness rows, ``attrs``, then ``value`` (COMPLETE).

        Raises:
            TrialWrittenOff: another process has finished the trial (its rows are dropped).
        """
        from optuna.trial import TrialState

        store.write_trial_rows(
            self.engine,
            trial_id=self.trial_id(trial.number),
            study_name=self.name,
            trial_number=trial.number,
            result=result,
        )
        try:
            self.set_attrs(trial.number, attrs)
            self._tell(trial, TrialState.COMPLETE, value)
        except TrialWrittenOff:
            self.drop_rows([trial.number])
            raise

    def prune(self, trial: optuna.Trial) -> None:
        """Record trial ``trial`` PRUNED (at its last reported value).

        Raises:
            TrialWrittenOff: another process has finished the trial.
        """
        from optuna.trial import TrialState

        self._tell(trial, TrialState.PRUNED, None)

    def _tell(self, trial: optuna.Trial, state: TrialState, value: float | None) -> None:
        try:
            self._call(
                self.study.tell, trial, value, state=state, what=f"finish trial {trial.number}"
            )
        except ValueError:
            # ``tell`` refuses a finished trial. Our own earlier attempt may have landed before
            # its connection dropped; any other final state was written by another process.
            found = self.stored(trial.number).state
            if found == state:
                return
            if found.is_finished():
                raise TrialWrittenOff(trial.number) from None
            raise

    def fail(self, number: int, reason: str) -> bool:
        """Store ``reason`` as ``fail_reason``, then mark trial ``number`` FAIL.

        Returns False when the trial had already finished (another process got there first).
        """
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        try:
            self.set_attrs(number, {"fail_reason": reason})
            self._call(
                self.storage.set_trial_state_values,
                self.trial_id(number),
                state=TrialState.FAIL,
                what=f"mark trial {number} failed",
            )
        except (TrialWrittenOff, UpdateFinishedTrialError):
            return False
        return True

    def enqueue(self, params: dict[str, Any], *, user_attrs: dict[str, Any]) -> None:
        """Queue a trial that will run ``params`` (those it does not sample stay queued)."""
        self._call(self.study.enqueue_trial, params, user_attrs=user_attrs, what="queue a trial")

    # ------------------------------------------------------------------------ harness rows

    def drop_rows(self, numbers: Iterable[int]) -> None:
        """Delete the harness rows of trials that did not complete."""
        for number in numbers:
            store.delete_trial_rows(self.engine, self.trial_id(number))

    def numbers_with_rows(self) -> set[int]:
        """Numbers of this study's trials that have harness rows."""
        return store.trial_numbers_with_rows(self.engine, self.name)
