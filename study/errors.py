"""The one exception type that means "the user asked for something we cannot do"."""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TypeVar

T = TypeVar("T")


class UsageError(Exception):
    """Bad input from the user: a CLI prints its message on one line and exits with status 2."""


def first_line(exc: BaseException) -> str:
    """An exception as one line for a message: its first non-empty line, or its type's name."""
    lines = str(exc).strip().splitlines()
    return " ".join(lines[0].split()) if lines else type(exc).__name__


def cli_main(fn: Callable[..., T]) -> Callable[..., T]:
    """Wrap a CLI ``main`` so a UsageError becomes one line on stderr and exit status 2.

    Anything else is a bug and keeps its traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> T:
        try:
            return fn(*args, **kwargs)
        except UsageError as exc:
            from study.redact import redact  # a message may quote a URL or a driver's words

            print(f"error: {redact(str(exc))}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper


@contextlib.contextmanager
def stop_like_ctrl_c() -> Iterator[None]:
    """Within the block SIGTERM (``kill PID``, a scheduler's stop) and SIGHUP (the terminal
    closed) act as Ctrl-C does, once.

    The first SIGTERM, SIGHUP or SIGINT raises KeyboardInterrupt, so the trial in hand is failed and queued
    again before the process exits; any later one is ignored, so that this clean-up is not itself
    cut short. A SIGINT the process was started ignoring (a background job of a script) stays
    ignored. The previous handlers come back on exit. Main thread only.
    """
    stopping = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    # SIGHUP too: closing the terminal must queue the trial again, not leave it RUNNING.
    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.getsignal(sig) for sig in stops}
    signal.signal(signal.SIGTERM, handler)
    if previous[signal.SIGHUP] is not signal.SIG_IGN:  # nohup: the user asked to ignore it
        signal.signal(signal.SIGHUP, handler)
    if previous[signal.SIGINT] is signal.default_int_handler:
        signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
