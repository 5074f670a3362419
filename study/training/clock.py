"""The budget clock and the CPU thread tuner of one job (its event stream: ``study.events``).

The budget is wall-clock seconds of training from the first optimizer step to the last; the
clock pauses while the model is evaluated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

log = logging.getLogger(__name__)


@dataclass
class Clock:
    """Counts budgeted seconds; ``pause()`` stops counting (evaluation), ``resume()`` restarts.
    ``elapsed`` is the sum of the running intervals only."""

    budget: float
    _spent: float = 0.0
    _since: float | None = None

    def start(self) -> None:
        self._since = time.perf_counter()

    def pause(self) -> None:
        if self._since is not None:
            self._spent += time.perf_counter() - self._since
            self._since = None

    resume = start

    @property
    def elapsed(self) -> float:
        running = time.perf_counter() - self._since if self._since is not None else 0.0
        return self._spent + running

    @property
    def done(self) -> bool:
        return self.elapsed >= self.budget


@dataclass
class ThreadChoice:
    """The thread count chosen for one kind of work, and when to check it again."""

    interval: float  # seconds until the next check, after a check
    best: int | None = None
    next_check: float = 0.0
    times: dict[int, float] = field(default_factory=dict)  # of the check under way
    pending: list[int] = field(default_factory=list)  # thread counts the check has yet to time


class ThreadTuner:
    """On CPU, picks the faster of torch's thread count and one thread by timing real steps (or
    evaluation batches) with each, and checks again later. On a machine busy with other work,
    every OpenMP thread waits at each barrier for peers the scheduler has set aside: measured on
    the 2-core machine under load, a training step took 3-16x longer with 2 threads than with 1,
    and an evaluation 5x; idle, 2 threads win. So the untimed first step runs on one thread, and
    while the same choice keeps winning the checks grow rarer (``recheck`` seconds, doubling up
    to ``max_recheck``), which bounds what probing the slow choice costs. Each kind of work
    (training steps, evaluation batches) has its own choice and its own checks: an evaluation's
    choice never decides the training steps' threads. Elsewhere: nothing."""

    def __init__(
        self,
        device: torch.device,
        *,
        recheck: float = 20.0,
        max_recheck: float = 160.0,
        enabled: bool = True,
    ) -> None:
        n = torch.get_num_threads()
        self.options = [n, 1] if enabled and device.type == "cpu" and n > 1 else []
        self.recheck = recheck
        self.max_recheck = max_recheck
        self.choices: dict[str, ThreadChoice] = {}
        self.skip = 1  # the first step pays one-off costs: do not time it
        self._timing: tuple[ThreadChoice, float] | None = None  # (choice, start) being timed

    def choice(self, kind: str = "step") -> ThreadChoice:
        """The state of ``kind``'s choice (made on first use)."""
        return self.choices.setdefault(kind, ThreadChoice(interval=self.recheck))

    def before(self, kind: str = "step") -> None:
        """Before a unit of work of ``kind``: run it on the kind's chosen thread count, or on the
        next count its check has to time."""
        if not self.options:
            return
        if self.skip:
            self.skip -= 1
            torch.set_num_threads(1)
            return
        choice = self.choice(kind)
        now = time.perf_counter()
        if not choice.pending and now >= choice.next_check:
            choice.pending, choice.times = list(self.options), {}
        if choice.pending:
            torch.set_num_threads(choice.pending[0])
            self._timing = (choice, now)
        elif choice.best is not None:
            torch.set_num_threads(choice.best)

    def after(self) -> None:
        """After the unit of work ``before`` began: record its time if it was being timed."""
        if self._timing is None:
            return
        now = time.perf_counter()
        choice, started = self._timing
        self._timing = None
        choice.times[choice.pending.pop(0)] = now - started
        if not choice.pending:
            best = min(choice.times, key=choice.times.__getitem__)
            same = best == choice.best
            choice.interval = min(2 * choice.interval, self.max_recheck) if same else self.recheck
            choice.best = best
            torch.set_num_threads(best)
            choice.next_check = now + choice.interval
            log.debug("threads: %s -> %d, next check in %.0fs", choice.times, best, choice.interval)

    @contextmanager
    def one_thread(self) -> Iterator[None]:
        """Tiny ops (sampling token by token) gain nothing from threads and lose much to a busy
        machine: run them on one."""
        if not self.options:
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)
